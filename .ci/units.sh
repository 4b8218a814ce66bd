#!/usr/bin/env bash
# Checks the systemd units with `systemd-analyze verify` (any warning fails)
# and prints their `systemd-analyze security` exposure score.
#
#   bash .ci/units.sh PATH/TO/roost
#
# verify wants ExecStart=/usr/bin/roost to exist, so it runs against a
# scratch root holding the host's units, the given binary as
# /usr/bin/roost and the project's units unchanged.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
binary=$1
root=$(mktemp -d "${TMPDIR:-/tmp}/roost-units.XXXXXX")
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/usr/bin" "$root/bin" "$root/lib/systemd" "$root/etc/systemd/system"
cp -r /lib/systemd/system "$root/lib/systemd/"
cp "$binary" "$root/usr/bin/roost"
cp /bin/kill "$root/bin/kill"
cp systemd/roost.service systemd/roost.socket "$root/etc/systemd/system/"

out=$(systemd-analyze verify --root="$root" \
    "$root/etc/systemd/system/roost.service" \
    "$root/etc/systemd/system/roost.socket" 2>&1) || { echo "$out" >&2; exit 1; }
if [[ -n "$out" ]]; then
    echo "systemd-analyze verify warned:" >&2
    echo "$out" >&2
    exit 1
fi
echo "systemd-analyze verify: roost.service, roost.socket OK"
systemd-analyze security --offline=true systemd/roost.service | tail -n 1
