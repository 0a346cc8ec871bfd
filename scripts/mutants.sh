#!/usr/bin/env bash
# Mutation testing of the sans-IO cores (docs/testing.md, "Mutation testing").
#
#   scripts/mutants.sh                 every core file named in .cargo/mutants.toml
#   scripts/mutants.sh FILE...         these core files
#   scripts/mutants.sh --changed [REV] the core files changed since REV (default: the merge
#                                      base with origin/main; every core when that cannot
#                                      be told): the CI mode used by .ci/run
#   scripts/mutants.sh --list          the core files and the tests that guard each
#
# Each file is mutated with only its fast guard tests (the `# guard:` comment in
# .cargo/mutants.toml), and must have at least MUTANTS_MIN % of its viable mutants (not
# unviable) caught; a mutant whose tests time out counts as caught (the tests did not
# pass). Exit status: 0 all files pass, 1 a file is below the threshold, 2 usage or
# cargo-mutants failure (e.g. the unmutated tests fail), 3 time budget exhausted before
# every core was checked (only with MUTANTS_STRICT=1; otherwise a warning).
#
# Environment:
#   MUTANTS_MIN=90        threshold, % caught of viable mutants
#   MUTANTS_BUDGET=2400   total seconds for the whole run
#   MUTANTS_TIMEOUT=60    seconds for one mutant's test run (cargo-mutants --timeout)
#   MUTANTS_OUT=DIR       where each file's mutants.out goes (default:
#                         ${CARGO_TARGET_DIR:-target}/mutants)
#   MUTANTS_ARGS="..."    extra cargo-mutants arguments, e.g. "--jobs 2" or
#                         "--jobserver-tasks 1"
#   MUTANTS_BASE=origin/main  the branch --changed compares with
#   MUTANTS_TARGET_DIR=DIR    cargo's target directory for the mutated builds (default:
#                         ${CARGO_TARGET_DIR:-target}/mutants/build). Never the one of
#                         normal builds: an artifact of a mutated copy is newer than the
#                         unchanged sources, so cargo would take it as up to date there.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=.cargo/mutants.toml
MIN=${MUTANTS_MIN:-90}
BUDGET=${MUTANTS_BUDGET:-2400}
TIMEOUT=${MUTANTS_TIMEOUT:-60}
OUT=${MUTANTS_OUT:-${CARGO_TARGET_DIR:-target}/mutants}
BASE_BRANCH=${MUTANTS_BASE:-origin/main}
read -r -a EXTRA <<<"${MUTANTS_ARGS:-}"

die() {
    echo "mutants: $*" >&2
    exit 2
}

# "file<TAB>guard args" for every core in the config.
cores() {
    sed -nE 's/^[[:space:]]*"([^"]+)",?[[:space:]]*#[[:space:]]*guard:[[:space:]]*(.*[^[:space:]])[[:space:]]*$/\1\t\2/p' "$CONFIG"
}

guard_of() {
    cores | awk -F'\t' -v f="$1" '$1 == f { print $2 }'
}

# The config with `examine_globs` narrowed to one file: cargo-mutants adds `--file`
# globs to the configured ones, so a per-file run needs its own copy of the config.
config_for() {
    awk -v f="\"$1\"" '
        /^examine_globs[[:space:]]*=/ { inside = 1; print; next }
        inside && /^[[:space:]]*\]/ { inside = 0 }
        inside && index($0, f) == 0 { next }
        { print }
    ' "$CONFIG"
}

# The test sources a guard names (tests/NAME.rs of the core's package), so that a change
# to a guard alone also reruns its core.
guard_files() {
    local file=$1 pkg
    pkg=${file%%/src/*}
    for arg in $(guard_of "$file"); do
        case $arg in
        --test=*) echo "$pkg/tests/${arg#--test=}.rs" ;;
        esac
    done
}

changed_cores() {
    local rev=${1:-} changed
    if [[ -z $rev ]]; then
        if ! rev=$(git merge-base HEAD "$BASE_BRANCH" 2>/dev/null); then
            echo "mutants: no merge base with $BASE_BRANCH: checking every core" >&2
            cores | cut -f1
            return
        fi
    fi
    if ! changed=$(git diff --name-only "$rev" -- 2>/dev/null); then
        echo "mutants: cannot diff against $rev: checking every core" >&2
        cores | cut -f1
        return
    fi
    if grep -qxF -e "$CONFIG" -e scripts/mutants.sh <<<"$changed"; then
        cores | cut -f1
        return
    fi
    local file
    for file in $(cores | cut -f1); do
        if grep -qxF -e "$file" $(guard_files "$file" | sed 's/^/-e /') <<<"$changed"; then
            echo "$file"
        fi
    done
}

count() {
    if [[ -f $1 ]]; then grep -c . "$1" || true; else echo 0; fi
}

ensure_cargo_mutants() {
    if ! cargo mutants --version >/dev/null 2>&1; then
        echo "mutants: installing cargo-mutants" >&2
        cargo install cargo-mutants --locked
    fi
}

files=()
case ${1:-} in
--list)
    cores | awk -F'\t' '{ printf "%-32s %s\n", $1, $2 }'
    exit 0
    ;;
--changed)
    mapfile -t files < <(changed_cores "${2:-}")
    if ((${#files[@]} == 0)); then
        echo "mutants: no core file changed: nothing to do"
        exit 0
    fi
    ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
"")
    mapfile -t files < <(cores | cut -f1)
    ;;
*)
    files=("$@")
    ;;
esac
((${#files[@]} > 0)) || die "no core files in $CONFIG"
for f in "${files[@]}"; do
    [[ -n $(guard_of "$f") ]] || die "$f is not a core file of $CONFIG (see --list)"
done

ensure_cargo_mutants
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# Absolute: cargo-mutants runs cargo in a copy of the tree.
export CARGO_TARGET_DIR=${MUTANTS_TARGET_DIR:-$OUT/build}
mkdir -p "$CARGO_TARGET_DIR"
CARGO_TARGET_DIR=$(cd "$CARGO_TARGET_DIR" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

start=$SECONDS
status=0
skipped=0
rows=()
for f in "${files[@]}"; do
    left=$((BUDGET - (SECONDS - start)))
    if ((left <= 0)); then
        echo "mutants: time budget of ${BUDGET}s spent before $f" >&2
        skipped=1
        rows+=("$f|-|-|-|-|not checked: budget spent")
        continue
    fi
    name=$(tr '/.' '__' <<<"$f")
    config_for "$f" >"$tmp/$name.toml"
    guard=()
    for arg in $(guard_of "$f"); do guard+=("--cargo-arg=$arg"); done
    echo "== $f (guard: $(guard_of "$f"); ${left}s of budget left)"
    rc=0
    timeout --signal=INT --kill-after=30 "$left" \
        cargo mutants --config "$tmp/$name.toml" --file "$f" --timeout "$TIMEOUT" \
        --output "$OUT/$name" --colors never "${guard[@]}" "${EXTRA[@]}" || rc=$?
    # cargo-mutants: 0 all caught, 2 some missed, 3 some timed out; else it failed.
    if ((rc == 124 || rc == 137)); then
        echo "mutants: time budget of ${BUDGET}s spent during $f" >&2
        skipped=1
        rows+=("$f|-|-|-|-|not checked: budget spent")
        continue
    elif ((rc != 0 && rc != 2 && rc != 3)); then
        echo "mutants: cargo mutants failed on $f (exit $rc); see $OUT/$name/mutants.out" >&2
        ((status == 0 || status == 1)) && status=2
        rows+=("$f|-|-|-|-|cargo-mutants failed")
        continue
    fi
    dir=$OUT/$name/mutants.out
    caught=$(count "$dir/caught.txt")
    missed=$(count "$dir/missed.txt")
    timedout=$(count "$dir/timeout.txt")
    unviable=$(count "$dir/unviable.txt")
    viable=$((caught + missed + timedout))
    if ((viable == 0)); then
        pct=100
    else
        pct=$(((caught + timedout) * 100 / viable))
    fi
    verdict=ok
    if ((pct < MIN)); then
        verdict="BELOW ${MIN}%"
        ((status == 0)) && status=1
        echo "mutants: $f: missed mutants:" >&2
        sed 's/^/  /' "$dir/missed.txt" >&2
    fi
    rows+=("$f|$caught|$missed|$timedout|$unviable|$pct% $verdict")
done

echo
printf '%-32s %7s %7s %8s %9s  %s\n' file caught missed timeout unviable "caught of viable"
for r in "${rows[@]}"; do
    IFS='|' read -r f c m t u v <<<"$r"
    printf '%-32s %7s %7s %8s %9s  %s\n' "$f" "$c" "$m" "$t" "$u" "$v"
done
# Cores the budget did not reach were not judged: said above, and fatal only when asked
# for (MUTANTS_STRICT=1), so a bounded CI run fails on a core below the threshold, never
# on the machine's speed.
if ((skipped && status == 0)) && [[ ${MUTANTS_STRICT:-0} == 1 ]]; then
    status=3
fi
exit $status
