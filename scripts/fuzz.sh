#!/usr/bin/env bash
# Fuzzing (docs/design.md §13): runs every cargo-fuzz target for a bounded time, starting from the
# committed seed corpus in fuzz/corpus/<target>/ (never modified: what the fuzzer finds
# goes to a scratch corpus under the target directory).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   default: 60 s each, every target
#
# Installs cargo-fuzz when missing. libFuzzer's instrumentation needs unstable rustc flags:
# with no nightly toolchain on the machine, RUSTC_BOOTSTRAP=1 lets the stable one accept
# them (cargo-fuzz with `--sanitizer none`, so no sanitizer runtime is needed). A crash
# exits 1 and leaves the input in fuzz/artifacts/<target>/ with the command replaying it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(mbap_frame client_access_codec connector_config scenario_file)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
scratch=${CARGO_TARGET_DIR:-target}/fuzz-corpus
status=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  echo "fuzz: $t for ${seconds}s (seeds: $(ls fuzz/corpus/$t | wc -l))"
  if ! cargo fuzz run --sanitizer none --fuzz-dir fuzz "$t" "$scratch/$t" "fuzz/corpus/$t" \
      -- -max_total_time="$seconds" -print_final_stats=1 2> "$scratch/$t.log"; then
    echo "fuzz: $t FAILED; see $scratch/$t.log and fuzz/artifacts/$t/" >&2
    tail -30 "$scratch/$t.log" >&2
    status=1
    continue
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz: $t ok: $runs executions in ${seconds}s ($(( ${runs:-0} / seconds )) /s), corpus $(ls "$scratch/$t" | wc -l) inputs"
done
exit $status
