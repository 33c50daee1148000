#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz (libFuzzer + ASan/UBSan) for a while on its seed corpus and
# fails on any crash, leak, undefined behaviour, failed check of the target, hang or blown memory
# limit: what libFuzzer reports with a non-zero exit. Skips (exit 77) where clang or its fuzzer
# runtime is missing.
#
# The suite's own build uses gcc, so this configures a clang build directory of its own once
# (default <source>/build-fuzz; reused, and rebuilt, when present) and builds the targets there.
# New inputs a run finds go to a temporary directory, never into the committed corpus; a crashing
# input is kept as <build>/fuzz-artifacts/<target>-crash-<sha1> (tests/fuzz/README.md says what to
# do with it).
# Usage: check-fuzz.sh SOURCE_ROOT   (YP_FUZZ_SECONDS: seconds per target, default 30;
#                                     YP_FUZZ_BUILD: the build directory; YP_FUZZ_TARGETS: a subset)
set -euo pipefail
root=$(cd "$1" && pwd)
seconds=${YP_FUZZ_SECONDS:-30}
build=${YP_FUZZ_BUILD:-$root/build-fuzz}
targets=(${YP_FUZZ_TARGETS:-model_yaml experiment labels safetensors manifest})
tmp=$(mktemp -d)
# The targets' scratch files (a file per input; a crashed process leaves its own behind): in memory
# where possible.
scratch=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d -p "$tmp")
trap 'rm -rf "$tmp" "$scratch"' EXIT

command -v clang >/dev/null || { echo "SKIP: clang is not installed (scripts/install-deps.sh installs it)"; exit 77; }
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return (void)d, (int)(n - n); }\n' > "$tmp/probe.c"
# The probe must also run: a clang that "succeeds" without writing anything is no fuzzer.
{ clang -fsanitize=fuzzer,address,undefined "$tmp/probe.c" -o "$tmp/probe" && "$tmp/probe" -runs=1; } > "$tmp/probe.log" 2>&1 ||
  { echo "SKIP: clang cannot link libFuzzer with ASan/UBSan (install libclang-rt-14-dev): $(grep -m1 -i "error\|cannot\|no such" "$tmp/probe.log" || head -1 "$tmp/probe.log")"; exit 77; }

if [[ ! -f $build/build.ninja ]]; then
  CC=clang meson setup "$build" "$root" -Dfuzz=true -Dtests=false -Dcuda=disabled -Dwerror=true \
    -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false > "$tmp/setup.log" 2>&1 ||
    { cat "$tmp/setup.log" >&2; echo "FAIL: cannot configure the fuzz build in $build" >&2; exit 1; }
fi
ninja -C "$build" > "$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log" >&2; echo "FAIL: the fuzz build in $build does not build" >&2; exit 1; }

# Every sanitizer finding ends the run (and leaks are findings); libFuzzer turns it into exit 1.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
mkdir -p "$build/fuzz-artifacts"
status=0
for t in "${targets[@]}"; do
  exe=$build/tests/fuzz/fuzz_$t
  corpus=$root/tests/fuzz/corpus/$t
  [[ -x $exe && -d $corpus ]] || { echo "FAIL: no target $exe or corpus $corpus" >&2; exit 1; }
  dict=()
  [[ -f $root/tests/fuzz/$t.dict ]] && dict=(-dict="$root/tests/fuzz/$t.dict")
  mkdir -p "$tmp/new-$t"
  # -timeout: an input that runs this long is a hang (a finding), not a slow machine.
  set +e
  TMPDIR=$scratch "$exe" "${dict[@]}" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-artifacts/$t-" "$tmp/new-$t" "$corpus" > "$tmp/$t.log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$tmp/$t.log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$tmp/$t.log")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$tmp/$t.log" | tail -1)
  if [[ $rc != 0 ]]; then
    grep -v '^#\|^INFO\|^stat::' "$tmp/$t.log" | tail -40 >&2
    echo "FAIL: fuzz_$t exit $rc after ${runs:-?} inputs; input kept as: $(grep -o "Test unit written to .*" "$tmp/$t.log" | tail -1)" >&2
    status=1
  else
    echo "fuzz_$t: ${runs:-?} inputs in ${seconds}s (${rate:-?}/s), $cov, peak RSS ${rss:-?} MB, no crash"
  fi
done
exit $status
