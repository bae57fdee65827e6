#!/usr/bin/env bash
# Runs every test albert-edge has, on a fresh Debian/Ubuntu machine with rustup: installs what is missing (rustup
# targets, and Debian packages when run as root or with sudo), otherwise says exactly what to install.
#   scripts/test-all.sh            everything
#   QUICK=1 scripts/test-all.sh    host tests only (no cross targets, no emulators)
#   LEAN=1 scripts/test-all.sh     deletes each step's build outputs once no later step needs them (.ci/run sets it):
#                                  a full run then holds at most about 1.5 GB of build outputs at any time
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
lean() {
    [ -n "${LEAN:-}" ] || return 0
    rm -rf "$@"
    echo "(LEAN=1: removed $*; $(df -h --output=avail . | tail -1 | tr -d ' ') free)"
}

# One full run gains nothing from incremental compilation caches, which would add about 1 GB.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
echo "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free in $(pwd)"

# ---------------------------------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------------------------------
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }

targets=(thumbv7em-none-eabihf thumbv8m.main-none-eabihf aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
missing_targets=()
for t in "${targets[@]}"; do
    rustup target list --installed 2>/dev/null | grep -qx "$t" || missing_targets+=("$t")
done
if [ ${#missing_targets[@]} -gt 0 ]; then
    step "rustup target add ${missing_targets[*]}"
    rustup target add "${missing_targets[@]}"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

packages=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user qemu-system-arm
          gcc-arm-none-eabi libnewlib-arm-none-eabi)
if [ -z "${QUICK:-}" ]; then
    missing_packages=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_packages+=("$p")
    done
    if [ ${#missing_packages[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
            echo "error: missing Debian packages: ${missing_packages[*]}" >&2
            echo "       install them with: sudo apt-get install -y ${missing_packages[*]}" >&2
            exit 1
        fi
        step "apt-get install ${missing_packages[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing_packages[@]}" >/dev/null
    fi
fi

# ---------------------------------------------------------------------------------------------------------------
# Host
# ---------------------------------------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc (core, -D warnings: no broken intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc -q -p albert-edge --no-deps --features std

step "core builds no_std without an allocator (thumbv7em-none-eabihf, thumbv8m.main-none-eabihf)"
cargo build -p albert-edge --no-default-features --target thumbv7em-none-eabihf
cargo build -p albert-edge --no-default-features --target thumbv8m.main-none-eabihf

step "cargo test --workspace"
cargo test --workspace

# Before target/debug goes: it reuses the CLI and libalbert_edge.a that the tests built.
step "C API: header current, documented errors, SST-2 dev logits from C = the CLI's bit for bit"
scripts/check-capi.sh
lean target/debug target/capi

step "same logits bit for bit in unoptimised and release builds"
scripts/check-debug-release.sh
lean target/unoptimized

step "fuzz: every cargo-fuzz target for 30 s (blob parser, mutated blobs, tokenizer, classify, checkpoint readers)"
scripts/fuzz.sh 30
lean fuzz/target

[ -n "${QUICK:-}" ] && { echo; echo "QUICK=1: cross-target steps skipped"; exit 0; }

# ---------------------------------------------------------------------------------------------------------------
# Cross targets (under qemu)
# ---------------------------------------------------------------------------------------------------------------

# Raspberry Pi (qemu-user; .cargo/config.toml sets the linkers and runners). Builds with their own RUSTFLAGS get
# their own target directory so that the steps do not rebuild each other.
step "core tests on aarch64 (Pi 3/4, 64-bit OS: NEON smull kernels) under qemu -cpu cortex-a72"
cargo test -p albert-edge --target aarch64-unknown-linux-gnu
lean target/aarch64-unknown-linux-gnu/debug

step "core tests on aarch64 + dotprod (Pi 5: NEON sdot kernels) under qemu -cpu cortex-a76"
RUSTFLAGS="-C target-feature=+dotprod" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a76" \
    cargo test -p albert-edge --target aarch64-unknown-linux-gnu --target-dir target/aarch64-sdot
lean target/aarch64-sdot/aarch64-unknown-linux-gnu/debug

step "core tests on armv7 (32-bit Pi OS: reference kernels, then NEON with --features arm-neon) under qemu -cpu cortex-a7"
cargo test -p albert-edge --target armv7-unknown-linux-gnueabihf
lean target/armv7-unknown-linux-gnueabihf/debug
# (rustc warns that the `neon` target feature is unstable on arm; it is needed, see src/kernels/neon.rs)
RUSTFLAGS="-C target-feature=+neon" \
    cargo test -p albert-edge --target armv7-unknown-linux-gnueabihf --features arm-neon --target-dir target/armv7-neon
lean target/armv7-neon/armv7-unknown-linux-gnueabihf/debug

step "Pi example: identical logits on x86-64, aarch64 (smull, sdot) and armv7 (reference, NEON)"
scripts/check-pi-logits.sh

step "Cortex-M firmware under qemu-system-arm: M4F (DSP, reference) and M55 (Helium, DSP, reference) = host bit for bit"
scripts/check-firmware.sh

step "C firmware (libalbert_edge.a, arm-none-eabi-gcc + newlib) on mps2-an386 under qemu-system-arm = host bit for bit"
scripts/check-capi-firmware.sh
lean target/capi-m4

echo
echo "all tests passed"
