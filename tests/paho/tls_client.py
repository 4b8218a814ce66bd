"""paho-mqtt (2.x) over TLS, driven by tests/tls.rs.

Usage:
  tls_client.py PORT CAFILE 311|5 [CERTFILE KEYFILE]
      connect to 127.0.0.1:PORT over TLS, trusting CAFILE (and presenting
      the client certificate when given), subscribe to tls/paho at QoS 1
      and publish to it at QoS 1. Prints "PAHO TLS OK" and exits 0 once the
      message came back; prints "FAIL: ..." and exits 1 otherwise.

Every wait is bounded; a watchdog ends the process after WATCHDOG seconds.
"""

import os
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion

WAIT = 5.0
WATCHDOG = 9.0
PAYLOAD = b"over tls"


def fail(msg):
    print("FAIL: " + msg, flush=True)
    os._exit(1)


def main():
    port, cafile, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    certfile, keyfile = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else (None, None)
    timer = threading.Timer(WATCHDOG, lambda: fail("watchdog"))
    timer.daemon = True
    timer.start()

    protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="paho-tls-" + version,
        protocol=protocol,
    )
    client.tls_set(ca_certs=cafile, certfile=certfile, keyfile=keyfile)
    got = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            fail("CONNACK " + str(reason_code))
        client.subscribe("tls/paho", qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            fail("SUBACK " + str(reason_codes))
        client.publish("tls/paho", PAYLOAD, qos=1)

    def on_message(client, userdata, msg):
        if msg.payload == PAYLOAD:
            got.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect("127.0.0.1", port, keepalive=30)
    except Exception as e:  # the TLS handshake failing lands here
        fail("connect: %r" % e)
    client.loop_start()
    if not got.wait(WAIT):
        fail("own message not received")
    client.disconnect()
    client.loop_stop()
    print("PAHO TLS OK", flush=True)


main()
