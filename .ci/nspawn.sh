#!/usr/bin/env bash
# The .deb under a real systemd: for each architecture, a fresh Debian 12
# root file system (mmdebstrap), booted with systemd as PID 1
# (systemd-nspawn --boot; arm64 and armhf under qemu-user-static through
# binfmt_misc), and roost installed from its .deb, checked through its life
# cycle. Run as root on Debian 12, from anywhere in the clone:
#
#   bash .ci/nspawn.sh                 # amd64 and arm64
#   bash .ci/nspawn.sh arm64           # one architecture (amd64, arm64, armhf)
#
# The .debs are (re)packaged with cargo-deb first: amd64 builds roost,
# arm64/armhf need .ci/cross.sh's binaries. Needs port 1883 (the package's
# default listener, on localhost) and 18830-18839 free on the host (another
# range: ROOST_NSPAWN_PORT_BASE=18930): the containers share the host's
# network, and every address used is loopback.
# Everything it makes (root file systems under target/nspawn/, containers,
# a broker on the host, clients) is removed on exit, failed or not.
#
# The checks, each printed as `--> ARCH: what ... ok`:
#   1 install    apt-get install ./roost_*.deb pulls its dependencies, makes
#                the user, enables roost.service (not roost.socket), starts
#                roost (active = READY=1), localhost only; QoS 0/1/2 through
#                it with a password file made by `roost passwd`; journal
#                lines without a second timestamp, warnings as warnings
#   2 reload     a changed password file and ACL apply, the process and
#                its clients stay
#   3 watchdog   SIGSTOP: systemd kills and restarts roost within
#                WatchdogSec, NRestarts goes up, a persistent session's
#                queued messages survive (persistence_mode journal)
#   4 socket     roost.socket enabled as docs/systemd.md says: clients
#                connecting during a restart are served; a socket that
#                overlaps the config's listener is refused, without a loop
#   5 sandbox    state in /var/lib/roost; persistence, pid or log file
#                elsewhere refused by --check-config and in the journal
#   6 upgrade    to a repackaged N+1 with a changed conffile: the admin's
#                roost.conf kept, retained messages and a session survive,
#                clients reconnect
#   7 remove     remove stops roost and keeps config and state; purge
#                removes config, state and user, nothing left running
#   8 mosquitto  installing roost where mosquitto runs replaces it
#                (Conflicts: mosquitto), neither left failing
#   9 bridge     roost in the container bridges to a broker on the host:
#                sensors out, commands in
# What the container cannot show is printed as `--> ARCH: NOT CHECKED ...`.
#
# ${Status} and the like below are dpkg-query's and journal text, not the
# shell's: SC2016 is off for the file.
# shellcheck disable=SC2016
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ARCHES=("$@")
[[ ${#ARCHES[@]} -gt 0 ]] || ARCHES=(amd64 arm64)
TARGET=${CARGO_TARGET_DIR:-target}
WORK="$(realpath -m "$TARGET/nspawn")"
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
# The stage's own loopback ports: PORT_BASE to PORT_BASE + 9.
PORT_BASE=${ROOST_NSPAWN_PORT_BASE:-18830}
HOST_BROKER_PORT=$((PORT_BASE + 9))
export DEBIAN_FRONTEND=noninteractive

ARCH=-             # the architecture being checked, for messages
ROOT=              # its root file system
NSPAWN_PID=        # systemd-nspawn, started by this script
CT_PID=            # the container's PID 1 (systemd), as the host sees it
BG_PIDS=()         # host processes started in the background
MOUNTED_BINFMT=
STAGE_START=$SECONDS

say() { echo "--> $ARCH: $*"; }
ok() { echo "--> $ARCH: $* ... ok"; }
not_checked() { echo "--> $ARCH: NOT CHECKED: $*"; }
fail() {
    echo "--> $ARCH: FAILED: $*" >&2
    exit 1
}

# A command inside the container, bounded (qemu makes some slow).
ct() { timeout 300 nsenter -t "$CT_PID" -a -- "$@"; }
# A shell command line inside the container.
ct_sh() { ct /bin/sh -c "$1"; }
# `grep -q` for a pipe: reads to the end, since `grep -q` stops at the
# first match and, under pipefail, the writer's SIGPIPE fails the pipe.
contains() { grep "$@" >/dev/null; }
prop() { ct systemctl show -p "$1" --value "${2:-roost.service}"; }

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

dump_container() {
    [[ -n "$CT_PID" ]] || return 0
    echo "---- $ARCH: container journal (last 150 lines) ----" >&2
    ct journalctl -b --no-pager -n 150 -o short-precise >&2 || true
    echo "---- $ARCH: journalctl -u roost -u roost.socket (last 80 lines) ----" >&2
    ct journalctl -b --no-pager -n 80 -u roost -u roost.socket -o short-precise >&2 || true
    echo "---- $ARCH: systemctl status roost roost.socket ----" >&2
    ct systemctl --no-pager status roost roost.socket >&2 || true
    echo "---- end of $ARCH container state ----" >&2
}

stop_container() {
    if [[ -n "$CT_PID" ]]; then
        timeout 10 nsenter -t "$CT_PID" -a -- systemctl poweroff >/dev/null 2>&1 || true
    fi
    if [[ -n "$NSPAWN_PID" ]]; then
        # A clean poweroff, else the container's PID 1 killed (which ends
        # every process in it), else nspawn itself.
        if ! timeout 60 tail --pid="$NSPAWN_PID" -f /dev/null; then
            if [[ -n "$CT_PID" ]]; then kill -KILL "$CT_PID" 2>/dev/null || true; fi
            timeout 10 tail --pid="$NSPAWN_PID" -f /dev/null ||
                kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        fi
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    NSPAWN_PID='' CT_PID=''
    [[ -z "$ROOT" ]] || remove_tree "$ROOT"
    ROOT=
}

# rm -rf that never crosses into a mounted file system (mmdebstrap mounts
# /proc, /sys and /dev inside a root file system while it builds it):
# whatever is still mounted under the tree is unmounted first, and rm stays
# on the tree's own file system all the same.
remove_tree() {
    local mnt
    [[ -e "$1" ]] || return 0
    { findmnt -rn -o TARGET | grep -F "$1/" || true; } | sort -r | while read -r mnt; do
        umount -l "$mnt" || true
    done
    rm -rf --one-file-system "$1"
}

cleanup() {
    local rc=$?
    trap - ERR
    set +e
    [[ $rc -eq 0 ]] || dump_container
    # To look around a failed container by hand:
    #   ROOST_NSPAWN_HOLD=600 bash .ci/nspawn.sh, then nsenter -t PID -a.
    if [[ $rc -ne 0 && -n "$CT_PID" && -n "${ROOST_NSPAWN_HOLD:-}" ]]; then
        echo "holding the container (nsenter -t $CT_PID -a) for $ROOST_NSPAWN_HOLD s" >&2
        sleep "$ROOST_NSPAWN_HOLD"
    fi
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    stop_container
    # A bootstrap still running in the background: its shell and mmdebstrap.
    if [[ -n "${BOOTSTRAP_PID:-}" ]]; then
        # mmdebstrap unmounts what it mounted when it gets SIGTERM.
        pkill -TERM -P "$BOOTSTRAP_PID" 2>/dev/null
        timeout 60 tail --pid="$BOOTSTRAP_PID" -f /dev/null
        kill "$BOOTSTRAP_PID" 2>/dev/null
    fi
    wait 2>/dev/null
    remove_tree "$WORK"
    [[ -z "$MOUNTED_BINFMT" ]] || umount /proc/sys/fs/binfmt_misc
    [[ $rc -eq 0 ]] || echo "nspawn stage FAILED (status $rc) after $((SECONDS - STAGE_START)) s" >&2
    exit "$rc"
}
trap cleanup EXIT
# A command that fails outside a check's own test says which.
trap 'echo "--> $ARCH: FAILED: line $LINENO: $BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------- set-up

tools() {
    local need=()
    command -v mmdebstrap >/dev/null || need+=(mmdebstrap arch-test)
    command -v systemd-nspawn >/dev/null || need+=(systemd-container)
    command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
    command -v ss >/dev/null || need+=(iproute2)
    if [[ " ${ARCHES[*]} " == *" arm64 "* || " ${ARCHES[*]} " == *" armhf "* ]]; then
        [[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ]] || need+=(qemu-user-static binfmt-support)
    fi
    if [[ ${#need[@]} -gt 0 ]]; then
        echo "--> installing ${need[*]}"
        apt-get -o DPkg::Lock::Timeout=120 install -y --no-install-recommends "${need[@]}" >/dev/null
    fi
    if [[ " ${ARCHES[*]} " == *" arm64 "* || " ${ARCHES[*]} " == *" armhf "* ]]; then
        if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
            mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
            MOUNTED_BINFMT=1
        fi
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
        update-binfmts --enable qemu-arm >/dev/null 2>&1 || true
        grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
            fail "binfmt_misc has no qemu-aarch64 entry (qemu-user-static, binfmt-support)"
    fi
}

# Ports the containers will use on the host's loopback must be free.
ports_free() {
    local port busy
    for port in 1883 $(seq "$PORT_BASE" $((PORT_BASE + 9))); do
        busy=$(ss -Htln "sport = :$port")
        [[ -z "$busy" ]] || fail "port $port is in use on this host (the stage needs 1883 and $PORT_BASE-$((PORT_BASE + 9)); ROOST_NSPAWN_PORT_BASE moves the latter): $busy"
    done
}

deb_for() {
    case $1 in
    amd64) echo "$TARGET/debian" ;;
    arm64) echo "$TARGET/aarch64-unknown-linux-gnu/debian" ;;
    armhf) echo "$TARGET/armv7-unknown-linux-gnueabihf/debian" ;;
    esac
}

# (Re)packages the .deb of each architecture from the current tree.
packages() {
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "--> cargo install cargo-deb"
        cargo install --quiet --locked cargo-deb
    fi
    local arch triple
    for arch in "${ARCHES[@]}"; do
        rm -f "$(deb_for "$arch")"/roost_*.deb
        case $arch in
        amd64) cargo deb --quiet >/dev/null ;;
        arm64 | armhf)
            triple=aarch64-unknown-linux-gnu
            [[ $arch == armhf ]] && triple=armv7-unknown-linux-gnueabihf
            [[ -x "$TARGET/$triple/release/roost" ]] ||
                fail "no $TARGET/$triple/release/roost: run \`bash .ci/cross.sh\` first"
            cargo deb --quiet --no-build --no-strip --target "$triple" >/dev/null
            ;;
        *) fail "unknown architecture $arch (amd64, arm64, armhf)" ;;
        esac
    done
}

# N+1: the same package with a later version and a changed conffile, so
# that the upgrade meets an admin-edited /etc/roost/roost.conf the way a
# real new release would.
next_version() {
    local deb=$1 out=$2 dir version
    dir=$(mktemp -d "$WORK/repack.XXXXXX")
    dpkg-deb -R "$deb" "$dir/pkg"
    version=$(dpkg-deb -f "$deb" Version)
    sed -i "s/^Version: .*/Version: $version+ci1/" "$dir/pkg/DEBIAN/control"
    echo "# (a line added by roost $version+ci1)" >>"$dir/pkg/etc/roost/roost.conf"
    if [[ -f "$dir/pkg/DEBIAN/md5sums" ]]; then
        (cd "$dir/pkg" && sed -i "s|^[0-9a-f]*  etc/roost/roost.conf\$|$(md5sum etc/roost/roost.conf)|" DEBIAN/md5sums)
    fi
    dpkg-deb --root-owner-group -b "$dir/pkg" "$out" >/dev/null
    rm -rf "$dir"
    dpkg --compare-versions "$version+ci1" gt "$version"
}

# A minimal Debian 12 with systemd as init, the apt lists kept (so that
# apt-get install resolves the package's dependencies), and apt's timers
# masked (they would take the dpkg lock in the middle of a check).
# A mirror in the middle of a sync fails an index download now and then:
# three tries, each from an empty directory; the last without the
# security suite, whose armhf index this machine's mirror has been seen to
# serve at a size its Release file does not name (.ci/cross.sh meets it
# too). That is said on the stage's output, not hidden.
bootstrap() {
    local try security=("deb http://deb.debian.org/debian-security $SUITE-security main")
    for try in 1 2 3; do
        if [[ $try == 3 ]]; then
            security=()
            echo "--> $1: NOTE: root file system without $SUITE-security: its index did not download twice" |
                tee "$WORK/bootstrap-note-$1"
        fi
        bootstrap_once "$1" "$2" "${security[@]}" && return 0
        echo "mmdebstrap failed (try $try)" >&2
        remove_tree "$2"
        sleep $((try * 5))
    done
    return 1
}

bootstrap_once() {
    local arch=$1 root=$2
    shift 2
    mmdebstrap --variant=apt --include=systemd-sysv --architectures="$arch" \
        --skip=cleanup/apt/lists \
        --customize-hook="echo roost-ci-$arch >\"\$1/etc/hostname\"" \
        --customize-hook='systemctl --root="$1" mask apt-daily.timer apt-daily-upgrade.timer systemd-timesyncd.service >/dev/null 2>&1 || true' \
        "$SUITE" "$root" \
        "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "$@"
}

# The container's PID 1 (pid 1 in its own namespace, NSpid "... 1"), as
# the host sees it: a child of systemd-nspawn, once nspawn is done setting up.
container_init() {
    local pid
    for pid in $(pgrep -P "$NSPAWN_PID"); do
        if grep -Eq '^NSpid:.*[[:space:]]1$' "/proc/$pid/status" 2>/dev/null; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

boot() {
    local arch=$1
    systemd-nspawn -D "$ROOT" --boot --register=no --keep-unit \
        --machine="roost-ci-$arch" --console=read-only </dev/null \
        >"$WORK/boot-$arch.log" 2>&1 &
    NSPAWN_PID=$!
    wait_for 60 container_init || fail "systemd-nspawn did not start: $(cat "$WORK/boot-$arch.log")"
    CT_PID=$(container_init)
    local state
    # systemctl needs systemd's private socket, which comes a while after
    # PID 1 starts (seconds, under qemu).
    wait_for 180 nsenter -t "$CT_PID" -a -- test -S /run/systemd/private ||
        fail "systemd in the container did not come up: $(tail -n 30 "$WORK/boot-$arch.log")"
    state=$(timeout 300 nsenter -t "$CT_PID" -a -- systemctl is-system-running --wait 2>/dev/null) || true
    [[ "$state" == running || "$state" == degraded ]] ||
        fail "the container did not boot ($state): $(tail -n 30 "$WORK/boot-$arch.log")"
    local failed
    failed=$(ct systemctl --failed --no-legend --plain | awk '{print $1}' | paste -sd ' ')
    ok "booted: systemd $(ct systemctl --version | awk 'NR == 1 {print $2}') as PID 1 ($state${failed:+; failed: $failed})"
}

# ---------------------------------------------------------------- MQTT

# mosquitto_sub in the background, -d so that its SUBACK and CONNECTs show;
# waits (20 s at most) for the SUBACK. Sets $SUB.
SUB=
sub_start() {
    local out=$1
    shift
    # Line-buffered, so that the SUBACK shows while it runs.
    timeout 120 stdbuf -oL mosquitto_sub -d "$@" >"$out" 2>&1 &
    SUB=$!
    BG_PIDS+=("$SUB")
    wait_for 20 grep -q SUBACK "$out" || fail "mosquitto_sub $*: no SUBACK: $(cat "$out")"
}
# Waits (30 s at most) for the subscriber $1 to end, then prints its
# messages (the lines that are not -d's).
sub_result() {
    timeout 30 tail --pid="$1" -f /dev/null || true
    kill "$1" 2>/dev/null || true
    grep -v -e '^Client ' -e '^Subscribed ' "$2" || true
}

pub() { timeout 30 mosquitto_pub -h 127.0.0.1 "$@"; }

qos_exchange() {
    local port=$1 qos topic got out
    shift
    for qos in 0 1 2; do
        topic="ci/qos$qos"
        out="$WORK/sub-qos$qos"
        sub_start "$out" -h 127.0.0.1 -p "$port" "$@" -t "$topic" -q "$qos" -C 3 -W 60
        printf 'one\ntwo\nthree\n' | pub -p "$port" "$@" -t "$topic" -q "$qos" -l
        got=$(sub_result "$SUB" "$out" | paste -sd ' ')
        [[ "$got" == "one two three" ]] || fail "QoS $qos: expected 'one two three', got '$got'"
    done
}

# Under qemu-user (arm64, armhf on this amd64 host) systemd cannot give
# roost a user namespace: unshare(CLONE_NEWUSER) fails with EINVAL in the
# emulator ("Failed to set up user namespacing", status 217/USER). A
# runtime drop-in turns PrivateUsers= off there, and says so.
emulated() { [[ "$ARCH" != "$(dpkg --print-architecture)" ]]; }
qemu_dropin() {
    emulated || return 0
    if [[ $1 == add ]]; then
        ct mkdir -p /run/systemd/system/roost.service.d
        ct_sh 'printf "[Service]\nPrivateUsers=no\n" >/run/systemd/system/roost.service.d/qemu-user.conf'
    else
        ct rm -rf /run/systemd/system/roost.service.d
    fi
    ct systemctl daemon-reload
}

roost_conf_add() { ct_sh "cat >>/etc/roost/roost.conf" <<<"$1"; }

is_active() { [[ "$(ct systemctl is-active "$1")" == active ]]; }
main_pid_changed() {
    local pid
    pid=$(prop MainPID)
    [[ "$pid" != "$1" && "$pid" != 0 ]]
}
# Whether mosquitto_sub -d's output $1 shows a second CONNECT.
reconnected() { [[ $(grep -c 'sending CONNECT' "$1") -ge 2 ]]; }

active_or_fail() {
    local what=$1 state
    state=$(ct systemctl is-active roost) || true
    [[ "$state" == active ]] || fail "$what: roost is $state, not active"
}

# ---------------------------------------------------------------- checks

check_install() {
    local base=$1 deb=$2 before after out
    if ct dpkg-query -W -f '${Status}' procps 2>/dev/null | contains 'ok installed'; then
        fail "procps is in the fresh container already: the dependency check would prove nothing"
    fi
    local t0=$SECONDS new
    if emulated; then
        qemu_dropin add
        not_checked "PrivateUsers=yes (qemu-user cannot make a user namespace: EINVAL; a drop-in in /run sets PrivateUsers=no), and what SystemCallFilter=, SystemCallArchitectures= and MemoryDenyWriteExecute= do to roost (its $ARCH code runs as the emulator's x86-64 system calls); the other sandbox settings apply"
    fi
    ct apt-get install -y --no-install-recommends "/root/$(basename "$deb")" >"$WORK/apt-install-$ARCH.log" 2>&1 ||
        fail "apt-get install: $(tail -n 30 "$WORK/apt-install-$ARCH.log")"
    [[ $(ct dpkg-query -W -f '${Status}\n' adduser procps | grep -c 'install ok installed') == 2 ]] ||
        fail "apt-get install did not pull adduser and procps"
    new=$(sed -n '/^The following NEW packages will be installed:/,/^[^ ]/p' "$WORK/apt-install-$ARCH.log" |
        grep '^ ' | xargs)
    ok "install: apt-get install ./$(basename "$deb") in $((SECONDS - t0)) s, with what it depends on: new packages: $new"
    ct getent passwd roost | contains ':/var/lib/roost:' || fail "no system user roost"
    [[ "$(ct systemctl is-enabled roost.service)" == enabled ]] || fail "roost.service is not enabled"
    [[ "$(ct systemctl is-enabled roost.socket || true)" == disabled ]] || fail "roost.socket is enabled"
    ok "install: user roost made, roost.service enabled, roost.socket installed but not enabled"
    # Type=notify: `active` only once roost sent READY=1, with its STATUS=.
    active_or_fail install
    [[ "$(prop StatusText)" == "clients connected: 0" ]] || fail "STATUS= is '$(prop StatusText)'"
    ok "install: active (READY=1), status \"$(prop StatusText)\""
    out=$(ss -Htln 'sport = :1883' | awk '{print $4}' | sort | paste -sd ' ')
    [[ "$out" == "127.0.0.1:1883 [::1]:1883" ]] || fail "roost as installed listens on '$out', not localhost only"
    sub_start "$WORK/sub-anon" -h 127.0.0.1 -p 1883 -t ci/anon -C 1 -W 20
    pub -p 1883 -t ci/anon -m local
    [[ "$(sub_result "$SUB" "$WORK/sub-anon")" == local ]] || fail "no anonymous local message"
    ok "install: as installed, localhost only ($out), anonymous local clients served"

    # The admin's set-up: users from `roost passwd`, an ACL, a loopback
    # listener on a port of the stage's own, the journal persistence mode.
    ct roost passwd -c -b /etc/roost/passwd alice secret
    ct chown roost:roost /etc/roost/passwd
    ct_sh 'printf "user alice\ntopic readwrite #\n" >/etc/roost/acl && chown roost:roost /etc/roost/acl'
    roost_conf_add "
# --- edited by the admin (.ci/nspawn.sh)
listener $base 127.0.0.1
password_file /etc/roost/passwd
acl_file /etc/roost/acl
persistence_mode journal
# accepted with a warning: the journal must show it as one
set_tcp_nodelay false"
    ct roost --check-config -c /etc/roost/roost.conf >/dev/null 2>&1
    ct systemctl restart roost
    active_or_fail "restart with a password file"
    qos_exchange "$base" -u alice -P secret
    if pub -p "$base" -t ci/anon -m x 2>/dev/null; then
        fail "an anonymous client was let in with a password file"
    fi
    ok "install: QoS 0, 1, 2 from the host through roost on 127.0.0.1:$base, user from roost passwd; anonymous refused"

    # The journal: no env_logger timestamp in front of the message, and a
    # warning's priority (4) on the warning.
    before=$(ct journalctl -u roost -b -o cat --no-pager | grep -c '^\[20' || true)
    [[ "$before" == 0 ]] || fail "journal lines with a second timestamp: $(ct journalctl -u roost -b -o cat --no-pager | grep '^\[20' | sed -n 1,3p)"
    ct journalctl -u roost -b -p warning..warning -o cat --no-pager | contains '`set_tcp_nodelay false` has no effect' ||
        fail "the config warning is not at priority warning"
    ct journalctl -u roost -b -p info..info -o cat --no-pager | contains "listening on 127.0.0.1:$base" ||
        fail "'listening on' is not at priority info"
    after=$(ct journalctl -u roost -b -o short-precise --no-pager | grep 'has no effect' | sed -n 1p)
    ok "install: journal: no second timestamp, warning at priority 4: $after"
}

check_reload() {
    local base=$1 pid0 n0 out got
    pid0=$(prop MainPID) n0=$(prop NRestarts)
    out="$WORK/sub-reload"
    sub_start "$out" -h 127.0.0.1 -p "$base" -u alice -P secret -i ci-reload -t 'reload/#' -q 1 -v -C 1 -W 60
    if pub -p "$base" -u bob -P pw2 -t reload/bob -m early 2>/dev/null; then
        fail "bob got in before he was added"
    fi
    ct roost passwd -b /etc/roost/passwd bob pw2
    ct_sh 'printf "user alice\ntopic readwrite #\n\nuser bob\ntopic write reload/bob\n" >/etc/roost/acl'
    ct chown roost:roost /etc/roost/passwd /etc/roost/acl
    ct systemctl reload roost
    [[ "$(prop MainPID)" == "$pid0" && "$(prop NRestarts)" == "$n0" ]] || fail "reload restarted roost"
    pub -p "$base" -u bob -P pw2 -t reload/denied -m no -q 1
    pub -p "$base" -u bob -P pw2 -t reload/bob -m hello -q 1
    got=$(sub_result "$SUB" "$out")
    [[ "$got" == "reload/bob hello" ]] || fail "after the reload, alice got '$got', not 'reload/bob hello'"
    [[ "$(grep -c 'sending CONNECT' "$out")" == 1 ]] || fail "alice's client reconnected across the reload"
    ct journalctl -u roost -b -o cat --no-pager | contains -i reload || fail "no reload in the journal"
    ok "reload: bob (added to the password file) in, the ACL's new deny applied; same process ($pid0), alice's connection kept"
}

check_watchdog() {
    local base=$1 pid0 n0 t0 elapsed got wd
    wd=$(prop WatchdogUSec)
    ct_sh 'ls /var/lib/roost/' | contains journal || say "(no journal file yet)"
    timeout 30 mosquitto_sub -h 127.0.0.1 -p "$base" -u alice -P secret -c -i ci-wd -q 1 -t 'wd/#' -E
    printf 'a\nb\nc\n' | pub -p "$base" -u alice -P secret -t wd/x -q 1 -l
    pid0=$(prop MainPID) n0=$(prop NRestarts)
    t0=$SECONDS
    ct kill -STOP "$pid0"
    wait_for 120 main_pid_changed "$pid0" ||
        fail "roost (pid $pid0) stopped with SIGSTOP was not restarted within 120 s"
    wait_for 60 is_active roost || fail "roost not active after the watchdog restart"
    elapsed=$((SECONDS - t0))
    [[ "$(prop NRestarts)" == $((n0 + 1)) ]] || fail "NRestarts is $(prop NRestarts), was $n0"
    ct journalctl -u roost -b -o cat --no-pager | contains 'Watchdog timeout' || fail "no watchdog timeout in the journal"
    # WatchdogSec=30s, plus RestartSec=2s and start-up.
    ((elapsed <= 45)) || fail "the watchdog restart took $elapsed s"
    got=$(timeout 30 mosquitto_sub -h 127.0.0.1 -p "$base" -u alice -P secret -c -i ci-wd -q 1 -t 'wd/#' -C 3 -W 20 | paste -sd ' ') || true
    [[ "$got" == "a b c" ]] || fail "the persistent session's queued messages after the restart: '$got'"
    ok "watchdog: SIGSTOP, systemd restarted roost after $elapsed s (WatchdogSec=$wd), NRestarts $n0 -> $(prop NRestarts), 3 queued QoS 1 messages delivered after"
}

check_socket() {
    local base=$1 port=$(($1 + 1)) n0 i refused served pid0
    roost_conf_add "listener $port 127.0.0.1"
    ct mkdir -p /etc/systemd/system/roost.socket.d
    ct_sh "printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$port\n' >/etc/systemd/system/roost.socket.d/ci.conf"
    ct systemctl daemon-reload
    # systemd does not start a socket whose service is running: roost
    # stops meanwhile (docs/systemd.md says the same).
    ct systemctl stop roost 2>/dev/null
    ct systemctl enable --now roost.socket 2>/dev/null
    ct systemctl start roost
    active_or_fail "socket activation"
    ct journalctl -u roost -b -o cat --no-pager | contains 'socket activation: 1 socket' || fail "roost did not take the socket"
    ok "socket: roost.socket (ListenStream=127.0.0.1:$port, a drop-in) enabled, roost took the socket for its listener 127.0.0.1:$port"

    # Clients connect one after another while roost restarts: every one is
    # served (the socket's backlog holds them), none is refused.
    pid0=$(prop MainPID)
    (
        served=0 refused=0
        for ((i = 0; i < 40; i++)); do
            if pub -p "$port" -u alice -P secret -t ci/restart -m "$i" -q 1 2>>"$WORK/restart-pub.err"; then
                served=$((served + 1))
            else
                refused=$((refused + 1))
            fi
            sleep 0.1
        done
        echo "$served $refused" >"$WORK/restart-pub.count"
    ) &
    local loop=$!
    BG_PIDS+=("$loop")
    sleep 1
    ct systemctl restart roost
    timeout 120 tail --pid="$loop" -f /dev/null || fail "the connect loop did not end"
    read -r served refused <"$WORK/restart-pub.count"
    [[ "$(prop MainPID)" != "$pid0" ]] || fail "roost was not restarted"
    [[ "$refused" == 0 ]] || fail "$refused of 40 connections failed during the restart: $(sort -u "$WORK/restart-pub.err" | sed -n 1,3p)"
    ok "socket: $served connections one after another across \`systemctl restart roost\`: all served, none refused"

    ct systemctl stop roost 2>/dev/null
    pub -p "$port" -u alice -P secret -t ci/activate -m x -q 1 || fail "a client connecting to the socket of a stopped roost was not served"
    active_or_fail "activation by a connection"
    ok "socket: roost stopped, a client connecting started it through the socket and was served"

    # The socket on every interface, the listener on loopback: refused,
    # naming both, and not restarted again and again.
    ct systemctl stop roost 2>/dev/null
    ct_sh "printf '[Socket]\nListenStream=\nListenStream=$port\n' >/etc/systemd/system/roost.socket.d/ci.conf"
    ct systemctl daemon-reload
    ct systemctl restart roost.socket
    n0=$(prop NRestarts)
    if ct systemctl start roost 2>/dev/null; then
        fail "roost started with a socket that overlaps its listener"
    fi
    sleep 6
    [[ "$(prop NRestarts)" == "$n0" ]] || fail "roost was restarted $(($(prop NRestarts) - n0)) times after refusing"
    [[ "$(prop ExecMainStatus)" == 1 ]] || fail "exit status $(prop ExecMainStatus), not 1"
    local msg
    msg=$(ct journalctl -u roost -b -p err -o cat --no-pager | grep "listener 127.0.0.1:$port (in the config) and the socket \[::\]:$port" | sed -n 1p) ||
        fail "no error naming the listener and the socket"
    ok "socket: ListenStream=$port against listener 127.0.0.1:$port refused at priority err, status 1, no restart (NRestarts $n0 after 6 s): ${msg:0:110}..."
    ct_sh "printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$port\n' >/etc/systemd/system/roost.socket.d/ci.conf"
    ct systemctl daemon-reload
    ct systemctl reset-failed roost roost.socket
    ct systemctl restart roost.socket
    ct systemctl start roost
    active_or_fail "socket restored"
}

check_sandbox() {
    local base=$1 owner line key n0 out msg
    owner=$(ct stat -L -c %U /var/lib/roost)
    out=$(ct_sh 'ls /var/lib/roost/' | paste -sd ' ')
    [[ "$owner" == roost && "$out" == *roost.db* ]] || fail "/var/lib/roost: owner $owner, files: $out"
    ok "sandbox: state written by roost to /var/lib/roost ($out, owner $owner) under ProtectSystem=strict"
    ct cp /etc/roost/roost.conf /root/roost.conf.good
    ct mkdir -p /srv/roost
    for line in "persistence_location /srv/roost/" "pid_file /run/roost.pid" "log_dest file /var/log/roost.log"; do
        key=${line% *}
        ct_sh "cp /root/roost.conf.good /etc/roost/roost.conf && echo '$line' >>/etc/roost/roost.conf"
        if out=$(ct roost --check-config -c /etc/roost/roost.conf 2>&1); then
            fail "--check-config passed $line: $out"
        fi
        [[ "$out" == *"$key"*"ProtectSystem=strict"* ]] || fail "--check-config said: $out"
        n0=$(prop NRestarts)
        if ct systemctl restart roost 2>/dev/null; then
            fail "roost started with $line"
        fi
        sleep 3
        [[ "$(prop NRestarts)" == "$n0" ]] || fail "roost restarted in a loop with $line"
        msg=$(ct journalctl -u roost -b -p err -o cat --no-pager -n 20 | grep "$key.*under roost.service: roost runs as user roost with ProtectSystem=strict" | sed -n 1p) ||
            fail "no error at priority err for $line in the journal"
        ok "sandbox: $line: --check-config: \"${out:0:90}...\"; journal (err): \"${msg:0:90}...\""
    done
    ct cp /root/roost.conf.good /etc/roost/roost.conf
    ct systemctl reset-failed roost
    ct systemctl start roost
    active_or_fail "good config back"
    local mem
    mem=$(prop MemoryMax)
    if ct_sh "cat /sys/fs/cgroup/system.slice/roost.service/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/system.slice/roost.service/memory.limit_in_bytes 2>/dev/null" | contains -x 134217728; then
        ok "sandbox: MemoryMax=128M enforced by the cgroup"
    else
        not_checked "MemoryHigh=/MemoryMax= (systemd has MemoryMax=$mem, but this host's cgroup hierarchy is v1/hybrid and nspawn does not delegate the memory controller, so no limit is applied in the container)"
    fi
}

check_upgrade() {
    local base=$1 next=$2 port=$(($1 + 1)) pid0 got v live
    pub -p "$base" -u alice -P secret -t state/lamp -m on -q 1 -r
    pub -p "$base" -u alice -P secret -t state/door -m closed -q 1 -r
    timeout 30 mosquitto_sub -h 127.0.0.1 -p "$base" -u alice -P secret -c -i ci-upg -q 1 -t 'upg/#' -E
    printf 'one\ntwo\n' | pub -p "$base" -u alice -P secret -t upg/x -q 1 -l
    # A client that stays across the upgrade, through the socket's port.
    live="$WORK/sub-live"
    sub_start "$live" -h 127.0.0.1 -p "$port" -u alice -P secret -i ci-live -t 'live/#' -q 1 -C 1 -W 110
    pid0=$(prop MainPID)
    ct apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "/root/$(basename "$next")" >"$WORK/apt-upgrade-$ARCH.log" 2>&1 ||
        fail "upgrade: $(tail -n 30 "$WORK/apt-upgrade-$ARCH.log")"
    v=$(ct dpkg-query -W -f '${Version}' roost)
    [[ "$v" == *+ci1 ]] || fail "roost is at $v after the upgrade"
    ct grep -q "^listener $base 127.0.0.1" /etc/roost/roost.conf || fail "the admin's roost.conf was replaced"
    ct test -f /etc/roost/roost.conf.dpkg-dist || fail "no roost.conf.dpkg-dist beside the kept conffile"
    ok "upgrade: to $v; the admin's edited /etc/roost/roost.conf kept, the new one as roost.conf.dpkg-dist"
    active_or_fail upgrade
    [[ "$(prop MainPID)" != "$pid0" ]] || fail "roost was not restarted by the upgrade"
    got=$(timeout 30 mosquitto_sub -h 127.0.0.1 -p "$base" -u alice -P secret -t 'state/#' -v -C 2 -W 20 | sort | paste -sd ' ') || true
    [[ "$got" == "state/door closed state/lamp on" ]] || fail "retained messages after the upgrade: '$got'"
    got=$(timeout 30 mosquitto_sub -h 127.0.0.1 -p "$base" -u alice -P secret -c -i ci-upg -q 1 -t 'upg/#' -C 2 -W 20 | paste -sd ' ') || true
    [[ "$got" == "one two" ]] || fail "the persistent session's messages after the upgrade: '$got'"
    wait_for 30 reconnected "$live" || fail "the live client did not reconnect: $(cat "$live")"
    pub -p "$base" -u alice -P secret -t live/after -m upgraded -q 1
    got=$(sub_result "$SUB" "$live")
    [[ "$got" == upgraded ]] || fail "the reconnected client got '$got'"
    ok "upgrade: roost restarted (pid $pid0 -> $(prop MainPID)); 2 retained messages and a session's 2 queued messages survived; a connected client reconnected and was served"
}

check_remove() {
    local base=$1 left
    ct apt-get remove -y roost >"$WORK/apt-remove-$ARCH.log" 2>&1 || fail "apt-get remove: $(tail "$WORK/apt-remove-$ARCH.log")"
    [[ "$(ct systemctl is-active roost roost.socket | paste -sd ' ')" == "inactive inactive" ]] ||
        fail "after remove: roost/roost.socket $(ct systemctl is-active roost roost.socket | paste -sd ' ')"
    if ct pgrep -x roost >/dev/null; then fail "a roost process is left after remove"; fi
    [[ -z "$(ss -Htln "sport = :$base or sport = :$((base + 1))")" ]] || fail "ports still open after remove"
    ct test -f /etc/roost/roost.conf -a -f /etc/roost/passwd || fail "remove took the config"
    left=$(ct_sh 'ls /var/lib/private/roost/' | paste -sd ' ')
    [[ "$left" == *roost.db* ]] || fail "remove took the state: '$left'"
    ok "remove: roost and roost.socket stopped, no process, config and state kept ($left)"
    ct apt-get purge -y roost >"$WORK/apt-purge-$ARCH.log" 2>&1 || fail "apt-get purge: $(tail "$WORK/apt-purge-$ARCH.log")"
    for left in /etc/roost /var/lib/roost /var/lib/private/roost /usr/lib/systemd/system/roost.service; do
        if ct test -e "$left" -o -L "$left"; then fail "$left left after purge"; fi
    done
    if ct getent passwd roost >/dev/null || ct getent group roost >/dev/null; then
        fail "user or group roost left after purge"
    fi
    if ct pgrep -x roost >/dev/null; then fail "a roost process is left after purge"; fi
    qemu_dropin remove
    left=$(ct systemctl list-units --all --no-legend --plain 'roost*' | paste -sd ' ')
    [[ -z "$left" ]] || fail "units left after purge: $left"
    ok "purge: /etc/roost, /var/lib/roost (and /var/lib/private/roost), user and group roost removed, no unit, no process"
}

check_mosquitto() {
    local deb=$2 state got
    ct apt-get install -y --no-install-recommends mosquitto >"$WORK/apt-mosquitto-$ARCH.log" 2>&1 ||
        fail "apt-get install mosquitto: $(tail "$WORK/apt-mosquitto-$ARCH.log")"
    wait_for 30 is_active mosquitto || fail "mosquitto did not start in the container"
    ok "mosquitto: Debian's mosquitto installed and active on localhost:1883"
    qemu_dropin add
    ct apt-get install -y --no-install-recommends "/root/$(basename "$deb")" >"$WORK/apt-over-$ARCH.log" 2>&1 ||
        fail "apt-get install roost over mosquitto: $(tail -n 30 "$WORK/apt-over-$ARCH.log")"
    grep -q 'The following packages will be REMOVED' "$WORK/apt-over-$ARCH.log" || fail "apt did not remove mosquitto"
    state=$(ct dpkg-query -W -f '${db:Status-Abbrev}' mosquitto)
    [[ "$state" == rc* ]] || fail "mosquitto's package state is '$state'"
    sleep 5
    active_or_fail "roost in place of mosquitto"
    [[ "$(prop NRestarts)" == 0 ]] || fail "roost restarted $(prop NRestarts) times"
    state=$(ct systemctl is-active mosquitto || true)
    [[ "$state" == inactive ]] || fail "mosquitto.service is $state"
    got=$(ct systemctl list-units --failed --no-legend --plain 'roost*' 'mosquitto*' | paste -sd ' ')
    [[ -z "$got" ]] || fail "failed units: $got"
    sub_start "$WORK/sub-mq" -h 127.0.0.1 -p 1883 -t ci/mq -C 1 -W 20
    pub -p 1883 -t ci/mq -m roost
    [[ "$(sub_result "$SUB" "$WORK/sub-mq")" == roost ]] || fail "nothing through 1883 after the switch"
    ok "mosquitto: installing roost removed mosquitto (Conflicts: mosquitto; its config kept, state rc); roost active on 1883 with NRestarts 0, neither unit failed"
}

check_bridge() {
    local got inner
    ct apt-get install -y --no-install-recommends mosquitto-clients >"$WORK/apt-clients-$ARCH.log" 2>&1 ||
        fail "apt-get install mosquitto-clients: $(tail "$WORK/apt-clients-$ARCH.log")"
    roost_conf_add "
connection cloud
address 127.0.0.1:$HOST_BROKER_PORT
remote_clientid site1-gateway-$ARCH
topic # out 1 sensors/ site1/sensors/
topic # in 1 cmd/ site1/cmd/"
    ct systemctl restart roost
    active_or_fail "bridge"
    wait_for 30 sh -c "nsenter -t $CT_PID -a -- journalctl -u roost -b -o cat --no-pager | grep -q 'bridge cloud: connected to 127.0.0.1:$HOST_BROKER_PORT'" ||
        fail "the bridge did not connect to the host's broker"
    sub_start "$WORK/sub-cloud" -h 127.0.0.1 -p "$HOST_BROKER_PORT" -t 'site1/sensors/#' -v -q 1 -C 1 -W 60
    ct mosquitto_pub -h 127.0.0.1 -p 1883 -t sensors/kitchen/temp -m 21.5 -q 1
    got=$(sub_result "$SUB" "$WORK/sub-cloud")
    [[ "$got" == "site1/sensors/kitchen/temp 21.5" ]] || fail "the host's broker got '$got'"
    inner="$WORK/sub-inner"
    timeout 90 nsenter -t "$CT_PID" -a -- stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p 1883 -t 'cmd/#' -v -q 1 -C 1 -W 60 >"$inner" 2>&1 &
    BG_PIDS+=("$!")
    local isub=$!
    wait_for 60 grep -q SUBACK "$inner" || fail "the container's mosquitto_sub got no SUBACK: $(cat "$inner")"
    pub -p "$HOST_BROKER_PORT" -t site1/cmd/heater -m on -q 1
    got=$(sub_result "$isub" "$inner")
    [[ "$got" == "cmd/heater on" ]] || fail "the container got '$got'"
    ok "bridge: sensors/kitchen/temp published in the container reached the host's broker as site1/sensors/kitchen/temp; site1/cmd/heater from the host arrived inside as cmd/heater"
}

# ---------------------------------------------------------------- main

run_arch() {
    local arch=$1 deb next base t0 t
    ARCH=$arch
    case $arch in
    amd64) base=$PORT_BASE ;;
    *) base=$((PORT_BASE + 4)) ;;
    esac
    ROOT="$WORK/root-$arch"
    t0=$SECONDS
    if [[ -n "${BOOTSTRAP_PID:-}" && "${BOOTSTRAP_ARCH:-}" == "$arch" ]]; then
        wait "$BOOTSTRAP_PID" || fail "mmdebstrap: $(tail -n 20 "$WORK/mmdebstrap-$arch.log")"
        BOOTSTRAP_PID=
        say "root file system built in the background, ready after $(cat "$WORK/mmdebstrap-$arch.secs") s"
        [[ ! -f "$WORK/bootstrap-note-$arch" ]] || cat "$WORK/bootstrap-note-$arch"
        TIMES+=("$arch root file system $(cat "$WORK/mmdebstrap-$arch.secs") s (in the background)")
    else
        t=$SECONDS
        bootstrap "$arch" "$ROOT" >"$WORK/mmdebstrap-$arch.log" 2>&1 ||
            fail "mmdebstrap: $(tail -n 20 "$WORK/mmdebstrap-$arch.log")"
        say "root file system (mmdebstrap, Debian 12) built in $((SECONDS - t)) s"
        TIMES+=("$arch root file system $((SECONDS - t)) s")
    fi
    deb=$(ls "$(deb_for "$arch")"/roost_*_"$arch".deb)
    next="$WORK/$(basename "${deb%.deb}")+ci1.deb"
    next_version "$deb" "$next"
    cp "$deb" "$next" "$ROOT/root/"
    t=$SECONDS
    boot "$arch"
    say "boot took $((SECONDS - t)) s"
    TIMES+=("$arch boot $((SECONDS - t)) s")
    local check
    for check in install reload watchdog socket sandbox upgrade remove mosquitto bridge; do
        t=$SECONDS
        case $check in
        install | mosquitto) "check_$check" "$base" "$deb" ;;
        upgrade) "check_$check" "$base" "$next" ;;
        *) "check_$check" "$base" ;;
        esac
        TIMES+=("$arch $check $((SECONDS - t)) s")
    done
    stop_container
    TIMES+=("$arch total $((SECONDS - t0)) s")
    ok "all checks, $((SECONDS - t0)) s"
    ARCH=-
}

TIMES=()
tools
ports_free
mkdir -p "$WORK"
t=$SECONDS
packages
echo "--> .deb packages ready in $((SECONDS - t)) s"

# The host's broker that the containers' bridges connect to: roost, native.
cargo build --quiet --release
"$TARGET/release/roost" -p "$HOST_BROKER_PORT" 2>"$WORK/host-broker.log" &
BG_PIDS+=("$!")
wait_for 20 grep -q "listening on 127.0.0.1:$HOST_BROKER_PORT" "$WORK/host-broker.log" ||
    fail "the host's broker did not start: $(cat "$WORK/host-broker.log")"

# The second architecture's root file system is built while the first is
# checked (mmdebstrap is mostly waiting on the network and on qemu).
if [[ ${#ARCHES[@]} -gt 1 ]]; then
    BOOTSTRAP_ARCH=${ARCHES[1]}
    (
        t=$SECONDS
        bootstrap "$BOOTSTRAP_ARCH" "$WORK/root-$BOOTSTRAP_ARCH" >"$WORK/mmdebstrap-$BOOTSTRAP_ARCH.log" 2>&1
        echo $((SECONDS - t)) >"$WORK/mmdebstrap-$BOOTSTRAP_ARCH.secs"
    ) &
    BOOTSTRAP_PID=$!
fi

for arch in "${ARCHES[@]}"; do
    run_arch "$arch"
done

echo "--> time per part:"
printf '    %s\n' "${TIMES[@]}"
echo "--> nspawn stage: ${ARCHES[*]} passed in $((SECONDS - STAGE_START)) s"
