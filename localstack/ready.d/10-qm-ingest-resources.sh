#!/usr/bin/env bash
# LocalStack init hook (ready.d): creates what `qm-ingest bootstrap` creates, with the same
# names (the same QM_* variables and defaults) and the same configuration. Idempotent: what
# exists is left alone; the recordings bucket's other notification rules are kept.
#
# Runs inside LocalStack with `awslocal`, or anywhere with the AWS CLI and AWS_ENDPOINT_URL
# (tests/contract/test_localstack_hook.py runs it against the embedded emulator and compares
# the result with `qm-ingest bootstrap`'s).
set -euo pipefail

if [[ -n "${AWS_ENDPOINT_URL:-}" ]] && command -v aws >/dev/null 2>&1; then
    # Explicit: some AWS CLI v1 commands (sqs) ignore the AWS_ENDPOINT_URL variable.
    AWS=(aws --endpoint-url "$AWS_ENDPOINT_URL")
else
    AWS=(awslocal)
fi
export AWS_DEFAULT_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
export AWS_PAGER=""

CTR_STREAM="${QM_CTR_STREAM:-qm-ctr}"
CTR_SHARDS="${QM_CTR_STREAM_SHARDS:-2}"
AGENT_STREAM="${QM_AGENT_EVENT_STREAM:-qm-agent-events}"
OUTPUT_STREAM="${QM_OUTPUT_STREAM:-qm-contacts}"
RECORDINGS_BUCKET="${QM_RECORDINGS_BUCKET:-qm-recordings}"
RECORDINGS_QUEUE="${QM_RECORDINGS_QUEUE:-qm-recording-events}"
QUARANTINE_BUCKET="${QM_QUARANTINE_BUCKET:-qm-ingest-quarantine}"
CONTACTS_TABLE="${QM_CONTACTS_TABLE:-qm-contacts}"
QUARANTINE_TABLE="${QM_QUARANTINE_TABLE:-qm-quarantine}"
USERS_TABLE="${QM_USERS_TABLE:-qm-users}"
JOIN_TABLE="${QM_JOIN_TABLE:-qm-join}"
CONFIG_TABLE="${QM_CONFIG_TABLE:-qm-config}"
AUDIT_TABLE="${QM_AUDIT_TABLE:-qm-audit}"
COMMANDS_TABLE="${QM_COMMANDS_TABLE:-qm-commands}"
AGENTS_TABLE="${QM_AGENTS_TABLE:-qm-agents}"
SCREEN_BUCKET="${QM_SCREEN_BUCKET:-qm-screen-recordings}"
RESULTS_QUEUE="${QM_SCREEN_RESULTS_QUEUE:-qm-screen-results}"
ARCHIVE_BUCKET="${QM_ARCHIVE_BUCKET:-qm-ctr-archive}"
COPIES_BUCKET="${QM_RECORDINGS_COPY_BUCKET:-qm-recording-copies}"
ARCHIVE_PREFIX="${QM_ARCHIVE_PREFIX:-}"
ARCHIVE_QUEUE="${QM_ARCHIVE_QUEUE:-qm-ctr-archive-events}"
CURSOR_TABLE="${QM_ARCHIVE_CURSOR_TABLE:-qm-archive-cursor}"
# As in processor/ops/bootstrap.py: NOTIFICATION_ID, ARCHIVE_NOTIFICATION_ID, DLQ_MAX_RECEIVES,
# MAX_RETENTION_SECONDS, ARCHIVE_VISIBILITY_SECONDS.
NOTIFICATION_ID="qm-ingest-recordings"
ARCHIVE_NOTIFICATION_ID="qm-ingest-ctr-archive"
DLQ_MAX_RECEIVES=5
RETENTION=1209600
ARCHIVE_VISIBILITY=900
# The archive prefix as a folder ("" or ending with "/"), as processor.core.archive_layout.folder.
ARCHIVE_PREFIX="${ARCHIVE_PREFIX#/}"
if [[ -n "$ARCHIVE_PREFIX" && "$ARCHIVE_PREFIX" != */ ]]; then ARCHIVE_PREFIX="$ARCHIVE_PREFIX/"; fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

aws_() { "${AWS[@]}" "$@"; }
say() { echo "qm-ingest init: $*"; }
# A JSON document as one JSON string (SQS attributes hold policies as strings).
json_string() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

stream() {  # name shards
    if aws_ kinesis describe-stream-summary --stream-name "$1" >/dev/null 2>&1; then
        say "exists   kinesis stream $1"; return 0
    fi
    aws_ kinesis create-stream --stream-name "$1" --shard-count "$2"
    aws_ kinesis wait stream-exists --stream-name "$1"
    say "created  kinesis stream $1"
}

gsi() {  # name hash [range] [projection: ALL (default) or KEYS_ONLY]
    local schema="{\"AttributeName\":\"$2\",\"KeyType\":\"HASH\"}"
    [[ -n "${3:-}" ]] && schema+=",{\"AttributeName\":\"$3\",\"KeyType\":\"RANGE\"}"
    printf '{"IndexName":"%s","KeySchema":[%s],"Projection":{"ProjectionType":"%s"}}' "$1" "$schema" "${4:-ALL}"
}

attributes() {  # names... (all strings)
    local out="" name
    for name in "$@"; do out+="{\"AttributeName\":\"$name\",\"AttributeType\":\"S\"},"; done
    printf '[%s]' "${out%,}"
}

table() {  # name key attributes-json [gsis-json] [ttl-attribute]
    local name="$1" key="$2" attrs="$3" gsis="${4:-}" ttl="${5:-}"
    if aws_ dynamodb describe-table --table-name "$name" >/dev/null 2>&1; then
        say "exists   dynamodb table $name"; return 0
    fi
    local extra=()
    [[ -n "$gsis" ]] && extra=(--global-secondary-indexes "$gsis")
    aws_ dynamodb create-table --table-name "$name" \
        --key-schema "AttributeName=$key,KeyType=HASH" \
        --attribute-definitions "$attrs" \
        --billing-mode PAY_PER_REQUEST "${extra[@]}" >/dev/null
    aws_ dynamodb wait table-exists --table-name "$name"
    if [[ -n "$ttl" ]]; then
        aws_ dynamodb update-time-to-live --table-name "$name" \
            --time-to-live-specification "Enabled=true,AttributeName=$ttl" >/dev/null
    fi
    say "created  dynamodb table $name"
}

bucket() {
    if aws_ s3api head-bucket --bucket "$1" >/dev/null 2>&1; then
        say "exists   s3 bucket $1"; return 0
    fi
    if [[ "$AWS_DEFAULT_REGION" == "us-east-1" ]]; then
        aws_ s3api create-bucket --bucket "$1" >/dev/null
    else
        aws_ s3api create-bucket --bucket "$1" \
            --create-bucket-configuration "LocationConstraint=$AWS_DEFAULT_REGION" >/dev/null
    fi
    say "created  s3 bucket $1"
}

queue_url() { aws_ sqs get-queue-url --queue-name "$1" --query QueueUrl --output text 2>/dev/null; }
queue_arn() {
    aws_ sqs get-queue-attributes --queue-url "$1" --attribute-names QueueArn \
        --query Attributes.QueueArn --output text
}

queue() {  # name attributes-file
    if queue_url "$1" >/dev/null; then
        say "exists   sqs queue $1"; return 0
    fi
    aws_ sqs create-queue --queue-name "$1" --attributes "file://$2" >/dev/null
    say "created  sqs queue $1"
}

# --- streams ---------------------------------------------------------------------------------
stream "$CTR_STREAM" "$CTR_SHARDS"
stream "$AGENT_STREAM" 1
stream "$OUTPUT_STREAM" 1

# --- tables (processor/ops/bootstrap.py table_specs) ---------------------------------------------
table "$CONTACTS_TABLE" contact_id "$(attributes acd_id connected_at contact_date contact_id)" \
    "[$(gsi by_date contact_date connected_at),$(gsi by_agent acd_id connected_at)]"
table "$QUARANTINE_TABLE" id "$(attributes id)"
# os_login-index is keys-only: a PC recorder learns whose queue to serve and nothing else.
table "$USERS_TABLE" username "$(attributes agent_arn os_login username)" "[$(gsi agent_arn-index agent_arn),$(gsi os_login-index os_login "" KEYS_ONLY)]"
table "$JOIN_TABLE" pk "$(attributes due_at due_shard pk)" "[$(gsi by_due due_shard due_at)]" expires_at
table "$CONFIG_TABLE" name "$(attributes name)"
table "$COMMANDS_TABLE" command_id "$(attributes agent command_id issued_at)" "[$(gsi by_agent agent issued_at)]"
table "$AGENTS_TABLE" agent "$(attributes agent)"
table "$AUDIT_TABLE" id "$(attributes at day id)" "[$(gsi by_day day at)]"
table "$CURSOR_TABLE" object "$(attributes object)"

# --- buckets ---------------------------------------------------------------------------------
bucket "$RECORDINGS_BUCKET"
bucket "$QUARANTINE_BUCKET"
bucket "$SCREEN_BUCKET"
bucket "$ARCHIVE_BUCKET"
bucket "$COPIES_BUCKET"

# --- queues ----------------------------------------------------------------------------------
printf '{"MessageRetentionPeriod":"%s"}' "$RETENTION" > "$TMP/retention.json"
queue "$RECORDINGS_QUEUE-dlq" "$TMP/retention.json"
DLQ_ARN="$(queue_arn "$(queue_url "$RECORDINGS_QUEUE-dlq")")"
REDRIVE="$(printf '{"deadLetterTargetArn":"%s","maxReceiveCount":"%s"}' "$DLQ_ARN" "$DLQ_MAX_RECEIVES")"
printf '{"MessageRetentionPeriod":"%s","VisibilityTimeout":"120","RedrivePolicy":%s}' \
    "$RETENTION" "$(json_string "$REDRIVE")" > "$TMP/recordings.json"
queue "$RECORDINGS_QUEUE" "$TMP/recordings.json"
queue "$RESULTS_QUEUE" "$TMP/retention.json"

# --- S3 -> SQS for every ObjectCreated event ---------------------------------------------------
notification() {  # bucket jmespath-query -> JSON ("null" when absent)
    aws_ s3api get-bucket-notification-configuration --bucket "$1" \
        --query "$2" --output json 2>/dev/null || echo null
}
present() { [[ -n "$1" && "$1" != "null" && "$1" != "[]" && "$1" != "{}" ]]; }

notify() {  # bucket queue-name notification-id policy-sid [key-prefix]
    local bucket="$1" queue="$2" id="$3" sid="$4" prefix="${5:-}"
    local url arn policy ours body others ours_json filter="" match
    url="$(queue_url "$queue")"
    arn="$(queue_arn "$url")"
    policy="$(printf '{"Version":"2012-10-17","Statement":[{"Sid":"%s","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"%s","Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::%s"}}}]}' \
        "$sid" "$arn" "$bucket")"
    printf '{"Policy":%s}' "$(json_string "$policy")" > "$TMP/policy.json"
    aws_ sqs set-queue-attributes --queue-url "$url" --attributes "file://$TMP/policy.json"

    if [[ -n "$prefix" ]]; then
        match="Filter.Key.FilterRules[?Name=='Prefix' || Name=='prefix'].Value | [0] == '$prefix'"
        filter="$(printf ',"Filter":{"Key":{"FilterRules":[{"Name":"prefix","Value":"%s"}]}}' "$prefix")"
    else
        match="!Filter"
    fi
    ours="$(notification "$bucket" "length(QueueConfigurations[?Id=='$id' && QueueArn=='$arn' && contains(Events, 's3:ObjectCreated:*') && ($match)] || \`[]\`)")"
    if [[ "$ours" == "1" ]]; then
        say "exists   s3 notification $bucket -> $queue"
        return 0
    fi
    # The bucket may carry other rules (Amazon Connect's often does): ours is merged in by its Id.
    body=""
    for key in TopicConfigurations LambdaFunctionConfigurations EventBridgeConfiguration; do
        value="$(notification "$bucket" "$key")"
        if present "$value"; then body+="\"$key\":$value,"; fi
    done
    others="$(notification "$bucket" "QueueConfigurations[?Id!='$id']")"
    ours_json="$(printf '{"Id":"%s","QueueArn":"%s","Events":["s3:ObjectCreated:*"]%s}' "$id" "$arn" "$filter")"
    if present "$others"; then
        body+="\"QueueConfigurations\":${others%]},$ours_json]"
    else
        body+="\"QueueConfigurations\":[$ours_json]"
    fi
    printf '{%s}' "$body" > "$TMP/notification.json"
    aws_ s3api put-bucket-notification-configuration --bucket "$bucket" \
        --notification-configuration "file://$TMP/notification.json"
    say "created  s3 notification $bucket -> $queue"
}

notify "$RECORDINGS_BUCKET" "$RECORDINGS_QUEUE" "$NOTIFICATION_ID" AllowS3RecordingEvents

# --- follow mode (run --ctr-source firehose-s3): new Firehose objects on their own queue ------
queue "$ARCHIVE_QUEUE-dlq" "$TMP/retention.json"
ARCHIVE_DLQ_ARN="$(queue_arn "$(queue_url "$ARCHIVE_QUEUE-dlq")")"
REDRIVE="$(printf '{"deadLetterTargetArn":"%s","maxReceiveCount":"%s"}' "$ARCHIVE_DLQ_ARN" "$DLQ_MAX_RECEIVES")"
printf '{"MessageRetentionPeriod":"%s","VisibilityTimeout":"%s","RedrivePolicy":%s}' \
    "$RETENTION" "$ARCHIVE_VISIBILITY" "$(json_string "$REDRIVE")" > "$TMP/archive.json"
queue "$ARCHIVE_QUEUE" "$TMP/archive.json"
notify "$ARCHIVE_BUCKET" "$ARCHIVE_QUEUE" "$ARCHIVE_NOTIFICATION_ID" AllowS3CtrArchiveEvents "$ARCHIVE_PREFIX"
