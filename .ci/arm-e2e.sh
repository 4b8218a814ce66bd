#!/usr/bin/env bash
# End-to-end check of a cross-built roost under qemu user-mode emulation:
# the emulated broker on a loopback port, mosquitto_sub and mosquitto_pub
# (native) exchanging QoS 0, 1 and 2 messages through it, then SIGTERM and
# a clean exit; then a message over a TLS listener (ring's ARM code in the
# handshake and the records), with a certificate made by openssl. Every
# wait is bounded.
#
#   bash .ci/arm-e2e.sh qemu-aarch64 /usr/aarch64-linux-gnu target/aarch64-unknown-linux-gnu/release/roost
set -euo pipefail

qemu=$1 sysroot=$2 binary=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/roost-e2e.XXXXXX")
broker=
cleanup() {
    [[ -n "$broker" ]] && kill "$broker" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Starts the emulated broker with arguments "$@"; sets $broker and $port.
start() {
    : >"$work/broker.log"
    "$qemu" -L "$sysroot" "$binary" "$@" 2>"$work/broker.log" &
    broker=$!
    port=
    for _ in $(seq 300); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/broker.log")
        [[ -n "$port" ]] && break
        sleep 0.1
    done
    if [[ -z "$port" ]]; then
        echo "roost under $qemu did not start:" >&2
        cat "$work/broker.log" >&2
        exit 1
    fi
    echo "$(basename "$binary") under $qemu listening on port $port"
}

# Waits (at most 20 s) until mosquitto_sub -d has written its SUBACK to
# file "$1": publishing before the subscription is in place would lose it.
wait_suback() {
    for _ in $(seq 200); do
        grep -qs SUBACK "$1" && return
        sleep 0.1
    done
}

start -p 0

for qos in 0 1 2; do
    topic="roost/e2e/qos$qos"
    timeout 30 mosquitto_sub -d -p "$port" -t "$topic" -q "$qos" -C 3 -W 25 \
        >"$work/sub$qos.out" &
    sub=$!
    wait_suback "$work/sub$qos.out"
    printf 'one\ntwo\nthree\n' | timeout 30 mosquitto_pub -p "$port" -t "$topic" -q "$qos" -l
    wait "$sub"
    got=$(grep -v -e '^Client ' -e '^Subscribed ' "$work/sub$qos.out" | paste -sd ' ')
    if [[ "$got" != "one two three" ]]; then
        echo "QoS $qos: expected 'one two three', got '$got'" >&2
        cat "$work/sub$qos.out" "$work/broker.log" >&2
        exit 1
    fi
    echo "QoS $qos: 3 messages through the emulated broker"
done

kill -TERM "$broker"
status=0
timeout 10 tail --pid="$broker" -f /dev/null || status=$?
wait "$broker" || status=$?
broker=
if [[ $status -ne 0 ]]; then
    echo "roost did not exit cleanly on SIGTERM (status $status)" >&2
    cat "$work/broker.log" >&2
    exit 1
fi
echo "SIGTERM: clean exit"

if ! command -v openssl >/dev/null; then
    echo "TLS: openssl not installed, not checked"
    exit 0
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
printf 'listener 0 127.0.0.1\nallow_anonymous true\ncertfile %s\nkeyfile %s\n' \
    "$work/cert.pem" "$work/key.pem" >"$work/tls.conf"
start -c "$work/tls.conf"
timeout 30 mosquitto_sub -d -h 127.0.0.1 -p "$port" --cafile "$work/cert.pem" -t roost/e2e/tls -C 1 -W 25 \
    >"$work/tls.out" &
sub=$!
wait_suback "$work/tls.out"
timeout 30 mosquitto_pub -h 127.0.0.1 -p "$port" --cafile "$work/cert.pem" -t roost/e2e/tls -m secret
wait "$sub"
if ! grep -qx secret "$work/tls.out"; then
    echo "TLS: the message did not come through" >&2
    cat "$work/tls.out" "$work/broker.log" >&2
    exit 1
fi
echo "TLS: a message through the emulated broker's TLS listener"
