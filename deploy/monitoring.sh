# shellcheck shell=bash
# Monitoring as code, sourced by deploy.sh: the log-based metrics of monitoring/metrics/, the alert
# policies of monitoring/policies/ and monitoring/dashboard.json, each created when missing and
# updated when present. Policies and the dashboard are rendered into WORK_DIR first: the queue name
# and project replace {{QUEUE}} and {{PROJECT}}, and NOTIFICATION_CHANNEL fills notificationChannels.
# Alert policies need `gcloud alpha` (gcloud components install alpha): gcloud 528 has no GA command.

# render SOURCE TARGET: placeholders filled; for a policy, notificationChannels set (or dropped).
render_monitoring_file() {
  "$PYTHON" - "$1" "$2" "$PROJECT" "$QUEUE" "$NOTIFICATION_CHANNEL" <<'PY'
import json, sys
source, target, project, queue, channels = sys.argv[1:6]
text = open(source, encoding="utf-8").read().replace("{{PROJECT}}", project).replace("{{QUEUE}}", queue)
data = json.loads(text)
if "conditions" in data:  # an alert policy
    data.pop("notificationChannels", None)
    if channels:
        data["notificationChannels"] = [c.strip() for c in channels.split(",") if c.strip()]
json.dump(data, open(target, "w", encoding="utf-8"), indent=2)
PY
}

ensure_log_metrics() {
  local file name state
  for file in "$PWD"/monitoring/metrics/*.yaml; do
    name="cvplus/$(basename "$file" .yaml)"
    state=0
    exists gcloud logging metrics describe "$name" --project="$PROJECT" || state=$?
    ((state == 0)) || run gcloud logging metrics create "$name" --config-from-file="$file" --project="$PROJECT"
    ((state == 1)) || run gcloud logging metrics update "$name" --config-from-file="$file" --project="$PROJECT"
  done
}

# A policy's name is assigned by the API, so an existing one is found by its display name.
ensure_alert_policies() {
  if ! ((DRY_RUN)) && ! gcloud alpha monitoring policies --help >/dev/null 2>&1; then
    note "alert policies skipped: they need gcloud's alpha component (gcloud components install alpha)"
    return 0
  fi
  [[ -n $NOTIFICATION_CHANNEL ]] || note "NOTIFICATION_CHANNEL is not set: alerts open incidents but notify nobody"
  local file rendered display existing
  for file in monitoring/policies/*.json; do
    rendered="$WORK_DIR/policy-$(basename "$file")"
    render_monitoring_file "$file" "$rendered"
    display=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["displayName"])' "$file")
    existing=$(capture "projects/$PROJECT/alertPolicies/POLICY_ID" gcloud alpha monitoring policies list \
      --project="$PROJECT" --filter="displayName=\"$display\"" --format='value(name)' | head -n1)
    if [[ -z $existing ]]; then
      run gcloud alpha monitoring policies create --policy-from-file="$rendered" --project="$PROJECT"
    else
      ((DRY_RUN)) && note "when the policy does not exist yet:" &&
        show gcloud alpha monitoring policies create --policy-from-file="$rendered" --project="$PROJECT"
      run gcloud alpha monitoring policies update "$existing" --policy-from-file="$rendered" --project="$PROJECT"
    fi
  done
}

# The dashboard has a fixed id (projects/PROJECT/dashboards/cvplus-video); an update carries the
# current etag, as the API requires for a concurrent-safe replace.
ensure_dashboard() {
  local rendered="$WORK_DIR/dashboard.json" update="$WORK_DIR/dashboard-update.json" id=cvplus-video state=0 etag
  render_monitoring_file monitoring/dashboard.json "$rendered"
  exists gcloud monitoring dashboards describe "$id" --project="$PROJECT" || state=$?
  ((state == 0)) || run gcloud monitoring dashboards create --config-from-file="$rendered" --project="$PROJECT"
  ((state == 1)) || {
    etag=$(capture ETAG gcloud monitoring dashboards describe "$id" --project="$PROJECT" --format='value(etag)')
    "$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); d["etag"] = sys.argv[2]
json.dump(d, open(sys.argv[3], "w"), indent=2)' "$rendered" "$etag" "$update"
    run gcloud monitoring dashboards update "projects/$PROJECT/dashboards/$id" \
      --config-from-file="$update" --project="$PROJECT"
  }
}
