#!/usr/bin/env bash
# Deploy the CVPlus video backend to Google Cloud: one service account per role and its grants,
# pinned secrets, the storage bucket, the Cloud Tasks queue, Firestore TTL policies, composite
# indexes and security rules, the ten functions (task workers first, user-facing last), the cleanup
# schedule, and the monitoring (log-based metrics, alert policies, dashboard). Safe to re-run: every
# step creates what is missing and updates what exists. `--dry-run` prints every command instead of
# running it and needs neither credentials nor network. See docs/DEPLOY.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec 3>&1 # commands run inside $(...) are still printed to the real stdout

usage() {
  cat <<'EOF_USAGE'
Usage: ./deploy.sh [options]

  --env NAME                read settings from deploy/NAME.env (see deploy/example.env)
  --project ID              GCP project (default: $GOOGLE_CLOUD_PROJECT, then gcloud config)
  --region REGION           functions, queue and scheduler region (default: $FUNCTION_REGION or us-central1)
  --queue NAME              Cloud Tasks queue (default: $TASKS_QUEUE or video-polling)
  --bucket NAME             bucket for finished videos (default: $STORAGE_BUCKET or PROJECT-cvplus-videos)
  --only FUNCTION           deploy only this function and its invoker grants (repeatable)
  --secret-version NAME=N   pin secret NAME to version N (default: $NAME_VERSION, else the
                            latest enabled version, looked up now; 1 in --dry-run)
  --check                   run `python -m web.check` with the functions' settings before deploying
  --rollback FUNCTION       send all of FUNCTION's traffic back to its previous revision, then stop
  --remove-legacy-grants    remove the grants of the old single runtime account (cvplus-video-runtime)
  --no-verify               skip the final provider_health call
  --dry-run                 print every command instead of running it (no credentials needed)
  -h, --help                show this help

Flags win over deploy/NAME.env, which wins over the environment. Other settings: RETENTION_DAYS (30),
MIN_INSTANCES (0: warm instances of each user-facing function, billed while idle; docs/DEPLOY.md),
INDEXES_FILE, RULES_FILE, OPS_SERVICE_ACCOUNTS (extra ops callers, comma-separated),
NOTIFICATION_CHANNEL (alert channels, comma-separated resource names), OPS_IMPERSONATORS (members
allowed to mint ops ID tokens; default: the deploying account), PYTHON (python3), and HEYGEN_AVATAR_ID,
HEYGEN_VOICE_ID, HEYGEN_AVATAR_TYPE, HEYGEN_USD_PER_SECOND, FIREBASE_PROJECT_ID, JOB_DEADLINE_SECONDS,
RUNWAYML_CREDITS_PER_SECOND, RUNWAYML_VEO_AUDIO, IMAGE_URL_HOSTS, OUTPUT_HOSTS, CORS_ORIGINS,
TIER_LIMITS, SPEND_CAP_USD_PER_DAY, PROVIDER_SPEND_CAPS_USD_PER_DAY, RUNWAYML_QUOTA, HEYGEN_QUOTA,
COUNTER_SHARDS, PROMPT_WRITER, GEMINI_MODEL, GEMINI_LOCATION, GEMINI_TIMEOUT_SECONDS, APP_CHECK (passed
to the functions when set).
EOF_USAGE
}

die() { printf 'deploy.sh: %s\n' "$1" >&2; exit "${2:-1}"; }
note() { printf '# %s\n' "$*"; }

# Deploy order: task workers, then operator functions and webhooks, then user-facing functions, so
# a newer front end never enqueues work an older worker does not understand.
# name | access (public, or the account that invokes it) | timeout | memory | max instances |
# runtime role (ROLES below) | calls providers (mounts the API keys) | vCPU | concurrency
# Shape (docs/DEPLOY.md, docs/PERFORMANCE.md): the functions a person waits on get a whole vCPU, so a
# cold start answers in well under a second (at the .167 vCPU that 256 MiB brings, importing the code
# alone takes ~4 s); the rest keep the vCPU their memory brings. Below 1 vCPU Cloud Run allows one
# request per instance; at 1 vCPU the create, the cancel and the status check serve 8 at once (their
# paths are proven thread-safe by tests/test_concurrency.py), the others one at a time.
FUNCTIONS=(
  "runwayml_polling_task|tasks|120s|256Mi|20|worker|yes|0.167|1"
  "finalize_video_task|tasks|540s|1Gi|20|worker|no|0.583|1"
  "runwayml_cleanup_task|scheduler|540s|512Mi|1|worker|yes|0.333|1"
  "runwayml_batch_status_check|ops|300s|512Mi|2|opsfn|yes|0.333|1"
  "provider_health|ops|60s|256Mi|2|opsfn|yes|0.167|1"
  "runwayml_webhook|public|60s|256Mi|10|hook-runwayml|yes|0.167|1"
  "heygen_webhook|public|60s|256Mi|10|hook-heygen|yes|0.167|1"
  "generate_video|public|120s|512Mi|20|api|yes|1|8"
  "cancel_video|public|60s|256Mi|10|api|yes|1|8"
  "runwayml_status_check|public|60s|256Mi|20|api|yes|1|8"
)
# One runtime service account per role, with only what its functions use (main.py and web/deps.py:
# every function reads and writes Firestore; every role but finalize's may refresh a job and enqueue
# a poll or finalize task with the tasks account's OIDC token).
# role | account id | secrets it may read | bucket role | enqueues tasks | signs URLs (signBlob as itself)
ROLES=(
  "worker|cvplus-video-worker|RUNWAYML_API_KEY HEYGEN_API_KEY|roles/storage.objectUser|yes|no"
  "opsfn|cvplus-video-opsfn|RUNWAYML_API_KEY HEYGEN_API_KEY|-|yes|no"
  "hook-runwayml|cvplus-video-hook-runwayml|RUNWAYML_API_KEY HEYGEN_API_KEY RUNWAYML_WEBHOOK_SECRET|-|yes|no"
  "hook-heygen|cvplus-video-hook-heygen|RUNWAYML_API_KEY HEYGEN_API_KEY HEYGEN_WEBHOOK_SECRET|-|yes|no"
  "api|cvplus-video-api|RUNWAYML_API_KEY HEYGEN_API_KEY|roles/storage.objectViewer|yes|yes"
)
LEGACY_ACCOUNT=cvplus-video-runtime # the single account every function ran as before
REQUIRED_SECRETS=(RUNWAYML_API_KEY HEYGEN_API_KEY)
OPTIONAL_SECRETS=(HEYGEN_WEBHOOK_SECRET RUNWAYML_WEBHOOK_SECRET)
APIS=(cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
  artifactregistry.googleapis.com cloudtasks.googleapis.com cloudscheduler.googleapis.com
  firestore.googleapis.com firebaserules.googleapis.com secretmanager.googleapis.com
  storage.googleapis.com iam.googleapis.com iamcredentials.googleapis.com
  logging.googleapis.com monitoring.googleapis.com)
TTL_COLLECTIONS=(enhanced_video_jobs video_job_status runwayml_jobs heygen_jobs video_webhook_events video_quota
  video_health video_users video_refresh)
PASSED_SETTINGS=(HEYGEN_AVATAR_ID HEYGEN_VOICE_ID HEYGEN_AVATAR_TYPE HEYGEN_USD_PER_SECOND FIREBASE_PROJECT_ID
  JOB_DEADLINE_SECONDS RUNWAYML_CREDITS_PER_SECOND RUNWAYML_VEO_AUDIO IMAGE_URL_HOSTS OUTPUT_HOSTS
  CORS_ORIGINS TIER_LIMITS SPEND_CAP_USD_PER_DAY PROVIDER_SPEND_CAPS_USD_PER_DAY RUNWAYML_QUOTA HEYGEN_QUOTA
  COUNTER_SHARDS PROMPT_WRITER GEMINI_MODEL GEMINI_LOCATION GEMINI_TIMEOUT_SECONDS APP_CHECK)
# Queue shape. A poll or finalize request runs on a Python gen2 instance with less than one vCPU,
# so concurrency is 1 request per instance: 20 concurrent dispatches <= 20 max instances x 1 of
# both task targets. At ~2 s per poll, 10 dispatches/s keeps ~20 requests in flight, enough for
# ~100 jobs polled every 10 s. Retries back off 5,10,20,40,80,160,300,300,300 s: ten attempts
# over ~20 min, inside the 30 min job deadline; the cleanup sweep handles what is left.
QUEUE_FLAGS=(--max-attempts=10 --min-backoff=5s --max-backoff=300s --max-doublings=5
  --max-dispatches-per-second=10 --max-concurrent-dispatches=20)

# Settings from the environment (and deploy/NAME.env, loaded before this runs again).
read_settings() {
  PROJECT=${GOOGLE_CLOUD_PROJECT:-}
  REGION=${FUNCTION_REGION:-us-central1}
  QUEUE=${TASKS_QUEUE:-video-polling}
  BUCKET=${STORAGE_BUCKET:-}
  RETENTION_DAYS=${RETENTION_DAYS:-30}
  MIN_INSTANCES=${MIN_INSTANCES:-0} # per user-facing function; billed while idle (docs/DEPLOY.md)
  INDEXES_FILE=${INDEXES_FILE:-firestore.indexes.json}
  RULES_FILE=${RULES_FILE:-firestore.rules}
  RULES_API=${FIREBASE_RULES_API:-https://firebaserules.googleapis.com/v1}
  NOTIFICATION_CHANNEL=${NOTIFICATION_CHANNEL:-}
  PYTHON=${PYTHON:-python3}
}
read_settings
SCHEDULER_JOB=cvplus-video-cleanup
DRY_RUN=0
CHECK=0
VERIFY=1
REMOVE_LEGACY=0
ROLLBACK=
ENV_NAME=
ONLY=()
declare -A SECRET_VERSION=() FLAG=()

parse_args() {
  local arg value
  while (($#)); do
    arg=$1
    shift
    if [[ $arg == --*=* ]]; then set -- "${arg#*=}" "$@"; arg=${arg%%=*}; fi
    case $arg in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1 ;;
      --check) CHECK=1 ;;
      --no-verify) VERIFY=0 ;;
      --remove-legacy-grants) REMOVE_LEGACY=1 ;;
      --env | --project | --region | --queue | --bucket | --only | --secret-version | --rollback)
        { (($#)) && [[ -n $1 && $1 != --* ]]; } || die "$arg needs a value (see --help)" 2
        value=$1
        shift
        case $arg in
          --env) ENV_NAME=$value ;;
          --only) ONLY+=("$value") ;;
          --rollback) ROLLBACK=$value ;;
          --secret-version)
            [[ $value =~ ^[A-Z_]+=[0-9]+$ ]] || die "--secret-version takes NAME=NUMBER, got '$value'" 2
            SECRET_VERSION[${value%%=*}]=${value#*=} ;;
          *) FLAG[$arg]=$value ;;
        esac ;;
      *) die "unknown option: $arg (see --help)" 2 ;;
    esac
  done
}

# deploy/NAME.env: KEY=VALUE lines (optionally quoted), comments and blank lines; nothing is
# evaluated. Its values win over the environment; flags win over both.
load_env_file() {
  [[ -n $ENV_NAME ]] || return 0
  [[ $ENV_NAME =~ ^[A-Za-z0-9_-]+$ ]] || die "--env takes a name like prod (for deploy/prod.env), got '$ENV_NAME'" 2
  local file="deploy/$ENV_NAME.env" line key value number=0
  [[ -f $file ]] || die "$file not found (copy deploy/example.env to start one)" 2
  while IFS= read -r line || [[ -n $line ]]; do
    number=$((number + 1))
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Z][A-Z0-9_]*)=(.*)$ ]] ||
      die "$file:$number: expected KEY=VALUE, got: $line" 2
    key=${BASH_REMATCH[2]}
    value=${BASH_REMATCH[3]}
    if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
    export "$key=$value"
  done <"$file"
  note "settings from $file"
  read_settings
}

apply_flags() {
  PROJECT=${FLAG[--project]:-$PROJECT}
  REGION=${FLAG[--region]:-$REGION}
  QUEUE=${FLAG[--queue]:-$QUEUE}
  BUCKET=${FLAG[--bucket]:-$BUCKET}
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

# Print a command's answer; in a dry run print the command and answer PLACEHOLDER instead.
capture() {
  local placeholder=$1
  shift
  if ((DRY_RUN)); then show "$@" >&3; printf '%s\n' "$placeholder"; return 0; fi
  "$@"
}

check_prerequisites() {
  command -v python3 >/dev/null || die "python3 is required (it reads $INDEXES_FILE and packs $RULES_FILE)"
  [[ -f $RULES_FILE ]] || die "$RULES_FILE not found (set RULES_FILE)"
  if ((DRY_RUN)); then
    [[ -n $PROJECT ]] || die "no project: pass --project=ID or set GOOGLE_CLOUD_PROJECT"
    show gcloud auth list --filter=status:ACTIVE --format='value(account)'
    show gcloud services list --enabled --project="$PROJECT" --format='value(config.name)'
    DEPLOYER=${DEPLOYER:-deployer@example.com}
    return 0
  fi
  command -v gcloud >/dev/null ||
    die "the gcloud CLI is not installed: see https://cloud.google.com/sdk/docs/install"
  command -v curl >/dev/null || die "curl is required (it uploads the security rules)"
  DEPLOYER=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null | head -n1)
  [[ -n $DEPLOYER ]] || die "gcloud is not logged in: run 'gcloud auth login' (or activate a service account)"
  [[ -n $PROJECT ]] || PROJECT=$(gcloud config get-value project 2>/dev/null || true)
  [[ -n $PROJECT ]] || die "no project: pass --project=ID, set GOOGLE_CLOUD_PROJECT or run 'gcloud config set project ID'"
  local enabled missing=() api
  enabled=$(gcloud services list --enabled --project="$PROJECT" --format='value(config.name)') ||
    die "cannot list the enabled APIs of project $PROJECT (does it exist, may you use it?)"
  for api in "${APIS[@]}"; do grep -qx "$api" <<<"$enabled" || missing+=("$api"); done
  ((${#missing[@]} == 0)) || die "APIs not enabled in $PROJECT; enable them with:
  gcloud services enable ${missing[*]} --project=$PROJECT"
}

member_of() { if [[ $1 == *.gserviceaccount.com ]]; then printf 'serviceAccount:%s' "$1"; else printf 'user:%s' "$1"; fi; }
sa_email() { printf '%s@%s.iam.gserviceaccount.com' "$1" "$PROJECT"; }

setup_settings() {
  [[ -n $BUCKET ]] || BUCKET="$PROJECT-cvplus-videos"
  [[ $RETENTION_DAYS =~ ^[0-9]+$ ]] || die "RETENTION_DAYS must be a whole number of days, got '$RETENTION_DAYS'"
  [[ $MIN_INSTANCES =~ ^[0-9]+$ ]] || die "MIN_INSTANCES must be a whole number, got '$MIN_INSTANCES'"
  local channel
  for channel in ${NOTIFICATION_CHANNEL//,/ }; do
    [[ $channel =~ ^projects/[^/]+/notificationChannels/[0-9]+$ ]] ||
      die "NOTIFICATION_CHANNEL takes projects/PROJECT/notificationChannels/ID (comma-separated), got '$channel'" 2
  done
  BASE_URL="https://$REGION-$PROJECT.cloudfunctions.net"
  TASKS_SA=$(sa_email cvplus-video-tasks)
  SCHEDULER_SA=$(sa_email cvplus-video-scheduler)
  OPS_SA=$(sa_email cvplus-video-ops)
  LEGACY_SA=$(sa_email "$LEGACY_ACCOUNT")
  OPS_ACCOUNTS=$OPS_SA${OPS_SERVICE_ACCOUNTS:+,${OPS_SERVICE_ACCOUNTS// /}}
  OPS_IMPERSONATORS=${OPS_IMPERSONATORS:-$(member_of "${DEPLOYER:-deployer@example.com}")}
  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cvplus-deploy.XXXXXX")
  chmod 700 "$WORK_DIR"
  # Removed on every exit, failures included; the dry run keeps the generated files so the printed
  # commands can be run as shown.
  if ((DRY_RUN)); then note "generated files are kept in $WORK_DIR"; else trap 'rm -rf "$WORK_DIR"' EXIT; fi
  local spec known=" "
  for spec in "${FUNCTIONS[@]}"; do known+="${spec%%|*} "; done
  for spec in "${ONLY[@]}" ${ROLLBACK:+"$ROLLBACK"}; do
    [[ $known == *" $spec "* ]] || die "unknown function '$spec' (one of:$known)" 2
  done
}

# Field(s) $3 (1-based, cut syntax) of the line for $2 in the table named $1 (ROLES or FUNCTIONS).
table_field() {
  local -n rows=$1
  local spec
  for spec in "${rows[@]}"; do
    [[ ${spec%%|*} == "$2" ]] && { cut -d'|' -f"$3" <<<"$spec"; return 0; }
  done
  die "no $2 in $1"
}
role_field() { table_field ROLES "$1" "$2"; }
role_sa() { sa_email "$(role_field "$1" 2)"; }
function_field() { table_field FUNCTIONS "$1" "$2"; }

ensure_service_accounts() {
  local email spec accounts=("$TASKS_SA" "$SCHEDULER_SA" "$OPS_SA")
  for spec in "${ROLES[@]}"; do accounts+=("$(role_sa "${spec%%|*}")"); done
  for email in "${accounts[@]}"; do
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
}

ensure_queue() {
  local state=0
  exists gcloud tasks queues describe "$QUEUE" --location="$REGION" --project="$PROJECT" || state=$?
  ((state == 0)) || run gcloud tasks queues create "$QUEUE" --location="$REGION" --project="$PROJECT" "${QUEUE_FLAGS[@]}"
  ((state == 1)) || run gcloud tasks queues update "$QUEUE" --location="$REGION" --project="$PROJECT" "${QUEUE_FLAGS[@]}"
}

# Is secret $1 resolved (it exists, or this is a dry run)?
secret_known() {
  local binding
  for binding in "${SECRET_ENV[@]}"; do [[ ${binding%%=*} == "$1" ]] && return 0; done
  return 1
}

# Each runtime account gets exactly what its ROLES line says; see docs/DEPLOY.md for the table.
grant_runtime_roles() {
  local spec role account secrets bucket_role enqueues signs email member secret
  for spec in "${ROLES[@]}"; do
    IFS='|' read -r role account secrets bucket_role enqueues signs <<<"$spec"
    email=$(sa_email "$account")
    member="serviceAccount:$email"
    note "grants of $email ($role)"
    # Firestore has no predefined role narrower than datastore.user that still writes documents.
    run_retry gcloud projects add-iam-policy-binding "$PROJECT" --member="$member" \
      --role=roles/datastore.user --condition=None
    for secret in $secrets; do
      secret_known "$secret" || continue
      run_retry gcloud secrets add-iam-policy-binding "$secret" --project="$PROJECT" \
        --member="$member" --role=roles/secretmanager.secretAccessor
    done
    if [[ $bucket_role != - ]]; then
      run_retry gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --project="$PROJECT" \
        --member="$member" --role="$bucket_role"
    fi
    if [[ $enqueues == yes ]]; then # create tasks, and actAs the tasks account for their OIDC token
      run_retry gcloud tasks queues add-iam-policy-binding "$QUEUE" --location="$REGION" --project="$PROJECT" \
        --member="$member" --role=roles/cloudtasks.enqueuer
      run_retry gcloud iam service-accounts add-iam-policy-binding "$TASKS_SA" --project="$PROJECT" \
        --member="$member" --role=roles/iam.serviceAccountUser
    fi
    if [[ $signs == yes ]]; then # signBlob as itself: V4 signed download links
      run_retry gcloud iam service-accounts add-iam-policy-binding "$email" --project="$PROJECT" \
        --member="$member" --role=roles/iam.serviceAccountTokenCreator
    fi
  done
  # The deploy's last step calls provider_health with an ID token of the ops account.
  for member in ${OPS_IMPERSONATORS//,/ }; do
    run_retry gcloud iam service-accounts add-iam-policy-binding "$OPS_SA" --project="$PROJECT" \
      --member="$member" --role=roles/iam.serviceAccountOpenIdTokenCreator
  done
}

# PROMPT_WRITER=gemini: generate_video's account calls Gemini on Vertex AI (docs/PROMPTS.md).
ensure_prompt_writer() {
  [[ ${PROMPT_WRITER:-rules} == gemini ]] || return 0
  run_retry gcloud services enable aiplatform.googleapis.com --project="$PROJECT"
  run_retry gcloud projects add-iam-policy-binding "$PROJECT" \
    --member="serviceAccount:$(role_sa "$(function_field generate_video 6)")" \
    --role=roles/aiplatform.user --condition=None
}

# YAML single-quoted scalars: values with commas, colons or JSON stay intact.
yaml_kv() { printf "%s: '%s'\n" "$1" "${2//\'/\'\'}"; }

# The functions' environment, as NAME=VALUE pairs (for --check) and as a YAML file (for deploys).
write_env_file() {
  ENV_FILE="$WORK_DIR/env.yaml"
  FUNCTION_ENV=(GOOGLE_CLOUD_PROJECT="$PROJECT" FUNCTION_REGION="$REGION" TASKS_QUEUE="$QUEUE"
    TASKS_LOCATION="$REGION" TASKS_SERVICE_ACCOUNT="$TASKS_SA" FUNCTIONS_BASE_URL="$BASE_URL"
    OPS_SERVICE_ACCOUNTS="$OPS_ACCOUNTS" SCHEDULER_SERVICE_ACCOUNT="$SCHEDULER_SA"
    STORAGE_BUCKET="$BUCKET" RETENTION_DAYS="$RETENTION_DAYS"
    PYDANTIC_DISABLE_PLUGINS=__all__) # no pydantic plugin is used: none is looked for at cold start
  local name pair
  for name in "${PASSED_SETTINGS[@]}"; do
    if [[ -n ${!name:-} ]]; then FUNCTION_ENV+=("$name=${!name}"); fi
  done
  for pair in "${FUNCTION_ENV[@]}"; do yaml_kv "${pair%%=*}" "${pair#*=}"; done >"$ENV_FILE"
  [[ -n ${HEYGEN_AVATAR_ID:-} ]] || note "HEYGEN_AVATAR_ID is not set: HeyGen creates fail until it is"
}

# --check: the settings the functions will get, validated by the code itself before anything changes.
run_check() {
  if [[ ! -f web/check.py ]]; then
    note "--check skipped: web/check.py does not exist in this checkout (nothing to run)"
    return 0
  fi
  run env "${FUNCTION_ENV[@]}" "$PYTHON" -m web.check || die "web.check found problems (above); nothing was deployed"
}

selected() { ((${#ONLY[@]} == 0)) || [[ " ${ONLY[*]} " == *" $1 "* ]]; }

# The secrets function $1 mounts: the API keys where it calls providers, a webhook secret only in
# its own receiver (each a subset of what its account may read).
secrets_for() {
  local binding name list="" allowed calls
  allowed=" $(role_field "$(function_field "$1" 6)" 3) "
  calls=$(function_field "$1" 7)
  for binding in "${SECRET_ENV[@]}"; do
    name=${binding%%=*}
    [[ $allowed == *" $name "* ]] || continue
    [[ $calls == yes || $name == *_WEBHOOK_SECRET ]] || continue
    list+="${list:+,}$binding"
  done
  printf '%s' "$list"
}

deploy_function() {
  local name=$1 access timeout memory max role cpu concurrency min auth secrets
  IFS='|' read -r _ access timeout memory max role _ cpu concurrency <<<"$(function_field "$name" 1-)"
  min=0
  [[ $role == api ]] && min=$MIN_INSTANCES # warm instances for the functions a person waits on
  if [[ $access == public ]]; then auth=--allow-unauthenticated; else auth=--no-allow-unauthenticated; fi
  secrets=$(secrets_for "$name")
  if [[ -n $secrets ]]; then secrets=--set-secrets=$secrets; else secrets=--clear-secrets; fi
  run gcloud functions deploy "$name" --gen2 --project="$PROJECT" --region="$REGION" \
    --runtime=python312 --source=. --entry-point="$name" --trigger-http "$auth" \
    --service-account="$(role_sa "$role")" --timeout="$timeout" --memory="$memory" --cpu="$cpu" \
    --concurrency="$concurrency" --max-instances="$max" --min-instances="$min" \
    --env-vars-file="$ENV_FILE" "$secrets" --quiet
}

grant_invoker() {
  local name=$1 member members
  case $(function_field "$name" 2) in
    tasks) members=("$TASKS_SA") ;;
    scheduler) members=("$SCHEDULER_SA") ;;
    ops) IFS=',' read -r -a members <<<"$OPS_ACCOUNTS" ;;
    *) return 0 ;;
  esac
  for member in "${members[@]}"; do
    run_retry gcloud functions add-invoker-policy-binding "$name" --region="$REGION" \
      --project="$PROJECT" --member="serviceAccount:$member"
  done
}

# In FUNCTIONS order (workers first), each with its invoker grants before the next one deploys.
deploy_functions() {
  local spec name
  [[ -f .gcloudignore ]] || note "no .gcloudignore: tests and local tooling are uploaded with the source"
  for spec in "${FUNCTIONS[@]}"; do
    name=${spec%%|*}
    selected "$name" || continue
    deploy_function "$name"
    grant_invoker "$name"
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

# Log-based metrics, alert policies and the dashboard (monitoring/): ensure_log_metrics,
# ensure_alert_policies, ensure_dashboard.
# shellcheck source=deploy/monitoring.sh
source deploy/monitoring.sh

# The grants of the single account every function ran as before the split. Once every function
# runs as its role's account (deploy_functions above), they are unused: listed for the operator,
# or removed with --remove-legacy-grants.
migrate_legacy_account() {
  local state=0 member="serviceAccount:$LEGACY_SA" binding commands=() command words
  exists gcloud iam service-accounts describe "$LEGACY_SA" --project="$PROJECT" || state=$?
  ((state != 1)) || return 0
  commands+=("gcloud projects remove-iam-policy-binding $PROJECT --member=$member --role=roles/datastore.user --condition=None")
  for binding in "${SECRET_ENV[@]}"; do
    commands+=("gcloud secrets remove-iam-policy-binding ${binding%%=*} --project=$PROJECT --member=$member --role=roles/secretmanager.secretAccessor")
  done
  commands+=("gcloud storage buckets remove-iam-policy-binding gs://$BUCKET --project=$PROJECT --member=$member --role=roles/storage.objectAdmin"
    "gcloud tasks queues remove-iam-policy-binding $QUEUE --location=$REGION --project=$PROJECT --member=$member --role=roles/cloudtasks.enqueuer"
    "gcloud iam service-accounts remove-iam-policy-binding $TASKS_SA --project=$PROJECT --member=$member --role=roles/iam.serviceAccountUser"
    "gcloud iam service-accounts remove-iam-policy-binding $LEGACY_SA --project=$PROJECT --member=$member --role=roles/iam.serviceAccountTokenCreator")
  if ((!REMOVE_LEGACY)); then
    note "every function now runs as its role's account; the old account $LEGACY_SA keeps grants"
    note "nothing uses. Remove them with ./deploy.sh --remove-legacy-grants, or by hand:"
    for command in "${commands[@]}"; do note "  $command"; done
    note "  gcloud iam service-accounts delete $LEGACY_SA --project=$PROJECT   # after checking nothing else uses it"
    return 0
  fi
  note "removing the grants of $LEGACY_SA (a grant that is already gone is skipped)"
  for command in "${commands[@]}"; do
    read -r -a words <<<"$command"
    show "${words[@]}"
    ((DRY_RUN)) || "${words[@]}" >/dev/null 2>&1 || note "not granted (skipped)"
  done
  note "the account itself is kept; delete it with: gcloud iam service-accounts delete $LEGACY_SA --project=$PROJECT"
}

# --rollback FUNCTION: a gen2 function is a Cloud Run service; send all its traffic to the revision
# created before the one serving now. The next ./deploy.sh of that function serves the new revision.
rollback() {
  local name=$1 service serving revisions previous="" found=0 revision
  service=$(capture "${name//_/-}" gcloud functions describe "$name" --gen2 --region="$REGION" \
    --project="$PROJECT" --format='value(serviceConfig.service)')
  service=${service##*/}
  [[ -n $service ]] || die "function $name has no Cloud Run service in $REGION (is it deployed?)"
  serving=$(capture SERVING_REVISION gcloud run services describe "$service" --region="$REGION" \
    --project="$PROJECT" --format='value(status.traffic[0].revisionName)')
  revisions=$(capture $'SERVING_REVISION\nPREVIOUS_REVISION' gcloud run revisions list --service="$service" \
    --region="$REGION" --project="$PROJECT" --sort-by=~metadata.creationTimestamp --format='value(metadata.name)')
  while IFS= read -r revision; do
    if ((found)); then previous=$revision; break; fi
    [[ $revision == "$serving" ]] && found=1
  done <<<"$revisions"
  [[ -n $previous ]] || die "$name ($service): no revision older than $serving to roll back to"
  note "$name: $serving -> $previous"
  run gcloud run services update-traffic "$service" --region="$REGION" --project="$PROJECT" \
    --to-revisions="$previous=100"
  note "undo: gcloud run services update-traffic $service --to-latest --region=$REGION --project=$PROJECT"
}

# The last step: provider_health, called as the ops account (an ID token minted by impersonation;
# the deploying account got roles/iam.serviceAccountOpenIdTokenCreator on it above).
verify_deploy() {
  local url="$BASE_URL/provider_health" token attempt code=000
  for attempt in 1 2 3; do
    show gcloud auth print-identity-token --impersonate-service-account="$OPS_SA" --audiences="$url" --include-email
    ((DRY_RUN)) && break
    if token=$(gcloud auth print-identity-token --impersonate-service-account="$OPS_SA" --audiences="$url" \
      --include-email 2>/dev/null); then break; fi
    note "cannot mint an ID token as $OPS_SA yet (new grants take a minute); retrying in $((attempt * 20))s"
    sleep $((attempt * 20))
  done
  if ! ((DRY_RUN)); then
    [[ -n ${token:-} ]] || die "deployed, but no ID token as $OPS_SA: does $DEPLOYER have roles/iam.serviceAccountOpenIdTokenCreator on it (OPS_IMPERSONATORS)?"
    printf 'Authorization: Bearer %s\n' "$token" >"$WORK_DIR/ops-auth-header"
  fi
  local cmd=(curl -sS -H "@$WORK_DIR/ops-auth-header" -o "$WORK_DIR/health.json" -w '%{http_code}' "$url")
  show "${cmd[@]}"
  ((DRY_RUN)) && return 0
  code=$("${cmd[@]}") || code=000
  [[ $code == 200 ]] || die "deployed, but provider_health answered HTTP $code: $(cat "$WORK_DIR/health.json" 2>/dev/null)"
  note "provider_health: $(cat "$WORK_DIR/health.json")"
}

summary() {
  local spec
  echo
  echo "Function URLs:"
  for spec in "${FUNCTIONS[@]}"; do selected "${spec%%|*}" && echo "  $BASE_URL/${spec%%|*}"; done
  cat <<EOF_SUMMARY

Next steps:
  1. Register the HeyGen webhook (the response carries the endpoint's signing secret):
       curl -sS -X POST https://api.heygen.com/v3/webhooks/endpoints -H "X-Api-Key: \$HEYGEN_API_KEY" \\
         -H 'Content-Type: application/json' \\
         -d '{"url": "$BASE_URL/heygen_webhook", "events": ["avatar_video.success", "avatar_video.fail"]}'
  2. Store that secret, then re-run ./deploy.sh to mount it:
       printf %s "\$SECRET" | gcloud secrets create HEYGEN_WEBHOOK_SECRET --data-file=- --project=$PROJECT
     (on rotation: gcloud secrets versions add HEYGEN_WEBHOOK_SECRET --data-file=- with "new,old")
  3. Check the providers as the ops account:
       curl -sS -H "Authorization: Bearer \$(gcloud auth print-identity-token \\
         --impersonate-service-account=$OPS_SA --audiences=$BASE_URL/provider_health --include-email)" \\
         $BASE_URL/provider_health
EOF_SUMMARY
}

main() {
  parse_args "$@"
  load_env_file
  apply_flags
  ((DRY_RUN)) && note "dry run: commands are printed, not run"
  check_prerequisites
  setup_settings
  if [[ -n $ROLLBACK ]]; then rollback "$ROLLBACK"; return 0; fi
  resolve_secrets
  write_env_file
  ((CHECK == 0)) || run_check
  if ((${#ONLY[@]} == 0)); then
    ensure_service_accounts
    ensure_bucket
    ensure_queue
    grant_runtime_roles
    ensure_prompt_writer
    ensure_firestore # TTL, indexes and rules before any code that needs them
    ensure_indexes
    deploy_rules
    ensure_log_metrics
  fi
  deploy_functions
  if ((${#ONLY[@]} == 0)); then
    ensure_scheduler
    ensure_alert_policies
    ensure_dashboard
    migrate_legacy_account
  fi
  summary
  if ((VERIFY && ${#ONLY[@]} == 0)); then verify_deploy; fi
}

# Run when executed; when sourced, only the steps are defined (the tests call them one by one).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
