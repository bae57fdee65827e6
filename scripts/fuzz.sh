#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints each one's exec count. Exits non-zero if a
# target crashes (its reproducer is in fuzz/artifacts/<target>/) or cannot be built.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]          default 60, every target (`cargo fuzz list`)
#   scripts/fuzz.sh 900 tokenizer classify        only the named targets
# Needs rustup; installs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`) if missing.
# New corpus entries go to fuzz/corpus/<target>/ (not committed); fuzz/seeds/<target>/ holds the committed seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")

command -v rustup >/dev/null || { echo "error: rustup not found; cargo-fuzz needs the nightly toolchain (https://rustup.rs)" >&2; exit 1; }
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "==> rustup toolchain install nightly --profile minimal (cargo-fuzz needs nightly)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "==> cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

# Every target in fuzz/Cargo.toml unless some are named.
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

echo "==> cargo +nightly fuzz build (release, debug assertions on)"
cargo +nightly fuzz build --debug-assertions

status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    log=$(mktemp)
    echo "==> $t: ${seconds}s"
    start=$SECONDS
    # -rss_limit_mb: the targets allocate a few MB at most; -max_len: long enough for 1000-word texts.
    if cargo +nightly fuzz run --debug-assertions "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -20 >&2 || true
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    summary+=("$(printf '%-16s %-5s %12s execs in %4ds' "$t" "$result" "${execs:-?}" $((SECONDS - start)))")
    echo "    ${summary[-1]}"
    rm -f "$log"
done

echo
echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
exit $status
