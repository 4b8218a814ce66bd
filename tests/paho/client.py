"""paho-mqtt (2.x) client driven by tests/clients_paho.rs.

Usage:
  client.py roundtrip PORT 311|5 [EXPECTED_MAX_PACKET_SIZE] (v5: none if left out)
      connect a subscriber (empty client id) and a publisher, subscribe to
      home/# at QoS 2, publish at QoS 0, 1 and 2 and check what arrives;
      for MQTT 5 also check the CONNACK properties and that user properties
      arrive unchanged and in order. Prints "PAHO OK ..." and exits 0, or
      prints "FAIL: ..." and exits 1.
  takeover PORT
      MQTT 5 session takeover: the old connection must get DISCONNECT 0x8E
      and its will must be published.
  sub PORT TOPIC
      MQTT 5 subscriber at QoS 1: prints "SUBSCRIBED" once the SUBACK is
      in, then "GOT <topic> <payload> <qos> <retain>" for the first message.
  pub PORT TOPIC PAYLOAD
      MQTT 5 publisher: one QoS 1 message; prints "PUBLISHED" once it is
      acknowledged.

PORT is a port number for MQTT over TCP, ws:PORT for MQTT over
WebSockets (path /mqtt, subprotocol mqtt), or wss:PORT:CAFILE for MQTT over
WebSockets over TLS, trusting the CA certificates in CAFILE.

Every wait is bounded; a watchdog ends the process after WATCHDOG seconds.
"""

import os
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = 5.0
WATCHDOG = 9.0


def fail(msg):
    print("FAIL: " + msg, flush=True)
    os._exit(1)


def watchdog():
    t = threading.Timer(WATCHDOG, lambda: (print("FAIL: watchdog", flush=True), os._exit(3)))
    t.daemon = True
    t.start()


class Conn:
    def __init__(self, port, protocol, client_id, will=None):
        self.protocol = protocol
        transport, cafile = "tcp", None
        if str(port).startswith("ws:"):
            transport, port = "websockets", int(port[3:])
        elif str(port).startswith("wss:"):
            _, port, cafile = port.split(":", 2)
            transport, port = "websockets", int(port)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            transport=transport,
        )
        if cafile is not None:
            self.client.tls_set(ca_certs=cafile)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connack = None
        self.suback = None
        self.messages = []
        self.got = threading.Condition()
        self.client.on_connect = self.on_connect
        self.client.on_subscribe = self.on_subscribe
        self.client.on_message = self.on_message
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self.client.on_disconnect = self.on_disconnect
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        if protocol == mqtt.MQTTv5:
            self.client.connect("127.0.0.1", port, keepalive=30, clean_start=True)
        else:
            self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(WAIT):
            fail("no CONNACK")
        reason, _flags, _props = self.connack
        if reason.is_failure:
            fail("CONNACK %s" % reason)

    def on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = (reason_code, flags, properties)
        self.connected.set()

    def on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code
        self.disconnected.set()

    def on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.suback = [rc.value for rc in reason_codes]
        self.subscribed.set()

    def on_message(self, client, userdata, msg):
        with self.got:
            self.messages.append(msg)
            self.got.notify_all()

    def subscribe(self, topic, qos):
        if self.protocol == mqtt.MQTTv5:
            self.client.subscribe(topic, options=SubscribeOptions(qos=qos))
        else:
            self.client.subscribe(topic, qos)
        if not self.subscribed.wait(WAIT):
            fail("no SUBACK")
        if self.suback != [qos]:
            fail("SUBACK %r, wanted [%d]" % (self.suback, qos))

    def next_message(self):
        with self.got:
            if not self.got.wait_for(lambda: self.messages, WAIT):
                fail("no message")
            return self.messages.pop(0)

    def publish(self, topic, payload, qos, properties=None):
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        info.wait_for_publish(WAIT)
        if not info.is_published():
            fail("publish at QoS %d not acknowledged" % qos)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def roundtrip(port, version, expected_max_packet):
    protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
    # Empty client id: v5 -> assigned by the broker; 3.1.1 with clean
    # session -> accepted (the broker assigns one internally).
    sub = Conn(port, protocol, "")
    pub = Conn(port, protocol, "paho-pub-%d" % os.getpid())
    details = []
    if protocol == mqtt.MQTTv5:
        props = sub.connack[2]
        assigned = getattr(props, "AssignedClientIdentifier", None)
        if not assigned:
            fail("no Assigned Client Identifier in CONNACK: %s" % props)
        tam = getattr(props, "TopicAliasMaximum", None)
        if tam != 10:
            fail("Topic Alias Maximum %r, wanted 10" % tam)
        # Absent: no limit but MQTT's own.
        mps = getattr(props, "MaximumPacketSize", None)
        if mps != expected_max_packet:
            fail("Maximum Packet Size %r, wanted %r" % (mps, expected_max_packet))
        details.append("assigned=%s" % assigned)
        details.append("max_packet=%s" % mps)
    sub.subscribe("home/#", 2)
    user = [("sensor", "kitchen"), ("unit", "C"), ("sensor", "second"), ("empty", "")]
    for qos in (0, 1, 2):
        payload = ("21.%d" % qos).encode()
        properties = None
        if protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = user
            properties.ContentType = "text/plain"
        pub.publish("home/kitchen/temp", payload, qos, properties)
        msg = sub.next_message()
        if msg.topic != "home/kitchen/temp" or msg.payload != payload:
            fail("got %r %r, wanted home/kitchen/temp %r" % (msg.topic, msg.payload, payload))
        if msg.qos != qos:
            fail("delivered at QoS %d, wanted %d" % (msg.qos, qos))
        if msg.retain:
            fail("live delivery with retain 1")
        if protocol == mqtt.MQTTv5:
            got = getattr(msg.properties, "UserProperty", None)
            if got != user:
                fail("user properties %r, wanted %r" % (got, user))
            if getattr(msg.properties, "ContentType", None) != "text/plain":
                fail("content type %r" % getattr(msg.properties, "ContentType", None))
    sub.close()
    pub.close()
    print("PAHO OK v%s %s" % (version, " ".join(details)), flush=True)


def subscriber(port, topic):
    sub = Conn(port, mqtt.MQTTv5, "paho-sub-%d" % os.getpid())
    sub.subscribe(topic, 1)
    print("SUBSCRIBED", flush=True)
    msg = sub.next_message()
    print(
        "GOT %s %s %d %d" % (msg.topic, msg.payload.decode(), msg.qos, int(msg.retain)),
        flush=True,
    )
    sub.close()


def publisher(port, topic, payload):
    pub = Conn(port, mqtt.MQTTv5, "paho-pub-%d" % os.getpid())
    pub.publish(topic, payload.encode(), 1)
    print("PUBLISHED", flush=True)
    pub.close()


def takeover(port):
    """Same client id twice (v5): the first connection gets DISCONNECT 0x8E
    and its will is published."""
    watcher = Conn(port, mqtt.MQTTv5, "paho-watch-%d" % os.getpid())
    watcher.subscribe("will/#", 1)
    cid = "paho-twin-%d" % os.getpid()
    old = Conn(port, mqtt.MQTTv5, cid, will=("will/twin", b"taken over"))
    new = Conn(port, mqtt.MQTTv5, cid)
    if not old.disconnected.wait(WAIT):
        fail("old connection not disconnected")
    old.client.loop_stop()
    reason = old.disconnect_reason
    if reason is None or reason.value != 0x8E:
        fail("old connection disconnected with %r, wanted 0x8E Session taken over" % reason)
    msg = watcher.next_message()
    if msg.topic != "will/twin" or msg.payload != b"taken over":
        fail("will: %r %r" % (msg.topic, msg.payload))
    new.close()
    watcher.close()
    print("PAHO OK takeover reason=0x%02X" % reason.value, flush=True)


def main():
    watchdog()
    mode, port = sys.argv[1], sys.argv[2]
    if not port.startswith(("ws:", "wss:")):
        port = int(port)
    if mode == "roundtrip":
        expected = int(sys.argv[4]) if len(sys.argv) > 4 else None
        roundtrip(port, sys.argv[3], expected)
    elif mode == "takeover":
        takeover(port)
    elif mode == "sub":
        subscriber(port, sys.argv[3])
    elif mode == "pub":
        publisher(port, sys.argv[3], sys.argv[4])
    else:
        fail("unknown mode " + mode)
    os._exit(0)


if __name__ == "__main__":
    main()
