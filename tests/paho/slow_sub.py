"""A paho-mqtt (2.x) subscriber that reads slowly, for tests/flow.rs.

Usage:
  slow_sub.py PORT TOPIC COUNT DELAY_MS TIMEOUT_S
      MQTT 3.1.1 subscriber to TOPIC at QoS 0. Prints "SUBSCRIBED" once the
      SUBACK is in, then sleeps DELAY_MS milliseconds in on_message for every
      message (paho reads the socket on the same thread, so the broker sees
      a slow reader). Payloads start with a key up to the first space; the
      script ends when COUNT distinct keys have arrived or TIMEOUT_S seconds
      have passed, prints "GOT <distinct> <total>" and exits 0 when all COUNT
      came, 1 otherwise.
"""

import os
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion


def main():
    port, topic, count, delay_ms, timeout_s = sys.argv[1:6]
    count, delay, timeout_s = int(count), float(delay_ms) / 1000.0, float(timeout_s)
    seen = set()
    total = [0]
    done = threading.Event()

    def finish():
        print("GOT %d %d" % (len(seen), total[0]), flush=True)
        os._exit(0 if len(seen) == count else 1)

    def on_connect(client, userdata, flags, reason, props):
        client.subscribe(topic, qos=0)

    def on_subscribe(client, userdata, mid, reasons, props):
        print("SUBSCRIBED", flush=True)

    def on_message(client, userdata, msg):
        total[0] += 1
        seen.add(bytes(msg.payload).split(b" ", 1)[0])
        if len(seen) == count:
            done.set()
        time.sleep(delay)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id="slow-paho-%d" % os.getpid(),
        protocol=mqtt.MQTTv311,
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", int(port), keepalive=60)
    client.loop_start()
    done.wait(timeout_s)
    finish()


if __name__ == "__main__":
    main()
