#!/usr/bin/env bash
# Deploy the CVPlus video backend to Google Cloud: service accounts and IAM, pinned secrets, the
# storage bucket, the Cloud Tasks queue, the ten functions, the cleanup schedule, and Firestore
# TTL policies, composite indexes and security rules. Safe to re-run: every step creates what is
# missing and updates what exists. `--dry-run` prints every command instead of running it and
# needs neither credentials nor network. See docs/DEPLOY.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [options]

  --project ID              GCP project (default: $GOOGLE_CLOUD_PROJECT, then gcloud config)
  --region REGION           functions, queue and scheduler region (default: $FUNCTION_REGION or us-central1)
  --queue NAME              Cloud Tasks queue (default: $TASKS_QUEUE or video-polling)
  --bucket NAME             bucket for finished videos (default: $STORAGE_BUCKET or PROJECT-cvplus-videos)
  --only FUNCTION           deploy only this function and its invoker grants (repeatable)
  --secret-version NAME=N   pin secret NAME to version N (default: $NAME_VERSION, else the
                            latest enabled version, looked up now; 1 in --dry-run)
  --dry-run                 print every command instead of running it (no credentials needed)
  -h, --help                show this help

Other settings (environment): RETENTION_DAYS (30), INDEXES_FILE (firestore.indexes.json),
RULES_FILE (firestore.rules), OPS_SERVICE_ACCOUNTS (extra ops callers, comma-separated),
HEYGEN_AVATAR_ID, HEYGEN_VOICE_ID, HEYGEN_AVATAR_TYPE, HEYGEN_USD_PER_SECOND, FIREBASE_PROJECT_ID,
JOB_DEADLINE_SECONDS, RUNWAYML_CREDITS_PER_SECOND, RUNWAYML_VEO_AUDIO, IMAGE_URL_HOSTS, OUTPUT_HOSTS
(passed to the functions when set).
EOF
}

die() { printf 'deploy.sh: %s\n' "$1" >&2; exit "${2:-1}"; }
note() { printf '# %s\n' "$*"; }

# name | access (public, or the service account role that invokes it) | timeout | memory | max instances
FUNCTIONS=(
  "generate_video|public|120s|512Mi|20"
  "cancel_video|public|60s|256Mi|10"
  "runwayml_status_check|public|60s|256Mi|20"
  "runwayml_batch_status_check|ops|300s|512Mi|2"
  "runwayml_polling_task|tasks|120s|256Mi|20"
  "finalize_video_task|tasks|540s|1Gi|20"
  "runwayml_cleanup_task|scheduler|540s|512Mi|1"
  "runwayml_webhook|public|60s|256Mi|10"
  "heygen_webhook|public|60s|256Mi|10"
  "provider_health|ops|60s|256Mi|2"
)
REQUIRED_SECRETS=(RUNWAYML_API_KEY HEYGEN_API_KEY)
OPTIONAL_SECRETS=(HEYGEN_WEBHOOK_SECRET RUNWAYML_WEBHOOK_SECRET)
APIS=(cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
  artifactregistry.googleapis.com cloudtasks.googleapis.com cloudscheduler.googleapis.com
  firestore.googleapis.com firebaserules.googleapis.com secretmanager.googleapis.com
  storage.googleapis.com iam.googleapis.com iamcredentials.googleapis.com)
TTL_COLLECTIONS=(enhanced_video_jobs runwayml_jobs heygen_jobs video_webhook_events video_quota video_health)
# Queue shape. A poll or finalize request runs on a Python gen2 instance with less than one vCPU,
# so concurrency is 1 request per instance: 20 concurrent dispatches <= 20 max instances x 1 of
# both task targets. At ~2 s per poll, 10 dispatches/s keeps ~20 requests in flight, enough for
# ~100 jobs polled every 10 s. Retries back off 5,10,20,40,80,160,300,300,300 s: ten attempts
# over ~20 min, inside the 30 min job deadline; the cleanup sweep handles what is left.
QUEUE_FLAGS=(--max-attempts=10 --min-backoff=5s --max-backoff=300s --max-doublings=5
  --max-dispatches-per-second=10 --max-concurrent-dispatches=20)

PROJECT=${GOOGLE_CLOUD_PROJECT:-}
REGION=${FUNCTION_REGION:-us-central1}
QUEUE=${TASKS_QUEUE:-video-polling}
BUCKET=${STORAGE_BUCKET:-}
RETENTION_DAYS=${RETENTION_DAYS:-30}
INDEXES_FILE=${INDEXES_FILE:-firestore.indexes.json}
RULES_FILE=${RULES_FILE:-firestore.rules}
RULES_API=${FIREBASE_RULES_API:-https://firebaserules.googleapis.com/v1}
SCHEDULER_JOB=cvplus-video-cleanup
DRY_RUN=0
ONLY=()
declare -A SECRET_VERSION=()

parse_args() {
  local arg value
  while (($#)); do
    arg=$1
    shift
    if [[ $arg == --*=* ]]; then set -- "${arg#*=}" "$@"; arg=${arg%%=*}; fi
    case $arg in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1 ;;
      --project | --region | --queue | --bucket | --only | --secret-version)
        { (($#)) && [[ -n $1 && $1 != --* ]]; } || die "$arg needs a value (see --help)" 2
        value=$1
        shift
        case $arg in
          --project) PROJECT=$value ;;
          --region) REGION=$value ;;
          --queue) QUEUE=$value ;;
          --bucket) BUCKET=$value ;;
          --only) ONLY+=("$value") ;;
          --secret-version)
            [[ $value =~ ^[A-Z_]+=[0-9]+$ ]] || die "--secret-version takes NAME=NUMBER, got '$value'" 2
            SECRET_VERSION[${value%%=*}]=${value#*=} ;;
        esac ;;
      *) die "unknown option: $arg (see --help)" 2 ;;
    esac
  done
}

# Shell-quote one word only where needed, so printed commands can be pasted back.
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
show() {
  local line="+" word
  for word in "$@"; do line+=" $(quote "$word")"; done
  printf '%s\n' "$line"
}
run() { show "$@"; if ((DRY_RUN)); then return 0; fi; "$@"; }

# Run; a failure saying the resource already exists counts as success.
run_tolerant() {
  local err
  show "$@"
  if ((DRY_RUN)); then return 0; fi
  if err=$("$@" 2>&1 >/dev/null); then return 0; fi
  if grep -qiE 'already exists|ALREADY_EXISTS' <<<"$err"; then note "already exists"; return 0; fi
  printf '%s\n' "$err" >&2
  return 1
}

# IAM bindings to a service account created seconds ago can fail until it propagates.
run_retry() {
  local attempt
  for attempt in 1 2 3 4; do
    if run "$@"; then return 0; fi
    note "retrying in $((attempt * 10))s (new service accounts take a moment to reach IAM)"
    sleep $((attempt * 10))
  done
  return 1
}

# 0: exists, 1: missing, 2: unknown (dry-run prints the check; callers then print both branches).
exists() {
  if ((DRY_RUN)); then show "$@"; return 2; fi
  "$@" >/dev/null 2>&1
}

check_prerequisites() {
  command -v python3 >/dev/null || die "python3 is required (it reads $INDEXES_FILE and packs $RULES_FILE)"
  [[ -f $RULES_FILE ]] || die "$RULES_FILE not found (set RULES_FILE)"
  if ((DRY_RUN)); then
    [[ -n $PROJECT ]] || die "no project: pass --project=ID or set GOOGLE_CLOUD_PROJECT"
    show gcloud auth list --filter=status:ACTIVE --format='value(account)'
    show gcloud services list --enabled --project="$PROJECT" --format='value(config.name)'
    return 0
  fi
  command -v gcloud >/dev/null ||
    die "the gcloud CLI is not installed: see https://cloud.google.com/sdk/docs/install"
  command -v curl >/dev/null || die "curl is required (it uploads the security rules)"
  [[ -n $(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null) ]] ||
    die "gcloud is not logged in: run 'gcloud auth login' (or activate a service account)"
  [[ -n $PROJECT ]] || PROJECT=$(gcloud config get-value project 2>/dev/null || true)
  [[ -n $PROJECT ]] || die "no project: pass --project=ID, set GOOGLE_CLOUD_PROJECT or run 'gcloud config set project ID'"
  local enabled missing=() api
  enabled=$(gcloud services list --enabled --project="$PROJECT" --format='value(config.name)') ||
    die "cannot list the enabled APIs of project $PROJECT (does it exist, may you use it?)"
  for api in "${APIS[@]}"; do grep -qx "$api" <<<"$enabled" || missing+=("$api"); done
  ((${#missing[@]} == 0)) || die "APIs not enabled in $PROJECT; enable them with:
  gcloud services enable ${missing[*]} --project=$PROJECT"
}

setup_settings() {
  [[ -n $BUCKET ]] || BUCKET="$PROJECT-cvplus-videos"
  [[ $RETENTION_DAYS =~ ^[0-9]+$ ]] || die "RETENTION_DAYS must be a whole number of days, got '$RETENTION_DAYS'"
  BASE_URL="https://$REGION-$PROJECT.cloudfunctions.net"
  RUNTIME_SA="cvplus-video-runtime@$PROJECT.iam.gserviceaccount.com"
  TASKS_SA="cvplus-video-tasks@$PROJECT.iam.gserviceaccount.com"
  SCHEDULER_SA="cvplus-video-scheduler@$PROJECT.iam.gserviceaccount.com"
  OPS_SA="cvplus-video-ops@$PROJECT.iam.gserviceaccount.com"
  OPS_ACCOUNTS=$OPS_SA${OPS_SERVICE_ACCOUNTS:+,${OPS_SERVICE_ACCOUNTS// /}}
  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cvplus-deploy.XXXXXX")
  chmod 700 "$WORK_DIR"
  # The dry run keeps the generated files so the printed commands can be run as shown.
  if ((DRY_RUN)); then note "generated files are kept in $WORK_DIR"; else trap 'rm -rf "$WORK_DIR"' EXIT; fi
  local spec known=" "
  for spec in "${FUNCTIONS[@]}"; do known+="${spec%%|*} "; done
  for spec in "${ONLY[@]}"; do [[ $known == *" $spec "* ]] || die "--only: unknown function '$spec' (one of:$known)" 2; done
}

ensure_service_accounts() {
  local email
  for email in "$RUNTIME_SA" "$TASKS_SA" "$SCHEDULER_SA" "$OPS_SA"; do
    exists gcloud iam service-accounts describe "$email" --project="$PROJECT" && continue
    run gcloud iam service-accounts create "${email%%@*}" --project="$PROJECT" \
      --display-name="CVPlus video: ${email%%@*}"
  done
}

create_secret_hint() {
  printf '  printf %%s "$%s" | gcloud secrets create %s --data-file=- --project=%s\n' "$1" "$1" "$PROJECT"
}

# Pin each secret to an explicit version: a redeploy never picks up a rotated key by surprise.
resolve_secrets() {
  local name version missing=()
  SECRET_ENV=()
  for name in "${REQUIRED_SECRETS[@]}" "${OPTIONAL_SECRETS[@]}"; do
    version=${SECRET_VERSION[$name]:-}
    [[ -n $version ]] || { local var="${name}_VERSION"; version=${!var:-}; }
    if ((DRY_RUN)); then
      show gcloud secrets versions list "$name" --project="$PROJECT" --filter=state:enabled \
        --sort-by=~createTime --limit=1 --format='value(name)'
      SECRET_ENV+=("$name=$name:${version:-1}")
      continue
    fi
    if ! gcloud secrets describe "$name" --project="$PROJECT" >/dev/null 2>&1; then
      if [[ " ${OPTIONAL_SECRETS[*]} " == *" $name "* ]]; then
        note "secret $name does not exist: skipped (its webhook rejects every delivery until it does)"
        create_secret_hint "$name"
      else
        missing+=("$name")
      fi
      continue
    fi
    if [[ -z $version ]]; then
      version=$(gcloud secrets versions list "$name" --project="$PROJECT" --filter=state:enabled \
        --sort-by=~createTime --limit=1 --format='value(name)')
      version=${version##*/}
      [[ -n $version ]] || die "secret $name has no enabled version; add one with:
  printf %s \"\$$name\" | gcloud secrets versions add $name --data-file=- --project=$PROJECT"
    fi
    note "$name pinned to version $version"
    SECRET_ENV+=("$name=$name:$version")
  done
  if ((${#missing[@]})); then
    printf 'deploy.sh: secrets missing in Secret Manager; create them with:\n' >&2
    for name in "${missing[@]}"; do create_secret_hint "$name" >&2; done
    exit 1
  fi
}

ensure_bucket() {
  local state=0 settings=(--project="$PROJECT" --uniform-bucket-level-access --public-access-prevention
    --lifecycle-file="$WORK_DIR/lifecycle.json")
  printf '{"rule": [{"action": {"type": "Delete"}, "condition": {"age": %s}}]}\n' "$RETENTION_DAYS" >"$WORK_DIR/lifecycle.json"
  exists gcloud storage buckets describe "gs://$BUCKET" --project="$PROJECT" || state=$?
  ((state == 0)) || run gcloud storage buckets create "gs://$BUCKET" --location="$REGION" "${settings[@]}"
  ((state == 1)) || run gcloud storage buckets update "gs://$BUCKET" "${settings[@]}"
  run_retry gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --project="$PROJECT" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/storage.objectAdmin
}

ensure_queue() {
  local state=0
  exists gcloud tasks queues describe "$QUEUE" --location="$REGION" --project="$PROJECT" || state=$?
  ((state == 0)) || run gcloud tasks queues create "$QUEUE" --location="$REGION" --project="$PROJECT" "${QUEUE_FLAGS[@]}"
  ((state == 1)) || run gcloud tasks queues update "$QUEUE" --location="$REGION" --project="$PROJECT" "${QUEUE_FLAGS[@]}"
  run_retry gcloud tasks queues add-iam-policy-binding "$QUEUE" --location="$REGION" --project="$PROJECT" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/cloudtasks.enqueuer
}

grant_runtime_roles() {
  local binding
  run_retry gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$RUNTIME_SA" \
    --role=roles/datastore.user --condition=None
  for binding in "${SECRET_ENV[@]}"; do
    run_retry gcloud secrets add-iam-policy-binding "${binding%%=*}" --project="$PROJECT" \
      --member="serviceAccount:$RUNTIME_SA" --role=roles/secretmanager.secretAccessor
  done
  # actAs the tasks account (OIDC tokens on enqueued tasks); signBlob as itself (signed URLs).
  run_retry gcloud iam service-accounts add-iam-policy-binding "$TASKS_SA" --project="$PROJECT" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/iam.serviceAccountUser
  run_retry gcloud iam service-accounts add-iam-policy-binding "$RUNTIME_SA" --project="$PROJECT" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/iam.serviceAccountTokenCreator
}

# YAML single-quoted scalars: values with commas, colons or JSON stay intact.
yaml_kv() { printf "%s: '%s'\n" "$1" "${2//\'/\'\'}"; }

write_env_file() {
  ENV_FILE="$WORK_DIR/env.yaml"
  local name
  {
    yaml_kv GOOGLE_CLOUD_PROJECT "$PROJECT"
    yaml_kv FUNCTION_REGION "$REGION"
    yaml_kv TASKS_QUEUE "$QUEUE"
    yaml_kv TASKS_LOCATION "$REGION"
    yaml_kv TASKS_SERVICE_ACCOUNT "$TASKS_SA"
    yaml_kv FUNCTIONS_BASE_URL "$BASE_URL"
    yaml_kv OPS_SERVICE_ACCOUNTS "$OPS_ACCOUNTS"
    yaml_kv SCHEDULER_SERVICE_ACCOUNT "$SCHEDULER_SA"
    yaml_kv STORAGE_BUCKET "$BUCKET"
    yaml_kv RETENTION_DAYS "$RETENTION_DAYS"
    for name in HEYGEN_AVATAR_ID HEYGEN_VOICE_ID HEYGEN_AVATAR_TYPE HEYGEN_USD_PER_SECOND FIREBASE_PROJECT_ID \
      JOB_DEADLINE_SECONDS RUNWAYML_CREDITS_PER_SECOND RUNWAYML_VEO_AUDIO IMAGE_URL_HOSTS OUTPUT_HOSTS; do
      if [[ -n ${!name:-} ]]; then yaml_kv "$name" "${!name}"; fi
    done
  } >"$ENV_FILE"
  [[ -n ${HEYGEN_AVATAR_ID:-} ]] || note "HEYGEN_AVATAR_ID is not set: HeyGen creates fail until it is"
}

selected() { ((${#ONLY[@]} == 0)) || [[ " ${ONLY[*]} " == *" $1 "* ]]; }

secrets_for() {
  local binding list=""
  for binding in "${SECRET_ENV[@]}"; do
    case ${binding%%=*} in
      HEYGEN_WEBHOOK_SECRET) [[ $1 == heygen_webhook ]] || continue ;;
      RUNWAYML_WEBHOOK_SECRET) [[ $1 == runwayml_webhook ]] || continue ;;
    esac
    list+="${list:+,}$binding"
  done
  printf '%s' "$list"
}

deploy_functions() {
  local spec name access timeout memory max auth
  [[ -f .gcloudignore ]] || note "no .gcloudignore: tests and local tooling are uploaded with the source"
  for spec in "${FUNCTIONS[@]}"; do
    IFS='|' read -r name access timeout memory max <<<"$spec"
    selected "$name" || continue
    if [[ $access == public ]]; then auth=--allow-unauthenticated; else auth=--no-allow-unauthenticated; fi
    run gcloud functions deploy "$name" --gen2 --project="$PROJECT" --region="$REGION" \
      --runtime=python312 --source=. --entry-point="$name" --trigger-http "$auth" \
      --service-account="$RUNTIME_SA" --timeout="$timeout" --memory="$memory" --max-instances="$max" \
      --env-vars-file="$ENV_FILE" --set-secrets="$(secrets_for "$name")" --quiet
  done
}

grant_invokers() {
  local spec name access rest member members
  for spec in "${FUNCTIONS[@]}"; do
    IFS='|' read -r name access rest <<<"$spec"
    selected "$name" || continue
    case $access in
      tasks) members=("$TASKS_SA") ;;
      scheduler) members=("$SCHEDULER_SA") ;;
      ops) IFS=',' read -r -a members <<<"$OPS_ACCOUNTS" ;;
      *) continue ;;
    esac
    for member in "${members[@]}"; do
      run_retry gcloud functions add-invoker-policy-binding "$name" --region="$REGION" \
        --project="$PROJECT" --member="serviceAccount:$member"
    done
  done
}

ensure_scheduler() {
  local url="$BASE_URL/runwayml_cleanup_task" state=0 json=Content-Type=application/json
  local common=(--location="$REGION" --project="$PROJECT" --schedule='*/15 * * * *' --time-zone=Etc/UTC
    --uri="$url" --http-method=POST --message-body='{}' --attempt-deadline=540s --max-retry-attempts=1
    --oidc-service-account-email="$SCHEDULER_SA" --oidc-token-audience="$url")
  exists gcloud scheduler jobs describe "$SCHEDULER_JOB" --location="$REGION" --project="$PROJECT" || state=$?
  # create if missing, else update; a dry run prints both
  ((state == 0)) || run gcloud scheduler jobs create http "$SCHEDULER_JOB" "${common[@]}" --headers="$json"
  ((state == 1)) || run gcloud scheduler jobs update http "$SCHEDULER_JOB" "${common[@]}" --update-headers="$json"
}

ensure_firestore() {
  local group state=0
  exists gcloud firestore databases describe --project="$PROJECT" || state=$?
  ((state != 1)) || die "project $PROJECT has no Firestore database; create it (the location is permanent) with:
  gcloud firestore databases create --location=$REGION --project=$PROJECT"
  for group in "${TTL_COLLECTIONS[@]}"; do
    run gcloud firestore fields ttls update expireAt --collection-group="$group" --enable-ttl --async --project="$PROJECT"
  done
}

# One line per composite index: collection group, query scope, then one --field-config per field.
index_lines() {
  python3 - "$1" <<'PY'
import json, sys
data = json.load(open(sys.argv[1], encoding="utf-8"))
if data.get("fieldOverrides"):
    print("# fieldOverrides are not applied by deploy.sh", file=sys.stderr)
for index in data.get("indexes", []):
    fields = [
        f"field-path={f['fieldPath']},"
        + (f"array-config={f['arrayConfig'].lower()}" if "arrayConfig" in f else f"order={f['order'].lower()}")
        for f in index["fields"]
    ]
    scope = index.get("queryScope", "COLLECTION").lower().replace("_", "-")
    print("\t".join([index["collectionGroup"], scope, *fields]))
PY
}

ensure_indexes() {
  local lines line parts field args
  if [[ ! -f $INDEXES_FILE ]]; then note "no $INDEXES_FILE: no composite indexes created"; return 0; fi
  lines=$(index_lines "$INDEXES_FILE") || die "$INDEXES_FILE is not a valid index file (see the error above)"
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    IFS=$'\t' read -r -a parts <<<"$line"
    args=(--collection-group="${parts[0]}" --query-scope="${parts[1]}")
    for field in "${parts[@]:2}"; do args+=(--field-config="$field"); done
    run_tolerant gcloud firestore indexes composite create "${args[@]}" --async --project="$PROJECT"
  done <<<"$lines"
}

# One Firebase Rules API call (METHOD BODY_FILE URL); the answer lands in BODY_FILE.response.
rules_call() {
  local cmd=(curl -sS -H "@$WORK_DIR/auth-header" -H "x-goog-user-project: $PROJECT"
    -H 'Content-Type: application/json' -X "$1" --data-binary "@$2" -o "$2.response" "$3")
  show "${cmd[@]}"
  HTTP_CODE=200
  if ! ((DRY_RUN)); then HTTP_CODE=$("${cmd[@]}" -w '%{http_code}') || HTTP_CODE=000; fi
}

# Security rules: create a ruleset from RULES_FILE, then point the cloud.firestore release at it.
deploy_rules() {
  local api="$RULES_API/projects/$PROJECT" token
  local release="projects/$PROJECT/releases/cloud.firestore" ruleset="projects/$PROJECT/rulesets/RULESET_ID"
  python3 -c 'import json, sys; print(json.dumps({"source": {"files": [
    {"name": "firestore.rules", "content": open(sys.argv[1], encoding="utf-8").read()}]}}))' \
    "$RULES_FILE" >"$WORK_DIR/ruleset.json"
  show gcloud auth print-access-token
  if ! ((DRY_RUN)); then
    token=$(gcloud auth print-access-token) || die "gcloud auth print-access-token failed"
    printf 'Authorization: Bearer %s\n' "$token" >"$WORK_DIR/auth-header" # a file keeps it out of argv
  fi
  rules_call POST "$WORK_DIR/ruleset.json" "$api/rulesets"
  [[ $HTTP_CODE == 200 ]] || die "creating the ruleset failed (HTTP $HTTP_CODE): $(cat "$WORK_DIR/ruleset.json.response")"
  ((DRY_RUN)) || ruleset=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["name"])' \
    "$WORK_DIR/ruleset.json.response")
  printf '{"release": {"name": "%s", "rulesetName": "%s"}}\n' "$release" "$ruleset" >"$WORK_DIR/release-patch.json"
  printf '{"name": "%s", "rulesetName": "%s"}\n' "$release" "$ruleset" >"$WORK_DIR/release-create.json"
  rules_call PATCH "$WORK_DIR/release-patch.json" "$api/releases/cloud.firestore"
  if ((DRY_RUN)) || [[ $HTTP_CODE == 404 ]]; then
    note "the first time (no release yet, HTTP 404): create it"
    rules_call POST "$WORK_DIR/release-create.json" "$api/releases"
  fi
  [[ $HTTP_CODE == 200 ]] || die "releasing the rules failed (HTTP $HTTP_CODE)"
  note "security rules released: $ruleset"
}

summary() {
  local spec
  echo
  echo "Function URLs:"
  for spec in "${FUNCTIONS[@]}"; do selected "${spec%%|*}" && echo "  $BASE_URL/${spec%%|*}"; done
  cat <<EOF

Next steps:
  1. Register the HeyGen webhook (the response carries the endpoint's signing secret):
       curl -sS -X POST https://api.heygen.com/v3/webhooks/endpoints -H "X-Api-Key: \$HEYGEN_API_KEY" \\
         -H 'Content-Type: application/json' \\
         -d '{"url": "$BASE_URL/heygen_webhook", "events": ["avatar_video.success", "avatar_video.fail"]}'
  2. Store that secret, then re-run ./deploy.sh to mount it:
       printf %s "\$SECRET" | gcloud secrets create HEYGEN_WEBHOOK_SECRET --data-file=- --project=$PROJECT
     (on rotation: gcloud secrets versions add HEYGEN_WEBHOOK_SECRET --data-file=- with "new,old")
  3. Check the providers: gcloud functions call provider_health --gen2 --region=$REGION --project=$PROJECT
EOF
}

main() {
  parse_args "$@"
  ((DRY_RUN)) && note "dry run: commands are printed, not run"
  check_prerequisites
  setup_settings
  resolve_secrets
  write_env_file
  if ((${#ONLY[@]} == 0)); then
    ensure_service_accounts
    ensure_bucket
    ensure_queue
    grant_runtime_roles
  fi
  deploy_functions
  grant_invokers
  if ((${#ONLY[@]} == 0)); then
    ensure_scheduler
    ensure_firestore
    ensure_indexes
    deploy_rules
  fi
  summary
}

# Run when executed; when sourced, only the steps are defined (the tests call them one by one).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
