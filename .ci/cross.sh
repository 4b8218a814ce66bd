#!/usr/bin/env bash
# The Docker-free cross build for the Raspberry Pi (shared/CROSS.md has the
# background): Debian's rustc 1.85 (rustc-web) with its ARM standard
# libraries, Debian's cross linkers, qemu-user to run the results.
#
#   bash .ci/cross.sh            # install, build, check
#
# Builds release binaries for aarch64-unknown-linux-gnu (Pi 3/4/5, 64-bit
# OS) and armv7-unknown-linux-gnueabihf (Pi 2/3, 32-bit OS), runs each
# under qemu end to end (.ci/arm-e2e.sh), and runs the unit tests under
# qemu for armv7 (32-bit usize, alignment, atomics). Run as root on
# Debian 12; idempotent.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUSTC_DEB_VERSION="${RUSTC_DEB_VERSION:-1.85.0+dfsg3-1~deb12u3}"
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf"
# ring (TLS) compiles C and assembly: the cross C compilers for it.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export DEBIAN_FRONTEND=noninteractive

apt_get() { apt-get -o DPkg::Lock::Timeout=120 "$@"; }

echo "--> cross toolchain packages"
apt_get install -y --no-install-recommends --allow-downgrades \
    "rustc-web=$RUSTC_DEB_VERSION" "libstd-rust-web-dev=$RUSTC_DEB_VERSION" \
    "libstd-rust-web-1.85=$RUSTC_DEB_VERSION" \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user mosquitto-clients openssl >/dev/null

# The ARM standard libraries: only their rlibs, unpacked from the Debian
# packages (installing them through multiarch apt trips over unrelated
# version skew).
if [[ ! -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib ||
      ! -d /usr/lib/rustlib/armv7-unknown-linux-gnueabihf/lib ]]; then
    echo "--> ARM standard libraries for rustc $RUSTC_DEB_VERSION"
    dpkg --add-architecture arm64
    dpkg --add-architecture armhf
    # The security archive may lack an armhf index; the main one suffices.
    apt_get update >/dev/null || true
    dl=$(mktemp -d)
    (cd "$dl" && apt_get download \
        "libstd-rust-web-dev:arm64=$RUSTC_DEB_VERSION" \
        "libstd-rust-web-dev:armhf=$RUSTC_DEB_VERSION" >/dev/null)
    # The foreign architectures were only needed for the download: left
    # in place, every later `apt-get update` would fetch (and could fail
    # on) arm64/armhf indexes.
    dpkg --remove-architecture arm64
    dpkg --remove-architecture armhf
    apt_get update >/dev/null || true
    for f in "$dl"/*.deb; do dpkg -x "$f" "$dl/root"; done
    cp -r "$dl/root/usr/lib/rustlib/aarch64-unknown-linux-gnu" \
        "$dl/root/usr/lib/rustlib/armv7-unknown-linux-gnueabihf" /usr/lib/rustlib/
    rm -rf "$dl"
fi
"$RUSTC" --version

for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    echo "--> cargo build --release --target $target"
    cargo build --quiet --release --locked --target "$target"
    file "target/$target/release/roost" 2>/dev/null || true
done

echo "--> end to end under qemu"
bash .ci/arm-e2e.sh qemu-aarch64 /usr/aarch64-linux-gnu \
    target/aarch64-unknown-linux-gnu/release/roost
bash .ci/arm-e2e.sh qemu-arm /usr/arm-linux-gnueabihf \
    target/armv7-unknown-linux-gnueabihf/release/roost

# The unit tests (codec, broker core, config, systemd helpers) under
# 32-bit emulation. The integration tests start the broker binary
# through CARGO_BIN_EXE and mosquitto/python clients; they exercise the
# same code over sockets and stay native (the e2e check above covers the
# emulated binary over sockets).
echo "--> cargo test --lib --target armv7-unknown-linux-gnueabihf (under qemu-arm)"
cargo test --locked --lib --target armv7-unknown-linux-gnueabihf
