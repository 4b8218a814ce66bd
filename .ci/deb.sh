#!/usr/bin/env bash
# Builds the .deb packages with cargo-deb and checks what is in them:
# amd64 (built here) and, from .ci/cross.sh's release binaries, arm64 and
# armhf. Installs cargo-deb from crates.io when it is missing.
#
#   bash .ci/deb.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "--> cargo install cargo-deb"
    cargo install --quiet --locked cargo-deb
fi
cargo deb --version

# cargo-deb gzips the man pages it is given (Cargo.toml's assets).
MAN_PAGES=(./usr/share/man/man8/roost.8.gz ./usr/share/man/man5/roost.conf.5.gz
    ./usr/share/man/man1/roost-passwd.1.gz)

check() {
    local deb=$1 arch=$2
    echo "--> $deb"
    dpkg-deb -I "$deb"
    dpkg-deb -c "$deb" | tee "$deb.contents"
    [[ "$(dpkg-deb -f "$deb" Architecture)" == "$arch" ]] || {
        echo "$deb: architecture is not $arch" >&2
        exit 1
    }
    local path warnings
    for path in ./usr/bin/roost ./usr/lib/systemd/system/roost.service \
        ./usr/lib/systemd/system/roost.socket ./etc/roost/roost.conf \
        ./usr/share/doc/roost/README.md ./usr/share/doc/roost/copyright \
        ./usr/share/doc/roost/docs/README.md \
        ./usr/share/doc/roost/docs/configuration.md \
        "${MAN_PAGES[@]}"; do
        grep -q " $path\$" "$deb.contents" || {
            echo "$deb: $path missing" >&2
            exit 1
        }
    done
    # The man pages as installed: gzipped, and rendering without a warning.
    for path in "${MAN_PAGES[@]}"; do
        dpkg-deb --fsys-tarfile "$deb" | tar -xO "$path" | gzip -dc >"$deb.man"
        warnings=$(groff -wall -mandoc -Tutf8 -z "$deb.man" 2>&1)
        [[ -z "$warnings" ]] || {
            echo "$deb: $path: $warnings" >&2
            exit 1
        }
    done
    rm "$deb.man"
    dpkg-deb -I "$deb" conffiles | grep -x /etc/roost/roost.conf >/dev/null || {
        echo "$deb: /etc/roost/roost.conf is not a conffile" >&2
        exit 1
    }
    # The system user and the unit enabling come from the maintainer scripts.
    dpkg-deb -I "$deb" postinst | grep 'adduser --system' >/dev/null || {
        echo "$deb: postinst does not create the roost user" >&2
        exit 1
    }
    dpkg-deb -I "$deb" postinst | grep 'deb-systemd-helper enable roost.service' >/dev/null || {
        echo "$deb: postinst does not enable roost.service" >&2
        exit 1
    }
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/roost >"$deb.bin"
    file "$deb.bin"
    rm "$deb.bin" "$deb.contents"
}

cargo deb --quiet
check target/debian/roost_*_amd64.deb amd64
for pair in aarch64-unknown-linux-gnu:arm64 armv7-unknown-linux-gnueabihf:armhf; do
    target=${pair%%:*} arch=${pair##*:}
    # Already built (release profile, stripped) by .ci/cross.sh.
    cargo deb --quiet --no-build --no-strip --target "$target"
    check "target/$target/debian/roost_"*"_$arch.deb" "$arch"
done
