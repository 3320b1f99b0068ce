#!/bin/sh
# LocalStack init hook: create the qm-ingest resources (same as `qm-ingest bootstrap`).
set -eu
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"
if command -v qm-ingest >/dev/null 2>&1; then
    exec qm-ingest bootstrap
fi
cd /opt/qm-ingest && exec python3 -m processor bootstrap
