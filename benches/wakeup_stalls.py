#!/usr/bin/env python3
"""The machine's own latency stalls, with no MQTT and no broker.

The same path as the throughput bench's latency runs: a sender thread
writes an 8-byte timestamp every millisecond over loopback TCP to a relay
process, which forwards it to a receiver thread in this process. Run once
as the scheduler places the three, then with all of them bound to one CPU
(the lowest this process may use). Prints every send-to-receive time over
300 us with its sequence number, and the percentiles. On the 2-vCPU VM docs/benchmarks.md's figures come from, the
spread run shows stalls of up to 4 ms every 512 ms (every 512 messages);
the one-CPU run shows none.

    python3 benches/wakeup_stalls.py [messages per run, default 5000]
"""

import os
import socket
import subprocess
import sys
import threading
import time

STALL_NS = 300_000
INTERVAL = 0.001


def relay():
    """Child: accept a sender and a receiver, forward bytes until EOF."""
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    listener.settimeout(10)
    src, _ = listener.accept()
    dst, _ = listener.accept()
    while data := src.recv(65536):
        dst.sendall(data)


def run(count, one_cpu):
    all_cpus = os.sched_getaffinity(0)
    cpus = {min(all_cpus)} if one_cpu else all_cpus
    child = subprocess.Popen(
        [sys.executable, __file__, "--relay"], stdout=subprocess.PIPE
    )
    os.sched_setaffinity(child.pid, cpus)
    port = int(child.stdout.readline())
    tx = socket.create_connection(("127.0.0.1", port), timeout=10)
    rx = socket.create_connection(("127.0.0.1", port), timeout=10)
    for s in (tx, rx):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []

    def receive():
        os.sched_setaffinity(0, cpus)
        pending = b""
        while len(samples) < count:
            data = rx.recv(4096)
            if not data:
                return
            now = time.perf_counter_ns()
            pending += data
            while len(pending) >= 8:
                samples.append(now - int.from_bytes(pending[:8], "big"))
                pending = pending[8:]

    receiver = threading.Thread(target=receive)
    receiver.start()
    os.sched_setaffinity(0, cpus)
    start = time.perf_counter()
    for i in range(count):
        wait = start + i * INTERVAL - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        tx.sendall(time.perf_counter_ns().to_bytes(8, "big"))
    receiver.join(timeout=10)
    tx.close()
    child.wait(timeout=10)
    os.sched_setaffinity(0, all_cpus)
    return samples


def report(name, samples):
    stalls = [(i, ns // 1000) for i, ns in enumerate(samples) if ns > STALL_NS]
    ordered = sorted(samples)

    def pct(p):
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] // 1000

    print(f"{name}: {len(samples)} samples, p50 {pct(50)} us, p99 {pct(99)} us, "
          f"p99.9 {pct(99.9)} us, {len(stalls)} over {STALL_NS // 1000} us")
    for i, us in stalls[:40]:
        print(f"  message {i}: {us} us")


def main():
    if sys.argv[1:] == ["--relay"]:
        return relay()
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    report("spread", run(count, one_cpu=False))
    report("one CPU", run(count, one_cpu=True))


if __name__ == "__main__":
    main()
