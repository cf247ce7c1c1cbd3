#!/bin/bash
# Segment changes `segstream run` prints in the 5 minutes after the CDNOW replay has caught up
# (issue #17: goal 0). Starts the local broker and a worker like `make run`, on web port 6071.
# Usage: bash bench/run_quiet.sh [minutes]   (from the repository root, after `make setup kafka-jars`)
set -euo pipefail
minutes=${1:-5}
out=$(mktemp -d)
export COLUMNS=250 PYTHONUNBUFFERED=1
.venv/bin/segstream run --web-port 6071 --run-dir "$out/run" > "$out/changes.txt" 2> "$out/stderr.txt" &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid' EXIT
for _ in $(seq 1 900); do grep -q "caught up" "$out/stderr.txt" && break; sleep 1; done
grep "replayed\|caught up" "$out/stderr.txt"
before=$(grep -c "cdnow-" "$out/changes.txt" || true)
echo "changes while replaying and catching up: $before"
sleep $((minutes * 60))
after=$(grep -c "cdnow-" "$out/changes.txt" || true)
echo "changes in the $minutes minutes after: $((after - before))"
