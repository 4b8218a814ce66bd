"""Writes the fuzz seed corpus (tests/fuzz/corpus/) from real clients.

Usage: python3 tests/fuzz/capture_seeds.py PATH/TO/roost

Starts roost on a free loopback port and a recording proxy in front of it,
runs mosquitto_pub, mosquitto_sub (MQTT 3.1, 3.1.1 and 5.0, QoS 0 to 2,
retain, wills, v5 properties) and paho-mqtt through the proxy, and keeps
what each client sent:
- corpus/decode/: each packet alone, behind the selector byte of the decode
  target (the client's protocol level, a 1 MiB limit);
- corpus/broker/: each client run as events of the broker target: a
  default configuration, then per connection an open, its bytes, a close.
Needs mosquitto-clients and paho-mqtt; every wait is bounded.
"""

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """Relays connections to roost and records what each client sent."""

    def __init__(self, target):
        self.target = target
        self.lock = threading.Lock()
        self.streams = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            record = bytearray()
            with self.lock:
                self.streams.append(record)
            threading.Thread(target=self.pipe, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, None), daemon=True).start()

    def pipe(self, src, dst, record):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record is not None:
                    record.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def take(self):
        time.sleep(0.3)  # let the relays finish copying
        with self.lock:
            streams, self.streams = self.streams, []
        return [bytes(s) for s in streams if s]


def packets(stream):
    """Splits a client's bytes into whole packets."""
    out, i = [], 0
    while i < len(stream):
        n, shift, j = 0, 0, i + 1
        while True:
            b = stream[j]
            n |= (b & 0x7F) << shift
            shift += 7
            j += 1
            if b & 0x80 == 0:
                break
        out.append(stream[i : j + n])
        i = j + n
    return out


def level(stream):
    """Decode target selector: protocol level, limit 1 MiB (index 4)."""
    i = 1
    while stream[i] & 0x80:
        i += 1
    name_len = int.from_bytes(stream[i + 1 : i + 3], "big")
    v = stream[i + 3 + name_len]
    return {3: 0, 4: 1, 5: 2}.get(v, 1) | 4 << 2


def write(kind, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def broker_seed(streams):
    # limits: window 20 (index 3), queue 7; 1 MiB; no keep-alive cap,
    # connect timeout 3 s; no aliases out, anonymous allowed, no ACL.
    seed = bytearray([3 | 7 << 2, 2, 3 << 2, 0])
    for conn, stream in enumerate(streams[:6]):
        seed += bytes([0, conn])
        for i in range(0, len(stream), 0xFFFF):
            chunk = stream[i : i + 0xFFFF]
            seed += bytes([3, conn, len(chunk) >> 8, len(chunk) & 0xFF]) + chunk
        seed += bytes([2, 0, 2, 5])  # 5 s later
    for conn in range(min(len(streams), 6)):
        seed += bytes([1, conn])
    return bytes(seed)


def run(cmd, wait=True):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait:
        p.wait(timeout=10)
    return p


PAHO = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho-seed", protocol=mqtt.MQTTv5)
c.connect("127.0.0.1", int(sys.argv[1]), keepalive=30)
c.loop_start()
p = Properties(PacketTypes.PUBLISH)
p.UserProperty = [("k", "v"), ("k2", "v2")]
p.ContentType = "text/plain"
p.ResponseTopic = "seed/reply"
p.CorrelationData = b"corr"
p.MessageExpiryInterval = 60
c.subscribe([("seed/#", 2), ("$share/g/seed/+", 1)])
c.publish("seed/paho", b"hello", qos=2, properties=p).wait_for_publish(5)
c.unsubscribe("seed/#")
time.sleep(0.2)
c.disconnect()
c.loop_stop()
"""


def main():
    roost_bin = sys.argv[1]
    port = free_port()
    roost = subprocess.Popen([roost_bin, "-p", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        proxy = Proxy(port)
        p = str(proxy.port)
        runs = []
        for v in ["mqttv31", "mqttv311", "mqttv5"]:
            for q in ["0", "1", "2"]:
                sub = run(["mosquitto_sub", "-p", p, "-V", v, "-q", q, "-t", "seed/#",
                           "-t", "seed/+/x", "-C", "1", "-W", "5", "-c", "-i", f"sub-{v}-{q}"], wait=False)
                time.sleep(0.3)
                run(["mosquitto_pub", "-p", p, "-V", v, "-q", q, "-t", f"seed/{v}",
                     "-m", "reading 21.5", "-r", "--will-topic", "seed/will",
                     "--will-payload", "gone", "--will-qos", q])
                sub.wait(timeout=10)
                runs.append(proxy.take())
        run(["mosquitto_pub", "-p", p, "-V", "mqttv5", "-q", "1", "-t", "seed/props",
             "-m", "x", "-D", "connect", "session-expiry-interval", "60",
             "-D", "connect", "receive-maximum", "10", "-D", "connect", "maximum-packet-size", "1000",
             "-D", "publish", "user-property", "unit", "C", "-D", "publish", "message-expiry-interval", "30",
             "-D", "publish", "topic-alias", "1", "-D", "publish", "payload-format-indicator", "1"])
        run(["mosquitto_pub", "-p", p, "-t", "seed/empty", "-r", "-n"])
        runs.append(proxy.take())
        run([sys.executable, "-c", PAHO, p])
        runs.append(proxy.take())
        for streams in runs:
            for s in streams:
                for pk in packets(s):
                    write("decode", bytes([level(s)]) + pk)
            write("broker", broker_seed(streams))
    finally:
        roost.kill()
        roost.wait()


if __name__ == "__main__":
    main()
