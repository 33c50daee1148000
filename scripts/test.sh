#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite:
#   build/       optimised, warnings as errors: every suite (quick and heavy)
#   build-asan/  address + undefined-behaviour sanitizers: the quick suite
# Ends with one line "N passed, N failed[, N skipped]" over both, and a non-zero exit on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build -Dwerror=true
scripts/build.sh build-asan -Dwerror=true -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
meson test -C build --print-errorlogs --num-processes 2 || status=1
meson test -C build-asan --suite quick --print-errorlogs --num-processes 2 || status=1

# The heavy suite's measurements, for the record (time and peak memory of a yolov8n step).
grep -h "^yolov8n 640x640" build/meson-logs/testlog.txt || true

python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json <<'PY'
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            result = json.loads(line)["result"]
            key = {"OK": "passed", "EXPECTEDFAIL": "passed", "SKIP": "skipped"}.get(result, "failed")
            counts[key] += 1
line = f"{counts['passed']} passed, {counts['failed']} failed"
print(line + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
PY
exit $status
