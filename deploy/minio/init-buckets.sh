#!/bin/sh
# Create citywatch's buckets, their lifecycle (expiry) rules, least-privilege policies and users
# on a MinIO server, with the `mc` client. Idempotent: run it at every start (the compose
# `minio-init` service does) or by hand after changing retention.
#
# Environment:
#   MINIO_URL                  http://minio:9000
#   MINIO_ROOT_USER / MINIO_ROOT_PASSWORD          admin credentials (only used here)
#   FRAMES_BUCKET=frames  ALERTS_BUCKET=alerts
#   FRAME_RETENTION_DAYS=30  EVIDENCE_RETENTION_DAYS=365
#   CITYWATCH_WORKER_ACCESS_KEY / CITYWATCH_WORKER_SECRET_KEY   user for the edge workers
#   CITYWATCH_INGEST_ACCESS_KEY / CITYWATCH_INGEST_SECRET_KEY   user for `citywatch ingest`/gateways
#   CAMERA_USERS="cam-01:secret1 cam-02:secret2"   optional per-camera users (own prefix only)
#   POLICY_DIR=/policies       where the policy-*.json files of deploy/minio are mounted
#   NOTIFY_TARGET=arn:minio:sqs::CITYWATCH:mqtt   optional: announce every frame put on this
#                              notification target (the new-frame notices workers listen to)
set -eu

: "${MINIO_URL:?MINIO_URL is not set}"
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"
: "${CITYWATCH_WORKER_ACCESS_KEY:?CITYWATCH_WORKER_ACCESS_KEY is not set}"
: "${CITYWATCH_WORKER_SECRET_KEY:?CITYWATCH_WORKER_SECRET_KEY is not set}"
FRAMES_BUCKET="${FRAMES_BUCKET:-frames}"
ALERTS_BUCKET="${ALERTS_BUCKET:-alerts}"
FRAME_RETENTION_DAYS="${FRAME_RETENTION_DAYS:-30}"
EVIDENCE_RETENTION_DAYS="${EVIDENCE_RETENTION_DAYS:-365}"
POLICY_DIR="${POLICY_DIR:-$(dirname "$0")}"
WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT

case "$FRAME_RETENTION_DAYS$EVIDENCE_RETENTION_DAYS" in
  *[!0-9]*) echo "retention days must be whole numbers" >&2; exit 2 ;;
esac

# Wait for the server (compose starts us alongside it).
tries=0
until mc alias set site "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then echo "MinIO at $MINIO_URL did not answer in 60 s" >&2; exit 1; fi
  sleep 1
done

mc mb --ignore-existing "site/$FRAMES_BUCKET"
mc mb --ignore-existing "site/$ALERTS_BUCKET"

# Expiry by object age: replaces the bucket's whole lifecycle configuration, so re-runs are safe.
lifecycle() {  # lifecycle <rule id> <days>
  printf '{"Rules":[{"ID":"%s","Status":"Enabled","Filter":{"Prefix":""},"Expiration":{"Days":%s}}]}\n' "$1" "$2"
}
lifecycle frames-retention "$FRAME_RETENTION_DAYS" > "$WORK_DIR/frames-ilm.json"
lifecycle evidence-retention "$EVIDENCE_RETENTION_DAYS" > "$WORK_DIR/alerts-ilm.json"
mc ilm rule import "site/$FRAMES_BUCKET" < "$WORK_DIR/frames-ilm.json"
mc ilm rule import "site/$ALERTS_BUCKET" < "$WORK_DIR/alerts-ilm.json"

# Policies name the default buckets; rewrite them for other bucket names.
render() {  # render <policy file> <output>
  sed -e "s#arn:aws:s3:::frames#arn:aws:s3:::$FRAMES_BUCKET#g" \
      -e "s#arn:aws:s3:::alerts#arn:aws:s3:::$ALERTS_BUCKET#g" "$1" > "$2"
}
for name in worker ingest camera; do
  render "$POLICY_DIR/policy-$name.json" "$WORK_DIR/policy-$name.json"
  mc admin policy create site "citywatch-$name" "$WORK_DIR/policy-$name.json"
done

add_user() {  # add_user <access key> <secret key> <policy>
  mc admin user add site "$1" "$2"
  # Attaching an already attached policy fails: check first.
  if ! mc admin user info site "$1" | grep -q "citywatch-$3"; then
    mc admin policy attach site "citywatch-$3" --user "$1"
  fi
}
add_user "$CITYWATCH_WORKER_ACCESS_KEY" "$CITYWATCH_WORKER_SECRET_KEY" worker
if [ -n "${CITYWATCH_INGEST_ACCESS_KEY:-}" ]; then
  add_user "$CITYWATCH_INGEST_ACCESS_KEY" "${CITYWATCH_INGEST_SECRET_KEY:?CITYWATCH_INGEST_SECRET_KEY is not set}" ingest
fi
for pair in ${CAMERA_USERS:-}; do
  add_user "${pair%%:*}" "${pair#*:}" camera
done

# New-frame notices: each .jpg put into the frames bucket is published on the MQTT target.
if [ -n "${NOTIFY_TARGET:-}" ]; then
  if mc event ls "site/$FRAMES_BUCKET" "$NOTIFY_TARGET" 2>/dev/null | grep -q "$NOTIFY_TARGET"; then
    echo "frames bucket already announces new frames on $NOTIFY_TARGET"
  else
    mc event add "site/$FRAMES_BUCKET" "$NOTIFY_TARGET" --event put --suffix .jpg
  fi
fi

echo "citywatch buckets ready: $FRAMES_BUCKET (expire after $FRAME_RETENTION_DAYS d), $ALERTS_BUCKET (expire after $EVIDENCE_RETENTION_DAYS d)"
