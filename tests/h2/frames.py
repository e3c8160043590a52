#!/usr/bin/python3
"""HTTP/2 conformance and security cases for labgate's HTTPS listener, sent as raw frames.

Run by tests/h2.rs against the real binary; one JSON object per case on stdout:

    {"case": "9113/6.5/SETTINGS with ACK and payload -> FRAME_SIZE_ERROR", "group": "conformance",
     "pass": true, "observed": "GOAWAY FRAME_SIZE_ERROR", "ms": 12, "path": "/case/...",
     "forwardable": false, "numbers": {}}

Each case is named by the section it checks (RFC 9113 for HTTP/2, RFC 7541 for HPACK) and what
the RFC requires. The cases follow h2spec's (RFC 7540 numbering there, RFC 9113 here) and add
what a reverse proxy must also refuse or bound. Acceptance follows h2spec's verifiers, stricter
where h2spec is lax:

- connection error: a GOAWAY with one of the codes, or the connection closed (h2spec accepts a
  bare close: a GOAWAY is a SHOULD). A GOAWAY with another code fails the case (h2spec keeps
  waiting and then accepts the close).
- stream error: RST_STREAM on the stream with one of the codes, a GOAWAY with one of them, or the
  connection closed. Another code fails the case. A response may come first (a server may
  answer before it reads the frame at fault), as h2spec allows.
- malformed request (RFC 9113 8.1.1): a stream error of type PROTOCOL_ERROR, or a 400 response
  ("a server MAY send an HTTP response prior to closing or resetting the stream"). When the
  header section alone is at fault, any other response fails the case, and the request must
  never reach the backend: tests/h2.rs checks that with the case's `path` and `x-case` field
  (`forwardable: false`).
- accepted: a response on the stream with status 200 (h2spec takes any HEADERS frame: behind a
  proxy a 502 would pass).

Nothing is skipped: where h2spec skips (no SETTINGS_MAX_CONCURRENT_STREAMS advertised) the case
fails. Every wait has a deadline (`--timeout`, 5 s by default); "then nothing" in an outcome
means the deadline passed.

Besides the RFC cases: `limits` (labgate's HTTP/1.1 header limits), `security` (floods, with
labgate's memory and CPU from /proc: --pid, --jobs 1), `timeouts` (clients stopping half way),
`flow` (a slow reader among fast ones), `exchange` (how each response ends: labgate's pages
while a request body is still coming, backends failing before and after their head, retries;
it needs, on the same host, a service at `/down` whose backend refuses connections, one at
`/answer-first` that takes 64 KiB of request body, and one at `/drop-if-reused` with a backend
of its own).

Needs Debian's python3-h2 (for its hpack package): `apt-get install python3-h2`.
"""

import argparse
import concurrent.futures
import json
import os
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time

try:
    import hpack
    import hpack.hpack as hpack_raw
    import hpack.huffman as hpack_huffman
    import hpack.huffman_constants as hpack_codes
except ImportError:
    sys.exit("frames.py needs python3-hpack: apt-get install python3-h2 (scripts/test.sh does)")

# Frame types (RFC 9113 6) and flags.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
TYPE_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
              "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes (RFC 9113 7).
ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
          "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
          "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
          "HTTP_1_1_REQUIRED"]
(NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED,
 FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR) = range(10)
ENHANCE_YOUR_CALM = 0xb

# SETTINGS identifiers.
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65535
MAX_FRAME = 16384
# h2spec's --max-header-length default: the size of each dummy field value.
DUMMY_LEN = 4000


def error_name(code):
    return ERRORS[code] if code < len(ERRORS) else f"0x{code:x}"


def frame(kind, flags, stream, payload=b""):
    """One frame's bytes; the length is the payload's (raw cases write their own headers)."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def settings_payload(pairs):
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


def huffman(data):
    return hpack_huffman.HuffmanEncoder(
        hpack_codes.REQUEST_CODES, hpack_codes.REQUEST_CODES_LENGTH).encode(data)


def hpack_int(value, prefix_bits, first_byte_flags=0):
    out = bytearray(hpack_raw.encode_integer(value, prefix_bits))
    out[0] |= first_byte_flags
    return bytes(out)


def hpack_string(data, use_huffman=False):
    if isinstance(data, str):
        data = data.encode()
    if use_huffman:
        data = huffman(data)
        return hpack_int(len(data), 7, 0x80) + data
    return hpack_int(len(data), 7) + data


def literal(name, value, kind="without", use_huffman=False):
    """A literal field (RFC 7541 6.2): `name` an int (static index) or a new name; `kind` is
    `incremental` (6.2.1), `without` (6.2.2) or `never` (6.2.3) indexing."""
    prefix, flags = {"incremental": (6, 0x40), "without": (4, 0x00), "never": (4, 0x10)}[kind]
    if isinstance(name, int):
        return hpack_int(name, prefix, flags) + hpack_string(value, use_huffman)
    return bytes([flags]) + hpack_string(name, use_huffman) + hpack_string(value, use_huffman)


def plain_block(fields):
    """A header block of literals without indexing: it leaves the dynamic table untouched."""
    return b"".join(literal(n, v) for n, v in fields)


class Event:
    """What the connection saw next: a frame, the connection closing, or nothing in time."""

    def __init__(self, kind, frame_type=None, flags=0, stream=0, payload=b"", fields=None):
        self.kind = kind
        self.type = frame_type
        self.flags = flags
        self.stream = stream
        self.payload = payload
        self.fields = fields

    def is_frame(self, frame_type):
        return self.kind == "frame" and self.type == frame_type

    @property
    def code(self):
        """The error code of a GOAWAY or RST_STREAM."""
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        return struct.unpack(">I", self.payload[:4])[0]

    @property
    def status(self):
        for name, value in self.fields or []:
            if name == ":status":
                return value
        return None

    def describe(self):
        if self.kind != "frame":
            return self.kind
        if self.type == GOAWAY:
            return f"GOAWAY {error_name(self.code)}"
        if self.type == RST_STREAM:
            return f"RST_STREAM {error_name(self.code)} on stream {self.stream}"
        if self.type == HEADERS:
            return f"response {self.status} on stream {self.stream}"
        name = TYPE_NAMES[self.type] if self.type < len(TYPE_NAMES) else f"type 0x{self.type:x}"
        return f"{name} on stream {self.stream}"


class Conn:
    """One TLS connection with ALPN h2 and the client side of HTTP/2, frame by frame."""

    def __init__(self, opts, timeout=None, rcvbuf=None):
        self.opts = opts
        self.timeout = timeout or opts.timeout
        ctx = ssl.create_default_context(cafile=opts.ca)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before the connect: the window the server sees is this small from the start.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(self.timeout)
        raw.connect(("127.0.0.1", opts.port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=opts.host)
        if self.sock.selected_alpn_protocol() != "h2":
            raise RuntimeError(f"ALPN gave {self.sock.selected_alpn_protocol()!r}, not h2")
        self.buf = bytearray()
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.closed = False
        self.send_failed = False
        self.server_settings = {}
        # As h2spec: give back what DATA frames take, so windows never run dry by accident.
        self.auto_window = True
        self.block = None  # (stream, fragments) of a response header block in progress
        self.received = {}  # stream -> DATA bytes received
        self.prefaced = False  # no automatic answers before the client preface
        self.ended = set()  # streams the server ended
        self.answers = {}  # stream -> (final status, when its HEADERS came)
        self.resets = {}  # stream -> (RST_STREAM code, when it came)
        self.ended_at = {}  # stream -> when the server ended it
        # What the server's windows let this client send: WINDOW_UPDATE increments per
        # stream (0: the connection) and flow-controlled octets sent.
        self.credit = {}
        self.sent = {}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # Sending.

    def send(self, data):
        """Sends bytes; false once the connection is gone (the server may close it first)."""
        if self.send_failed:
            return False
        self.prefaced = self.prefaced or data.startswith(PREFACE)
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError, ValueError):
            self.send_failed = True
            return False

    def write(self, kind, flags, stream, payload=b""):
        return self.send(frame(kind, flags, stream, payload))

    def encode(self, fields, use_huffman=True):
        return self.encoder.encode(fields, huffman=use_huffman)

    def headers(self, stream, fields=None, block=None, end_stream=True, end_headers=True,
                priority=None, pad=None):
        block = self.encode(fields) if block is None else block
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        payload = block
        if priority is not None:
            dep, weight, exclusive = priority
            flags |= PRIORITY_FLAG
            payload = struct.pack(">IB", dep | (0x80000000 if exclusive else 0), weight - 1) \
                + payload
        if pad is not None:
            flags |= PADDED
            payload = bytes([len(pad)]) + payload + pad
        return self.write(HEADERS, flags, stream, payload)

    def continuation(self, stream, block, end_headers=True):
        return self.write(CONTINUATION, END_HEADERS if end_headers else 0, stream, block)

    def data(self, stream, payload, end_stream=True, pad=None):
        flags = END_STREAM if end_stream else 0
        if pad is not None:
            flags |= PADDED
            payload = bytes([len(pad)]) + payload + pad
        for counted in {0, stream}:
            self.sent[counted] = self.sent.get(counted, 0) + len(payload)
        return self.write(DATA, flags, stream, payload)

    def send_window(self, stream):
        """What the server's windows let this client send on `stream` now."""
        initial = self.server_settings.get(INITIAL_WINDOW_SIZE, DEFAULT_WINDOW)
        conn = DEFAULT_WINDOW + self.credit.get(0, 0) - self.sent.get(0, 0)
        own = initial + self.credit.get(stream, 0) - self.sent.get(stream, 0)
        return min(conn, own)

    def upload(self, stream, size, end_stream, deadline):
        """Sends `size` octets of request body on `stream` as the server's windows allow,
        waiting for WINDOW_UPDATE until `deadline`; the octets sent."""
        left = size
        while left:
            room = min(self.send_window(stream), left, MAX_FRAME)
            if room <= 0:
                ev = self.event(max(deadline - time.monotonic(), 0))
                if ev.kind != "frame" or stream in self.resets:
                    break
                continue
            if not self.data(stream, b"u" * room, end_stream=end_stream and room == left):
                break
            left -= room
        return size - left

    def settings(self, pairs=(), ack=False):
        return self.write(SETTINGS, ACK if ack else 0, 0, settings_payload(pairs))

    def ping(self, payload=b"\0" * 8, ack=False):
        return self.write(PING, ACK if ack else 0, 0, payload)

    def rst(self, stream, code=CANCEL):
        return self.write(RST_STREAM, 0, stream, struct.pack(">I", code))

    def priority(self, stream, dep=0, weight=256, exclusive=False):
        return self.write(PRIORITY, 0, stream,
                          struct.pack(">IB", dep | (0x80000000 if exclusive else 0), weight - 1))

    def window_update(self, stream, increment):
        return self.write(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment))

    def goaway(self, last_stream=0, code=NO_ERROR, debug=b""):
        return self.write(GOAWAY, 0, 0, struct.pack(">II", last_stream, code) + debug)

    # Receiving.

    def _frame_from_buffer(self):
        if len(self.buf) < 9:
            return None
        length = int.from_bytes(self.buf[:3], "big")
        if len(self.buf) < 9 + length:
            return None
        kind, flags, stream = struct.unpack(">BBI", self.buf[3:9])
        payload = bytes(self.buf[9:9 + length])
        del self.buf[:9 + length]
        return kind, flags, stream & 0x7FFFFFFF, payload

    def _read(self, timeout):
        """Reads more bytes within `timeout`; false on timeout."""
        if self.closed:
            return True
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except (OSError, ssl.SSLError):
            self.closed = True
            return True
        if not data:
            self.closed = True
        self.buf += data
        return True

    def trace(self, ev):
        if self.opts.trace:
            print(f"  [{self.opts.trace_name}] {what_of(ev) if ev.kind == 'frame' else ev.kind}",
                  file=sys.stderr)
        return ev

    def _process(self, kind, flags, stream, payload):
        """Bookkeeping for a received frame; the event to report, or None for one to skip."""
        if kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                if flags & PADDED:
                    pad = payload[0]
                    payload = payload[1:len(payload) - pad]
                if flags & PRIORITY_FLAG:
                    payload = payload[5:]
                self.block = (stream, flags, bytearray(payload))
            elif self.block is not None:
                self.block[2].extend(payload)
            if not flags & END_HEADERS:
                return None
            block_stream, block_flags, block = self.block or (stream, flags, bytearray())
            self.block = None
            fields = [(n.decode() if isinstance(n, bytes) else n,
                       v.decode() if isinstance(v, bytes) else v)
                      for n, v in self.decoder.decode(bytes(block), raw=True)]
            if block_flags & END_STREAM:
                self.ended.add(block_stream)
                self.ended_at.setdefault(block_stream, time.monotonic())
            ev = Event("frame", HEADERS, block_flags, block_stream, bytes(block), fields)
            if ev.status and not ev.status.startswith("1"):
                self.answers.setdefault(block_stream, (ev.status, time.monotonic()))
            return ev
        if kind == DATA:
            size = len(payload)
            body = payload
            if flags & PADDED and payload:
                body = payload[1:len(payload) - payload[0]]
            self.received[stream] = self.received.get(stream, 0) + len(body)
            if flags & END_STREAM:
                self.ended.add(stream)
                self.ended_at.setdefault(stream, time.monotonic())
            if self.auto_window and size and self.prefaced:
                self.window_update(0, size)
                if not flags & END_STREAM:
                    self.window_update(stream, size)
        if kind == WINDOW_UPDATE and len(payload) == 4:
            increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            self.credit[stream] = self.credit.get(stream, 0) + increment
        if kind == RST_STREAM and len(payload) == 4:
            self.resets.setdefault(stream, (struct.unpack(">I", payload)[0], time.monotonic()))
        if kind == SETTINGS and not flags & ACK:
            for i in range(0, len(payload) - len(payload) % 6, 6):
                k, v = struct.unpack(">HI", payload[i:i + 6])
                self.server_settings[k] = v
        if kind == SETTINGS and not flags & ACK and self.prefaced:
            self.settings(ack=True)
        if kind == PING and not flags & ACK and self.prefaced:
            self.ping(payload, ack=True)
        return Event("frame", kind, flags, stream, payload)

    def event(self, timeout=None):
        """The next event within `timeout`."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            parsed = self._frame_from_buffer()
            if parsed:
                ev = self._process(*parsed)
                if ev is not None:
                    return self.trace(ev)
                continue
            if self.closed:
                return self.trace(Event("closed"))
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                return self.trace(Event("timeout"))

    def poll(self):
        """Events already here, without waiting."""
        out = []
        while not self.closed:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable and self.sock.pending() == 0:
                break
            self._read(0.001)
        while True:
            ev = self.event(0) if (len(self.buf) >= 9 or self.closed) else None
            if ev is None or ev.kind == "timeout":
                break
            out.append(ev)
            if ev.kind == "closed":
                break
        return out

    def handshake(self, pairs=((INITIAL_WINDOW_SIZE, DEFAULT_WINDOW),)):
        """The client preface and SETTINGS, until both sides' SETTINGS are acknowledged."""
        self.send(PREFACE + frame(SETTINGS, 0, 0, settings_payload(pairs)))
        remote = local = False
        while not (remote and local):
            ev = self.event()
            if ev.kind != "frame":
                raise RuntimeError(f"handshake: {ev.describe()}")
            if ev.type == SETTINGS and ev.flags & ACK:
                local = True
            elif ev.type == SETTINGS:
                remote = True  # its values are in server_settings
        return self


# Verifiers: each returns (passed, observed).

def _waited(seen, what):
    """What decided the case; after a silence, also the last thing seen before it."""
    if what == "then nothing" and seen:
        return f"{seen[-1]}, then nothing"
    return what


def _noise(ev):
    """Frames that say nothing about the outcome."""
    return ev.kind == "frame" and ev.type in (SETTINGS, PING, WINDOW_UPDATE, DATA, PRIORITY)


def connection_error(c, *codes):
    seen = []
    while True:
        ev = c.event()
        if ev.kind == "closed":
            return True, _waited(seen, "connection closed")
        if ev.kind == "timeout":
            return False, _waited(seen, "then nothing")
        if ev.is_frame(GOAWAY):
            return ev.code in codes, _waited(seen, ev.describe())
        if not _noise(ev):
            seen.append(ev.describe())


def stream_error(c, stream, *codes, malformed=False, decisive=False):
    """A stream error on `stream` (or a connection error) with one of `codes`. `malformed`: a
    400 response passes too. `decisive`: another response on the stream fails the case at once
    (the request was processed); without it a response may come first, as h2spec allows, since
    a server may answer before it reads the frame at fault."""
    seen = []
    while True:
        ev = c.event()
        if ev.kind == "closed":
            return True, _waited(seen, "connection closed")
        if ev.kind == "timeout":
            return False, _waited(seen, "then nothing")
        if ev.is_frame(GOAWAY):
            return ev.code in codes, _waited(seen, ev.describe())
        if ev.is_frame(RST_STREAM) and ev.stream == stream:
            return ev.code in codes, _waited(seen, ev.describe())
        if ev.is_frame(HEADERS) and ev.stream == stream and ev.status:
            if malformed and ev.status == "400":
                return True, _waited(seen, ev.describe())
            if decisive:
                return False, _waited(seen, ev.describe())
        if not _noise(ev):
            seen.append(ev.describe())


def malformed(c, stream, decisive=True):
    """RFC 9113 8.1.1: a stream error of type PROTOCOL_ERROR or a 400 response. `decisive`
    when the header section alone is at fault: any other response fails the case."""
    return stream_error(c, stream, PROTOCOL_ERROR, malformed=True, decisive=decisive)


def response(c, stream, statuses=("200",)):
    """A final response on `stream` with one of `statuses`."""
    seen = []
    while True:
        ev = c.event()
        if ev.kind in ("closed", "timeout"):
            return False, _waited(seen, "connection closed" if ev.kind == "closed"
                                  else "then nothing")
        if ev.is_frame(HEADERS) and ev.stream == stream and ev.status \
                and not ev.status.startswith("1"):
            return ev.status in statuses, _waited(seen, ev.describe())
        if ev.is_frame(GOAWAY) or (ev.is_frame(RST_STREAM) and ev.stream == stream):
            return False, _waited(seen, ev.describe())
        if not _noise(ev):
            seen.append(ev.describe())


def of_type(c, frame_type, check=lambda ev: True, what=None):
    """The next frame of a type (h2spec's WaitEventByType), which must pass `check`."""
    seen = []
    while True:
        ev = c.event()
        if ev.kind in ("closed", "timeout"):
            return False, _waited(seen, "connection closed" if ev.kind == "closed"
                                  else f"no {what or TYPE_NAMES[frame_type]}")
        if ev.is_frame(frame_type):
            return check(ev), _waited(seen, what_of(ev))
        if ev.kind == "frame" and ev.type in (GOAWAY, RST_STREAM, HEADERS):
            seen.append(ev.describe())


def what_of(ev):
    if ev.is_frame(PING):
        return f"PING{' ACK' if ev.flags & ACK else ''} {ev.payload!r}"
    if ev.is_frame(SETTINGS):
        return f"SETTINGS{' ACK' if ev.flags & ACK else ''}"
    if ev.is_frame(DATA):
        return f"DATA of {len(ev.payload)} on stream {ev.stream}"
    return ev.describe()


def ping_ack(c, data):
    return of_type(c, PING, lambda ev: ev.flags & ACK and ev.payload == data, "PING ACK")


def settings_ack(c):
    return of_type(c, SETTINGS, lambda ev: bool(ev.flags & ACK), "SETTINGS ACK")


def ping_or_close(c, data):
    c.ping(data)
    seen = []
    while True:
        ev = c.event()
        if ev.kind == "closed":
            return True, _waited(seen, "connection closed")
        if ev.kind == "timeout":
            return False, _waited(seen, "then nothing")
        if ev.is_frame(PING) and ev.flags & ACK:
            return ev.payload == data, _waited(seen, what_of(ev))
        if ev.kind == "frame" and ev.type in (GOAWAY, RST_STREAM, HEADERS):
            seen.append(ev.describe())


def stream_close(c, stream):
    """h2spec's VerifyStreamClose: END_STREAM on the stream, or RST_STREAM NO_ERROR."""
    while True:
        ev = c.event()
        if ev.kind in ("closed", "timeout"):
            return False, ev.kind
        if ev.stream == stream and ev.kind == "frame" and (
                (ev.type in (DATA, HEADERS) and ev.flags & END_STREAM)
                or (ev.type == RST_STREAM and ev.code == NO_ERROR)):
            return True, "stream closed"


def data_of_length(c, stream, length):
    return of_type(c, DATA, lambda ev: ev.stream == stream and len(ev.payload) == length,
                   f"DATA of {length} on stream {stream}")


# The cases.

class Case:
    def __init__(self, name, group, fn, forwardable):
        self.name = name
        self.group = group
        self.fn = fn
        self.forwardable = forwardable
        self.slug = re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")[:100]
        self.path = "/case/" + self.slug


CASES = []


def case(name, group="conformance", forwardable=True):
    """Registers a case. `forwardable=False`: its header section alone makes the request
    malformed, so it must never reach the backend."""
    def register(fn):
        CASES.append(Case(name, group, fn, forwardable))
        return fn
    return register


class Run:
    """What a case gets: options, its path, connections, and a place for numbers."""

    def __init__(self, opts, this):
        self.opts = opts
        self.case = this
        self.numbers = {}
        self.conns = []

    @property
    def authority(self):
        return f"{self.opts.host}:{self.opts.port}"

    def common(self, method="GET", path=None, extra=(), marker=None):
        """h2spec's CommonHeaders plus the case marker (`x-case`) the backend check looks
        for."""
        return [(":method", method), (":scheme", "https"), (":path", path or self.case.path),
                (":authority", self.authority), ("x-case", marker or self.case.slug)] \
            + list(extra)

    def conn(self, handshake=True, **kw):
        c = Conn(self.opts, **kw)
        self.conns.append(c)
        return c.handshake() if handshake else c


def dummy(n):
    return [(f"x-dummy{i}", "x" * DUMMY_LEN) for i in range(n)]


# RFC 9113 3.4: HTTP/2 Connection Preface.

@case("9113/3.4/client preface -> server SETTINGS first")
def _(t):
    c = t.conn(handshake=False)
    c.send(PREFACE + frame(SETTINGS, 0, 0, settings_payload([(INITIAL_WINDOW_SIZE, 65535)])))
    ev = c.event()
    return ev.is_frame(SETTINGS) and not ev.flags & ACK, what_of(ev)


@case("9113/3.4/invalid preface -> PROTOCOL_ERROR")
def _(t):
    c = t.conn(handshake=False)
    c.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    return connection_error(c, PROTOCOL_ERROR)


# 4.1: Frame Format.

@case("9113/4.1/unknown frame type -> ignored")
def _(t):
    c = t.conn()
    c.send(frame(0x16, 0, 0, b"\0" * 8))
    c.ping(b"\0" * 8)
    return ping_ack(c, b"\0" * 8)


@case("9113/4.1/undefined flags -> ignored")
def _(t):
    c = t.conn()
    c.write(PING, 0x16, 0, b"\0" * 8)
    return ping_ack(c, b"\0" * 8)


@case("9113/4.1/reserved bit in the stream identifier -> ignored")
def _(t):
    c = t.conn()
    c.send(frame(PING, 0x16, 0x80000000, b"\0" * 8))
    return ping_ack(c, b"\0" * 8)


# 4.2: Frame Size.

@case("9113/4.2/DATA of 2^14 octets -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.data(1, b"x" * MAX_FRAME)
    return response(c, 1)


@case("9113/4.2/DATA larger than SETTINGS_MAX_FRAME_SIZE -> FRAME_SIZE_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.data(1, b"x" * (MAX_FRAME + 1))
    return stream_error(c, 1, FRAME_SIZE_ERROR)


@case("9113/4.2/HEADERS larger than SETTINGS_MAX_FRAME_SIZE -> FRAME_SIZE_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common() + dummy(5))
    return connection_error(c, FRAME_SIZE_ERROR)


# 4.3: Field Section Compression and Decompression.

@case("9113/4.3/invalid header block fragment -> COMPRESSION_ERROR")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x40")
    return connection_error(c, COMPRESSION_ERROR)


@case("9113/4.3/PRIORITY inside a header block -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_stream=False, end_headers=False)
    c.priority(1, 0, 256)
    c.continuation(1, c.encode(dummy(1)))
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/4.3/HEADERS of another stream inside a header block -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    fields = t.common()
    c.headers(1, fields, end_stream=False, end_headers=False)
    c.headers(3, fields)
    c.continuation(1, c.encode(dummy(1)))
    return connection_error(c, PROTOCOL_ERROR)


# 5.1: Stream States.

@case("9113/5.1/DATA on idle stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.data(1, b"test")
    # h2spec accepts STREAM_CLOSED too (a stream error suffices there).
    return stream_error(c, 1, PROTOCOL_ERROR, STREAM_CLOSED)


@case("9113/5.1/RST_STREAM on idle stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.rst(1)
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/5.1/WINDOW_UPDATE on idle stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.window_update(1, 100)
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/5.1/CONTINUATION on idle stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.continuation(1, c.encode(t.common()))
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/5.1/DATA on half-closed (remote) stream -> STREAM_CLOSED")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    c.data(1, b"test")
    return stream_error(c, 1, STREAM_CLOSED)


@case("9113/5.1/HEADERS on half-closed (remote) stream -> STREAM_CLOSED")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    c.headers(1, t.common())
    return stream_error(c, 1, STREAM_CLOSED)


@case("9113/5.1/CONTINUATION on half-closed (remote) stream -> STREAM_CLOSED or PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    block = c.encode(t.common())
    c.headers(1, block=block)
    c.continuation(1, block)
    return stream_error(c, 1, STREAM_CLOSED, PROTOCOL_ERROR)


@case("9113/5.1/DATA after RST_STREAM -> STREAM_CLOSED")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_stream=False)
    c.rst(1)
    c.data(1, b"test")
    return stream_error(c, 1, STREAM_CLOSED)


@case("9113/5.1/HEADERS after RST_STREAM -> STREAM_CLOSED")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_stream=False)
    c.rst(1)
    c.headers(1, t.common())
    return stream_error(c, 1, STREAM_CLOSED)


@case("9113/5.1/CONTINUATION after RST_STREAM -> STREAM_CLOSED or PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_stream=False)
    c.rst(1)
    c.continuation(1, c.encode(dummy(1)))
    return stream_error(c, 1, STREAM_CLOSED, PROTOCOL_ERROR)


@case("9113/5.1/DATA on closed stream -> STREAM_CLOSED")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    ok, seen = stream_close(c, 1)
    if not ok:
        return False, f"the first response never ended: {seen}"
    c.data(1, b"test")
    return stream_error(c, 1, STREAM_CLOSED)


@case("9113/5.1/HEADERS on closed stream -> STREAM_CLOSED")
def _(t):
    c = t.conn()
    block = c.encode(t.common())
    c.headers(1, block=block)
    ok, seen = stream_close(c, 1)
    if not ok:
        return False, f"the first response never ended: {seen}"
    c.headers(1, block=block)
    return connection_error(c, STREAM_CLOSED)


@case("9113/5.1/CONTINUATION on closed stream -> STREAM_CLOSED or PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    ok, seen = stream_close(c, 1)
    if not ok:
        return False, f"the first response never ended: {seen}"
    c.continuation(1, c.encode(dummy(1)))
    return connection_error(c, STREAM_CLOSED, PROTOCOL_ERROR)


@case("9113/5.1/PRIORITY on idle stream -> accepted")
def _(t):
    c = t.conn()
    c.priority(1, 0, 256)
    c.ping(b"h2prio\0\0")
    return ping_ack(c, b"h2prio\0\0")


@case("9113/5.1/WINDOW_UPDATE on half-closed (remote) stream -> accepted")
def _(t):
    c = t.conn(handshake=False)
    c.handshake(((INITIAL_WINDOW_SIZE, 0),))
    c.headers(1, t.common())
    c.window_update(1, 1)
    return of_type(c, DATA, lambda ev: ev.stream == 1)


@case("9113/5.1/PRIORITY on half-closed (remote) stream -> accepted")
def _(t):
    c = t.conn(handshake=False)
    c.handshake(((INITIAL_WINDOW_SIZE, 0),))
    c.headers(1, t.common())
    c.priority(1, 0, 256)
    c.window_update(1, 1)
    return of_type(c, DATA, lambda ev: ev.stream == 1)


@case("9113/5.1/RST_STREAM on half-closed (remote) stream -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    c.rst(1)
    return ping_or_close(c, b"h2rst\0\0\0")


@case("9113/5.1/PRIORITY on closed stream -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    ok, seen = stream_close(c, 1)
    if not ok:
        return False, f"the first response never ended: {seen}"
    c.priority(1, 0, 256)
    c.ping(b"h2prio\0\0")
    return ping_ack(c, b"h2prio\0\0")


# 5.1.1: Stream Identifiers.

@case("9113/5.1.1/even-numbered stream identifier -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(2, t.common())
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/5.1.1/stream identifier lower than a previous one -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(5, t.common())
    c.headers(3, t.common())
    return connection_error(c, PROTOCOL_ERROR)


# 5.1.2: Stream Concurrency.

@case("9113/5.1.2/streams beyond SETTINGS_MAX_CONCURRENT_STREAMS -> REFUSED_STREAM or "
      "PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    limit = c.server_settings.get(MAX_CONCURRENT_STREAMS)
    if limit is None:
        return False, "SETTINGS_MAX_CONCURRENT_STREAMS not advertised"
    t.numbers["max_concurrent_streams"] = limit
    if limit > 1024:
        return False, f"SETTINGS_MAX_CONCURRENT_STREAMS {limit}: not a bound"
    # As h2spec: a zero window holds every response open.
    c.settings([(INITIAL_WINDOW_SIZE, 0)])
    block = c.encode(t.common())
    for i in range(limit + 1):
        c.headers(1 + 2 * i, block=block)
    return stream_error(c, 1 + 2 * limit, REFUSED_STREAM, PROTOCOL_ERROR)


# 5.3.1: Background on Priority in RFC 7540 (a stream cannot depend on itself).

@case("9113/5.3.1/HEADERS depending on its own stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), priority=(1, 256, False))
    return stream_error(c, 1, PROTOCOL_ERROR)


@case("9113/5.3.1/PRIORITY depending on its own stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.priority(1, 1, 256)
    return stream_error(c, 1, PROTOCOL_ERROR)


# 5.4.1: Connection Error Handling.

@case("9113/5.4.1/invalid PING -> connection closed")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x08\x06\x00\x00\x00\x00\x03" + b"\0" * 8)
    while True:
        ev = c.event()
        if ev.kind == "closed":
            return True, "connection closed"
        if ev.kind == "timeout":
            return False, "not closed"


@case("9113/5.4.1/invalid PING -> GOAWAY before the close")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x08\x06\x00\x00\x00\x00\x03" + b"\0" * 8)
    return of_type(c, GOAWAY, lambda ev: ev.code == PROTOCOL_ERROR)


# 5.5: Extending HTTP/2.

@case("9113/5.5/unknown extension frame -> ignored")
def _(t):
    c = t.conn()
    c.send(frame(0x16, 0, 0, b"\0" * 8))
    c.ping(b"h2ext\0\0\0")
    return ping_ack(c, b"h2ext\0\0\0")


@case("9113/5.5/unknown extension frame inside a header block -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_headers=False)
    c.send(frame(0x16, 0, 0, b"\0" * 8))
    return connection_error(c, PROTOCOL_ERROR)


# 6.1: DATA.

@case("9113/6.1/DATA -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.data(1, b"test")
    return response(c, 1)


@case("9113/6.1/DATA in several frames -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.data(1, b"test", end_stream=False)
    c.data(1, b"test")
    return response(c, 1)


@case("9113/6.1/padded DATA -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.data(1, b"test", pad=b"\0" * 5)
    return response(c, 1)


@case("9113/6.1/DATA on stream 0 -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.data(0, b"test")
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.1/DATA on a stream neither open nor half-closed (local) -> STREAM_CLOSED")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"))
    c.data(1, b"test")
    return stream_error(c, 1, STREAM_CLOSED)


@case("9113/6.1/DATA with a pad length over its payload -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST", extra=[("content-length", "4")]), end_stream=False)
    c.send(b"\x00\x00\x05\x00\x09\x00\x00\x00\x01" + b"\x06\x54\x65\x73\x74")
    return connection_error(c, PROTOCOL_ERROR)


# 6.2: HEADERS.

@case("9113/6.2/HEADERS -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    return response(c, 1)


@case("9113/6.2/padded HEADERS -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), pad=b"\0" * 8)
    return response(c, 1)


@case("9113/6.2/HEADERS with priority -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), priority=(0, 255, False))
    return response(c, 1)


@case("9113/6.2/HEADERS on stream 0 -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(0, t.common())
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.2/HEADERS with a pad length over its payload -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    block = c.encode(t.common())
    head = bytearray(b"\x00\x00\x00\x01\x0d\x00\x00\x00\x01")
    head[2] = len(block) + 1
    c.send(bytes(head) + bytes([len(block)]) + block)
    return stream_error(c, 1, PROTOCOL_ERROR)


# 6.3: PRIORITY.

for weight, dep, exclusive, what in [(1, 0, False, "weight 1"), (256, 0, False, "weight 256"),
                                     (256, 3, False, "a dependency"),
                                     (256, 0, True, "the exclusive flag")]:
    def make(weight=weight, dep=dep, exclusive=exclusive):
        def run(t):
            c = t.conn()
            c.priority(1, dep, weight, exclusive)
            c.headers(1, t.common())
            return response(c, 1)
        return run
    case(f"9113/6.3/PRIORITY with {what} -> accepted")(make())


@case("9113/6.3/PRIORITY on an idle stream, then HEADERS on a lower one -> accepted")
def _(t):
    c = t.conn()
    c.priority(3, 0, 256)
    c.headers(1, t.common())
    return response(c, 1)


@case("9113/6.3/PRIORITY on stream 0 -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.priority(0, 0, 256)
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.3/PRIORITY of a length other than 5 -> FRAME_SIZE_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    c.send(b"\x00\x00\x04\x02\x00\x00\x00\x00\x01" + b"\x80\x00\x00\x01")
    return stream_error(c, 1, FRAME_SIZE_ERROR)


# 6.4: RST_STREAM.

@case("9113/6.4/RST_STREAM -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.rst(1)
    return ping_or_close(c, b"\0" * 8)


@case("9113/6.4/RST_STREAM on stream 0 -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.rst(0)
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.4/RST_STREAM of a length other than 4 -> FRAME_SIZE_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    c.send(b"\x00\x00\x03\x03\x00\x00\x00\x00\x01" + b"\0\0\0")
    return stream_error(c, 1, FRAME_SIZE_ERROR)


# 6.5: SETTINGS.

@case("9113/6.5/SETTINGS -> accepted")
def _(t):
    c = t.conn()
    c.settings([(HEADER_TABLE_SIZE, 4096), (ENABLE_PUSH, 0), (MAX_CONCURRENT_STREAMS, 100),
                (INITIAL_WINDOW_SIZE, 65535), (MAX_FRAME_SIZE, 16384),
                (MAX_HEADER_LIST_SIZE, 65535)])
    return settings_ack(c)


@case("9113/6.5/SETTINGS with ACK and payload -> FRAME_SIZE_ERROR")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x01\x04\x01\x00\x00\x00\x00" + b"\x00")
    return connection_error(c, FRAME_SIZE_ERROR)


@case("9113/6.5/SETTINGS on a stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x06\x04\x00\x00\x00\x00\x01" + b"\x00\x03\x00\x00\x00\x64")
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.5/SETTINGS of a length not a multiple of 6 -> FRAME_SIZE_ERROR")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x03\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00")
    # As h2spec: PROTOCOL_ERROR too.
    return stream_error(c, 0, PROTOCOL_ERROR, FRAME_SIZE_ERROR)


# 6.5.2: Defined Settings.

for setting, value, code, what in [
        (ENABLE_PUSH, 2, PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH of 2 -> PROTOCOL_ERROR"),
        (INITIAL_WINDOW_SIZE, 2**31, FLOW_CONTROL_ERROR,
         "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1 -> FLOW_CONTROL_ERROR"),
        (MAX_FRAME_SIZE, 16383, PROTOCOL_ERROR,
         "SETTINGS_MAX_FRAME_SIZE under 2^14 -> PROTOCOL_ERROR"),
        (MAX_FRAME_SIZE, 2**24, PROTOCOL_ERROR,
         "SETTINGS_MAX_FRAME_SIZE over 2^24-1 -> PROTOCOL_ERROR")]:
    def make(setting=setting, value=value, code=code):
        def run(t):
            c = t.conn()
            c.settings([(setting, value)])
            return connection_error(c, code)
        return run
    case(f"9113/6.5.2/{what}")(make())


@case("9113/6.5.2/unknown SETTINGS identifier -> ignored")
def _(t):
    c = t.conn()
    c.settings([(0xFF, 1)])
    c.ping(b"\0" * 8)
    return ping_ack(c, b"\0" * 8)


# 6.5.3: Settings Synchronization.

@case("9113/6.5.3/SETTINGS_INITIAL_WINDOW_SIZE twice in one frame -> the last applies")
def _(t):
    c = t.conn()
    c.settings([(INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)])
    ok, seen = settings_ack(c)
    if not ok:
        return False, seen
    c.headers(1, t.common())
    return data_of_length(c, 1, 1)


@case("9113/6.5.3/SETTINGS -> SETTINGS ACK")
def _(t):
    c = t.conn()
    c.settings([(ENABLE_PUSH, 0)])
    return settings_ack(c)


# 6.7: PING.

@case("9113/6.7/PING -> PING ACK with the same payload")
def _(t):
    c = t.conn()
    c.ping(b"h2spec\0\0")
    return ping_ack(c, b"h2spec\0\0")


@case("9113/6.7/PING ACK -> not answered")
def _(t):
    c = t.conn()
    c.ping(b"invalid\0", ack=True)
    c.ping(b"h2spec\0\0")
    return ping_ack(c, b"h2spec\0\0")


@case("9113/6.7/PING on a stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"\0" * 8)
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.7/PING of a length other than 8 -> FRAME_SIZE_ERROR")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x06\x06\x00\x00\x00\x00\x00" + b"\0" * 6)
    return connection_error(c, FRAME_SIZE_ERROR)


# 6.8: GOAWAY.

@case("9113/6.8/GOAWAY -> accepted")
def _(t):
    c = t.conn()
    c.goaway(0, NO_ERROR, b"h2spec")
    return ping_or_close(c, b"\0" * 8)


@case("9113/6.8/GOAWAY on a stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x08\x07\x00\x00\x00\x00\x01" + b"\0" * 8)
    return connection_error(c, PROTOCOL_ERROR)


# 6.9: WINDOW_UPDATE.

@case("9113/6.9/WINDOW_UPDATE on the connection -> accepted")
def _(t):
    c = t.conn()
    c.window_update(0, 1)
    c.ping(b"\0" * 8)
    return ping_ack(c, b"\0" * 8)


@case("9113/6.9/WINDOW_UPDATE on a stream -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.window_update(1, 1)
    c.data(1, b"test")
    return response(c, 1)


@case("9113/6.9/WINDOW_UPDATE of 0 on the connection -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.window_update(0, 0)
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.9/WINDOW_UPDATE of 0 on a stream -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_stream=False)
    c.window_update(1, 0)
    return stream_error(c, 1, PROTOCOL_ERROR)


@case("9113/6.9/WINDOW_UPDATE of a length other than 4 -> FRAME_SIZE_ERROR")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x03\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x01")
    return connection_error(c, FRAME_SIZE_ERROR)


# 6.9.1: The Flow-Control Window.

@case("9113/6.9.1/SETTINGS_INITIAL_WINDOW_SIZE of 1 -> DATA of 1 octet")
def _(t):
    c = t.conn()
    c.settings([(INITIAL_WINDOW_SIZE, 1)])
    ok, seen = settings_ack(c)
    if not ok:
        return False, seen
    c.headers(1, t.common())
    return data_of_length(c, 1, 1)


@case("9113/6.9.1/connection window over 2^31-1 -> FLOW_CONTROL_ERROR")
def _(t):
    c = t.conn()
    c.window_update(0, 2**31 - 1)
    c.window_update(0, 2**31 - 1)
    # h2spec wants the GOAWAY itself here (a MUST in 6.9.1).
    return of_type(c, GOAWAY, lambda ev: ev.code == FLOW_CONTROL_ERROR)


@case("9113/6.9.1/stream window over 2^31-1 -> FLOW_CONTROL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_stream=False)
    c.window_update(1, 2**31 - 1)
    c.window_update(1, 2**31 - 1)
    return of_type(c, RST_STREAM, lambda ev: ev.stream == 1 and ev.code == FLOW_CONTROL_ERROR)


# 6.9.2: Initial Flow-Control Window Size.

@case("9113/6.9.2/SETTINGS_INITIAL_WINDOW_SIZE raised after HEADERS -> DATA flows")
def _(t):
    c = t.conn()
    c.settings([(INITIAL_WINDOW_SIZE, 0)])
    ok, seen = settings_ack(c)
    if not ok:
        return False, seen
    c.headers(1, t.common())
    c.settings([(INITIAL_WINDOW_SIZE, 1)])
    return data_of_length(c, 1, 1)


@case("9113/6.9.2/SETTINGS_INITIAL_WINDOW_SIZE lowered to a negative window -> tracked")
def _(t):
    c = t.conn()
    c.auto_window = False
    c.settings([(INITIAL_WINDOW_SIZE, 3)])
    ok, seen = settings_ack(c)
    if not ok:
        return False, seen
    c.headers(1, t.common())
    ok, seen = of_type(c, DATA, lambda ev: ev.stream == 1)
    if not ok:
        return False, seen
    # 3 octets sent; a window of 2 makes it -1, a WINDOW_UPDATE of 2 makes it 1.
    c.settings([(INITIAL_WINDOW_SIZE, 2)])
    ok, seen = settings_ack(c)
    if not ok:
        return False, seen
    c.window_update(0, 3)
    c.window_update(1, 2)
    return data_of_length(c, 1, 1)


# 6.10: CONTINUATION.

@case("9113/6.10/HEADERS and one CONTINUATION -> accepted")
def _(t):
    c = t.conn()
    block = c.encode(t.common())
    c.headers(1, block=block[:5], end_headers=False)
    c.continuation(1, block[5:])
    return response(c, 1)


@case("9113/6.10/HEADERS and two CONTINUATION -> accepted")
def _(t):
    c = t.conn()
    block = c.encode(t.common() + dummy(1))
    c.headers(1, block=block[:5], end_headers=False)
    c.continuation(1, block[5:10], end_headers=False)
    c.continuation(1, block[10:])
    return response(c, 1)


@case("9113/6.10/CONTINUATION followed by another frame type -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False, end_headers=False)
    c.continuation(1, c.encode(dummy(1)), end_headers=False)
    c.data(1, b"test")
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.10/CONTINUATION on stream 0 -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_headers=False)
    c.continuation(0, c.encode(dummy(1)))
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.10/CONTINUATION after HEADERS with END_HEADERS -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common())
    c.continuation(1, c.encode(dummy(1)))
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.10/CONTINUATION after CONTINUATION with END_HEADERS -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_headers=False)
    c.continuation(1, c.encode(dummy(1)))
    c.continuation(1, c.encode(dummy(1)))
    return connection_error(c, PROTOCOL_ERROR)


@case("9113/6.10/CONTINUATION after DATA -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False, end_headers=False)
    c.data(1, b"test")
    c.continuation(1, c.encode(dummy(1)), end_headers=False)
    c.continuation(0, c.encode(dummy(1)))
    return connection_error(c, PROTOCOL_ERROR)


# 7: Error Codes.

@case("9113/7/GOAWAY with an unknown error code -> nothing special")
def _(t):
    c = t.conn()
    c.goaway(0, 0xFF)
    return ping_or_close(c, b"h2spec\0\0")


@case("9113/7/RST_STREAM with an unknown error code -> nothing special")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.rst(1, 0xFF)
    return ping_or_close(c, b"\0" * 8)


# 8.1: HTTP Message Framing.

for method in ["GET", "HEAD", "POST"]:
    def make(method=method):
        def run(t):
            c = t.conn()
            c.headers(1, t.common(method), end_stream=method != "POST")
            if method == "POST":
                c.data(1, b"test")
            return response(c, 1)
        return run
    case(f"9113/8.1/{method} -> answered")(make())


@case("9113/8.1/POST with trailers -> answered")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.data(1, b"test", end_stream=False)
    c.headers(1, [("x-trailer", "ok")])
    return response(c, 1)


@case("9113/8.1/trailers without END_STREAM -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.data(1, b"test", end_stream=False)
    c.headers(1, [("x-test", "ok")], end_stream=False)
    return malformed(c, 1, decisive=False)


# 8.1.1: Malformed Messages (content-length).

@case("9113/8.1.1/content-length unlike the DATA length -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST", extra=[("content-length", "1")]), end_stream=False)
    c.data(1, b"test")
    return malformed(c, 1, decisive=False)


@case("9113/8.1.1/content-length unlike the sum of DATA lengths -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST", extra=[("content-length", "1")]), end_stream=False)
    c.data(1, b"test", end_stream=False)
    c.data(1, b"test")
    return malformed(c, 1, decisive=False)


@case("9113/8.1.1/content-length over the DATA at END_STREAM -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST", extra=[("content-length", "10")]), end_stream=False)
    c.data(1, b"test")
    return malformed(c, 1, decisive=False)


@case("9113/8.1.1/content-length on HEADERS with END_STREAM -> PROTOCOL_ERROR",
      forwardable=False)
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST", extra=[("content-length", "4")]))
    return malformed(c, 1)


# 8.2.1: Field Validity.

for field, what in [(("X-TEST", "ok"), "uppercase field name"),
                    (("x test", "ok"), "space in a field name"),
                    (("x:test", "ok"), "colon in a field name"),
                    (("x-test", "a\r\nx-injected: 1"), "CR LF in a field value"),
                    (("x-test", "a\nb"), "LF in a field value"),
                    (("x-test", "a\0b"), "NUL in a field value"),
                    (("x-test", " padded"), "leading space in a field value")]:
    def make(field=field):
        def run(t):
            c = t.conn()
            c.headers(1, block=c.encode(t.common()) + literal(*field))
            return malformed(c, 1)
        return run
    case(f"9113/8.2.1/{what} -> malformed", forwardable=False)(make())


# 8.2.2: Connection-Specific Header Fields.

for field in [("connection", "keep-alive"), ("keep-alive", "timeout=5"),
              ("proxy-connection", "keep-alive"), ("transfer-encoding", "chunked"),
              ("upgrade", "websocket")]:
    def make(field=field):
        def run(t):
            c = t.conn()
            method = "POST" if field[0] == "transfer-encoding" else "GET"
            c.headers(1, t.common(method, extra=[field]), end_stream=method == "GET")
            if method == "POST":
                c.data(1, b"5\r\nhello\r\n0\r\n\r\n")
            return malformed(c, 1)
        return run
    case(f"9113/8.2.2/{field[0]} -> malformed", forwardable=False)(make())


@case("9113/8.2.2/te other than trailers -> malformed", forwardable=False)
def _(t):
    c = t.conn()
    c.headers(1, t.common(extra=[("trailers", "test"), ("te", "trailers, deflate")]))
    return malformed(c, 1)


@case("9113/8.2.2/te: trailers -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, t.common(extra=[("te", "trailers")]))
    return response(c, 1)


# 8.3: HTTP Control Data (pseudo-header fields).

@case("9113/8.3/unknown pseudo-header -> malformed", forwardable=False)
def _(t):
    c = t.conn()
    c.headers(1, t.common(extra=[(":test", "ok")]))
    return malformed(c, 1)


@case("9113/8.3/response pseudo-header in a request -> malformed", forwardable=False)
def _(t):
    c = t.conn()
    c.headers(1, t.common(extra=[(":status", "200")]))
    return malformed(c, 1)


@case("9113/8.3/pseudo-header in trailers -> malformed")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    c.data(1, b"test", end_stream=False)
    c.headers(1, [(":method", "POST")])
    return malformed(c, 1, decisive=False)


@case("9113/8.3/pseudo-header after a regular field -> malformed", forwardable=False)
def _(t):
    c = t.conn()
    fields = t.common()
    c.headers(1, [("x-test", "ok")] + fields[:4] + fields[4:])
    return malformed(c, 1)


# 8.3.1: Request Pseudo-Header Fields.

def without(fields, name):
    return [f for f in fields if f[0] != name]


for name, mutate in [
        ("empty :path", lambda f: [(n, "" if n == ":path" else v) for n, v in f]),
        ("missing :method", lambda f: without(f, ":method")),
        ("missing :scheme", lambda f: without(f, ":scheme")),
        ("missing :path", lambda f: without(f, ":path")),
        ("duplicate :method", lambda f: f[:4] + [(":method", "GET")] + f[4:]),
        ("duplicate :scheme", lambda f: f[:4] + [(":scheme", "https")] + f[4:]),
        ("duplicate :path", lambda f: f[:4] + [f[2]] + f[4:]),
        ("duplicate :authority", lambda f: f[:4] + [f[3]] + f[4:]),
        (":path without a leading slash", lambda f: [(n, v.lstrip("/") if n == ":path" else v)
                                                     for n, v in f]),
        # A fragment is never sent (RFC 9110 4.2.4): a backend could read the path past it
        # otherwise than routing did.
        (":path with a fragment (#)", lambda f: [(n, v + "#/../down/x" if n == ":path" else v)
                                                 for n, v in f])]:
    def make(mutate=mutate):
        def run(t):
            c = t.conn()
            c.headers(1, mutate(t.common()))
            return malformed(c, 1)
        return run
    case(f"9113/8.3.1/{name} -> malformed", forwardable=False)(make())


@case("9113/8.3.1/:authority and Host disagreeing -> malformed", forwardable=False)
def _(t):
    c = t.conn()
    c.headers(1, t.common(extra=[("host", "other.lab.test")]))
    return malformed(c, 1)


@case("9113/8.3.1/Host without :authority -> accepted")
def _(t):
    c = t.conn()
    fields = [(n, v) for n, v in t.common() if n != ":authority"] + [("host", t.authority)]
    c.headers(1, fields)
    return response(c, 1)


# 8.4: Server Push.

@case("9113/8.4/PUSH_PROMISE from a client -> PROTOCOL_ERROR")
def _(t):
    c = t.conn()
    c.write(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 3) + c.encode(t.common()))
    return connection_error(c, PROTOCOL_ERROR)


# 8.5: The CONNECT Method.

@case("9113/8.5/CONNECT with :scheme and :path -> malformed", forwardable=False)
def _(t):
    c = t.conn()
    c.headers(1, t.common("CONNECT"), end_stream=False)
    return malformed(c, 1)


# RFC 7541 (HPACK): accepted representations, as h2spec's generic cases.

HPACK_ACCEPTED = [
    ("indexed field", b"\xba"),  # user-agent, empty (static 58)
    ("literal with incremental indexing, indexed name", literal(58, "h2spec", "incremental")),
    ("literal with incremental indexing, indexed name, Huffman",
     literal(58, "h2spec", "incremental", True)),
    ("literal with incremental indexing, new name", literal("x-test", "h2spec", "incremental")),
    ("literal with incremental indexing, new name, Huffman",
     literal("x-test", "h2spec", "incremental", True)),
    ("literal without indexing, indexed name", literal(58, "h2spec", "without")),
    ("literal without indexing, indexed name, Huffman", literal(58, "h2spec", "without", True)),
    ("literal without indexing, new name", literal("x-test", "h2spec", "without")),
    ("literal without indexing, new name, Huffman", literal("x-test", "h2spec", "without", True)),
    ("literal never indexed, indexed name", literal(58, "h2spec", "never")),
    ("literal never indexed, indexed name, Huffman", literal(58, "h2spec", "never", True)),
    ("literal never indexed, new name", literal("x-test", "h2spec", "never")),
    ("literal never indexed, new name, Huffman", literal("x-test", "h2spec", "never", True)),
]
for what, rep in HPACK_ACCEPTED:
    section = "6.1" if what.startswith("indexed") else "6.2"

    def make(rep=rep):
        def run(t):
            c = t.conn()
            c.headers(1, block=c.encode(t.common()) + rep)
            return response(c, 1)
        return run
    case(f"7541/{section}/{what} -> accepted")(make())


@case("7541/2.3.2/field from the dynamic table -> accepted")
def _(t):
    c = t.conn()
    # Stream 1 inserts x-test into the dynamic table; stream 3 refers to it by index 62.
    c.headers(1, block=plain_block(t.common()) + literal("x-test", "dyn", "incremental"))
    ok, seen = response(c, 1)
    if not ok:
        return False, seen
    c.headers(3, block=plain_block(t.common()) + b"\xbe")
    return response(c, 3)


@case("7541/6.3/dynamic table size update -> accepted")
def _(t):
    c = t.conn()
    c.encoder.header_table_size = 128
    c.headers(1, t.common())
    return response(c, 1)


@case("7541/6.3/two dynamic table size updates -> accepted")
def _(t):
    c = t.conn()
    c.headers(1, block=b"\x3f\x61\x3f\xe1\x1f" + c.encode(t.common()))
    return response(c, 1)


# RFC 7541: decoding errors (connection errors of type COMPRESSION_ERROR, RFC 9113 4.3).

HPACK_ERRORS = [
    ("2.3.3/indexed field beyond the tables", b"\xc6"),
    ("2.3.3/literal whose name index is beyond the tables", b"\x7f\x07\x00"),
    ("4.2/dynamic table size update at the end of a block", b"\x21"),
    ("4.2/dynamic table size update after a field", b"\x82\x21"),
    ("5.1/integer past 2^32", b"\xff\xff\xff\xff\xff\xff\xff\x7f"),
    ("5.2/string longer than the block", b"\x40\x7f\x40"),
    ("5.2/Huffman padding longer than 7 bits",
     b"\x00\x85\xf2\xb2\x4a\x84\xff\x84\x49\x50\x9f\xff"),
    ("5.2/Huffman padding of zeros", b"\x00\x85\xf2\xb2\x4a\x84\xff\x83\x49\x50\x90"),
    ("5.2/Huffman EOS symbol", b"\x00\x85\xf2\xb2\x4a\x84\xff\x87\x49\x51\xff\xff\xff\xfa\x7f"),
    ("6.1/indexed field of index 0", b"\x80"),
]
for what, rep in HPACK_ERRORS:
    def make(rep=rep):
        def run(t):
            c = t.conn()
            c.headers(1, block=c.encode(t.common()) + rep)
            return connection_error(c, COMPRESSION_ERROR)
        return run
    case(f"7541/{what} -> COMPRESSION_ERROR", forwardable=False)(make())


@case("7541/4.2/dynamic table size update over the limit -> COMPRESSION_ERROR",
      forwardable=False)
def _(t):
    c = t.conn()
    limit = c.server_settings.get(HEADER_TABLE_SIZE, 4096)
    c.headers(1, block=hpack_int(limit + 1, 5, 0x20) + plain_block(t.common()))
    return connection_error(c, COMPRESSION_ERROR)


@case("7541/4.3/entry evicted by a size update -> COMPRESSION_ERROR", forwardable=False)
def _(t):
    c = t.conn()
    setup = t.common(path=t.case.path + "/setup", marker="setup")
    c.headers(1, block=plain_block(setup) + literal("x-test", "dyn", "incremental"))
    ok, seen = response(c, 1)
    if not ok:
        return False, seen
    # Size 0 empties the table; index 62 then names nothing.
    c.headers(3, block=b"\x20" + plain_block(t.common()) + b"\xbe")
    return connection_error(c, COMPRESSION_ERROR)


# Field section limits: labgate answers an HTTP/1.1 head over 16 KiB or 96 fields with 431
# (proxy/src/head.rs); an HTTP/2 request must meet the same limits the same way.

@case("limits/17 KiB of header fields -> 431", group="limits", forwardable=False)
def _(t):
    c = t.conn()
    fields = [(f"x-big{i}", "b" * 1000) for i in range(17)]
    c.headers(1, block=plain_block(t.common() + fields[:8]), end_headers=False)
    c.continuation(1, plain_block(fields[8:]))
    return response(c, 1, ("431",))


@case("limits/97 header fields -> 431", group="limits", forwardable=False)
def _(t):
    c = t.conn()
    # x-case and 96 more regular fields; the pseudo-header fields are HTTP/1.1's request line.
    c.headers(1, block=plain_block(t.common() + [(f"x-f{i}", "v") for i in range(96)]))
    return response(c, 1, ("431",))


@case("limits/40 KiB header block (over SETTINGS_MAX_HEADER_LIST_SIZE) -> 431", group="limits",
      forwardable=False)
def _(t):
    c = t.conn()
    fields = [(f"x-big{i}", "b" * 1000) for i in range(40)]
    block = plain_block(t.common() + fields)
    c.headers(1, block=block[:MAX_FRAME], end_headers=False)
    rest = block[MAX_FRAME:]
    while rest:
        c.continuation(1, rest[:MAX_FRAME], end_headers=len(rest) <= MAX_FRAME)
        rest = rest[MAX_FRAME:]
    return response(c, 1, ("431",))


@case("limits/70 KiB header block (over the 64 KiB bound of an encoded block) -> ENHANCE_YOUR_CALM",
      group="limits", forwardable=False)
def _(t):
    # Decoding stops at the list's 16 KiB, but the encoded block is held until it ends: past
    # its bound the connection ends (a CONTINUATION flood of large frames looks the same).
    c = t.conn()
    fields = [(f"x-big{i}", "b" * 1000) for i in range(70)]
    block = plain_block(t.common() + fields)
    c.headers(1, block=block[:MAX_FRAME], end_headers=False)
    rest = block[MAX_FRAME:]
    while rest:
        c.continuation(1, rest[:MAX_FRAME], end_headers=len(rest) <= MAX_FRAME)
        rest = rest[MAX_FRAME:]
    return connection_error(c, ENHANCE_YOUR_CALM)


@case("limits/12 KiB in 80 header fields -> served", group="limits")
def _(t):
    c = t.conn()
    fields = [(f"x-f{i}", "v" * 150) for i in range(79)]
    c.headers(1, block=plain_block(t.common() + fields))
    return response(c, 1)


# Security: floods and abuse. Run one at a time (--jobs 1) against a labgate of their own:
# they measure its memory (VmRSS) and CPU time from /proc (--pid).

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")


class Watch:
    """Samples labgate's RSS every 20 ms until stopped: the peak, and the CPU time used."""

    def __init__(self, pid):
        self.pid = pid
        self.before = rss_kib(pid)
        self.peak = self.before
        self.cpu0 = cpu_ms(pid)
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self, numbers):
        """Records the numbers; true when the growth stayed within RSS_BOUND_KIB."""
        self.stop_flag.set()
        self.thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))
        growth = self.peak - self.before
        numbers.update(rss_before_kib=self.before, rss_peak_kib=self.peak,
                       rss_growth_kib=growth, cpu_ms=cpu_ms(self.pid) - self.cpu0)
        return growth <= RSS_BOUND_KIB


# SECURITY: memory a flood may add to labgate's resident set. Each flood is a few MiB to a few
# tens of MiB on the wire: a server that queues what it owes an unread peer, or keeps what it
# decodes, grows past this.
RSS_BOUND_KIB = 16 * 1024


def probe(t):
    """Another client's GET on a connection of its own: "200" or what it got instead."""
    start = time.monotonic()
    try:
        c = Conn(t.opts)
        try:
            c.handshake()
            c.headers(1, t.common(path=f"/probe/{t.case.slug}", marker="probe"))
            ok, seen = response(c, 1)
        finally:
            c.close()
        status = "200" if ok else seen
    except (OSError, RuntimeError) as e:
        status = f"failed: {e}"
    t.numbers["probe_seconds"] = round(time.monotonic() - start, 3)
    return status


def cut(ev):
    return ev.is_frame(GOAWAY) or ev.kind == "closed"


def goaway_detail(ev):
    if not ev.is_frame(GOAWAY):
        return ev.describe()
    last = struct.unpack(">I", ev.payload[:4])[0] & 0x7FFFFFFF
    return f"{ev.describe()} (last stream {last}, {ev.payload[8:]!r})"


def send_until_cut(c, chunks, pause=0.0, budget=10.0):
    """Sends each chunk of `chunks` (an iterator of (frames in it, bytes)), looking for a GOAWAY
    or the close after each, for up to `pause` seconds (0: only what is already there), until
    the chunks or the budget run out. A pause keeps what is in flight small, so the count is
    close to what the server read before it gave up. Returns (frames sent, the event that cut
    it off or None)."""
    c.sock.settimeout(5.0)
    start = time.monotonic()
    sent = 0
    for count, data in chunks:
        if time.monotonic() - start > budget:
            break
        if not c.send(data):
            break
        sent += count
        events = c.poll()
        until = time.monotonic() + pause
        while not any(cut(ev) for ev in events) and time.monotonic() < until:
            ev = c.event(until - time.monotonic())
            if ev.kind == "timeout":
                break
            events.append(ev)
        for ev in events:
            if cut(ev):
                return sent, ev
    # The last answer may still be on its way.
    while True:
        ev = c.event(1.0)
        if ev.kind != "frame" or cut(ev):
            return sent, ev if cut(ev) else None


def cut_off_verdict(t, sent, ev, limit, unit, growth_ok, status):
    """The verdict of a flood the server must cut off within `limit` units."""
    t.numbers[f"{unit}_sent"] = sent
    t.numbers["ended"] = goaway_detail(ev) if ev else "not cut off"
    ok = ev is not None and sent <= limit and growth_ok and status == "200"
    # Coarse on purpose (exact counts vary run to run): tests/h2.rs matches this text.
    verdict = "not cut off" if ev is None else \
        f"cut off ({ev.describe()})" if sent <= limit else \
        f"cut off late ({ev.describe()}, past {limit} {unit})"
    verdict += ", memory bounded" if growth_ok else ", RSS over bound"
    return ok, verdict + (", others served" if status == "200" else f", probe: {status}")


@case("security/rapid reset (CVE-2023-44487) -> cut off within 1000 streams, others served",
      group="security")
def _(t):
    c = t.conn()
    block = plain_block(t.common())

    def chunks():
        for first in range(0, 20000, 20):
            yield 20, b"".join(
                frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, block)
                + frame(RST_STREAM, 0, 1 + 2 * i, struct.pack(">I", CANCEL))
                for i in range(first, first + 20))
    watch = Watch(t.opts.pid)
    sent, ev = send_until_cut(c, chunks())
    growth_ok = watch.stop(t.numbers)
    status = probe(t)
    # What was written may be more than the server read before it gave up: its GOAWAY names
    # the last stream it took in.
    if ev is not None and ev.is_frame(GOAWAY):
        sent = min(sent, ((struct.unpack(">I", ev.payload[:4])[0] & 0x7FFFFFFF) + 1) // 2)
    return cut_off_verdict(t, sent, ev, 1000, "streams", growth_ok, status)


@case("security/CONTINUATION flood of 16 KiB frames -> cut off within 1 MiB", group="security")
def _(t):
    c = t.conn()
    c.headers(1, block=plain_block(t.common()), end_headers=False)
    # Each frame one whole field, so the block stays decodable at every frame; one frame at a
    # time, so little is in flight when the server gives up.
    data = frame(CONTINUATION, 0, 1, literal("x-flood", "f" * (MAX_FRAME - 16)))
    watch = Watch(t.opts.pid)
    sent, ev = send_until_cut(c, ((1, data) for _ in range(1024)), pause=0.05)
    growth_ok = watch.stop(t.numbers)
    status = probe(t)
    t.numbers["octets_sent"] = sent * len(data)
    return cut_off_verdict(t, sent, ev, 64, "frames", growth_ok, status)


@case("security/CONTINUATION flood of empty frames -> cut off within 1000 frames",
      group="security")
def _(t):
    c = t.conn()
    c.headers(1, block=plain_block(t.common()), end_headers=False)
    data = frame(CONTINUATION, 0, 1) * 10
    watch = Watch(t.opts.pid)
    sent, ev = send_until_cut(c, ((10, data) for _ in range(10000)), pause=0.02)
    growth_ok = watch.stop(t.numbers)
    return cut_off_verdict(t, sent, ev, 1000, "frames", growth_ok, probe(t))


@case("security/empty DATA flood (CVE-2019-9518) -> cut off within 10000 frames",
      group="security")
def _(t):
    c = t.conn()
    c.headers(1, t.common("POST"), end_stream=False)
    # A PING after every 100 frames, its ACK awaited: the count is what the server read.
    data = frame(DATA, 0, 1) * 100
    watch = Watch(t.opts.pid)
    sent, ev = 0, None
    while sent < 200000 and ev is None:
        c.send(data + frame(PING, 0, 0, struct.pack(">Q", sent)))
        sent += 100
        while True:
            got = c.event()
            if cut(got) or got.kind == "timeout":
                ev = got if cut(got) else None
                break
            if got.is_frame(PING) and got.flags & ACK:
                break
        if got.kind == "timeout":
            break
    growth_ok = watch.stop(t.numbers)
    return cut_off_verdict(t, sent, ev, 10000, "frames", growth_ok, probe(t))


@case("security/HPACK bomb (64 MiB from a 16 KiB block) -> 431 or an error, memory bounded",
      group="security")
def _(t):
    watch = Watch(t.opts.pid)
    outcomes = set()
    c = None
    stream = 1
    answered = True
    for _ in range(20):
        if c is None or c.closed or c.send_failed:
            c = t.conn()
            # A 4 KiB entry at index 62 of the dynamic table (4000 + 6 + 32 of 4096 octets).
            c.headers(1, block=plain_block(t.common()) +
                      literal("x-bomb", "b" * 4000, "incremental"))
            ok, seen = response(c, 1)
            if not ok:
                return False, f"the table-filling request: {seen}"
            stream = 3
        # Each 0xbe is one octet on the wire and 4 KiB decoded: 16,000 of them are 64 MiB.
        head = plain_block(t.common())
        c.headers(stream, block=head + b"\xbe" * (MAX_FRAME - len(head)))
        while True:
            ev = c.event()
            if ev.is_frame(HEADERS) and ev.stream == stream and ev.status:
                outcomes.add(ev.describe())
                answered = answered and ev.status == "431"
                break
            if (ev.is_frame(RST_STREAM) and ev.stream == stream) or cut(ev):
                outcomes.add(ev.describe())
                break
            if ev.kind == "timeout":
                outcomes.add("no answer")
                answered = False
                break
        stream += 2
    growth_ok = watch.stop(t.numbers)
    status = probe(t)
    seen = " / ".join(sorted(outcomes))
    t.numbers["outcomes"] = seen
    ok = answered and growth_ok and status == "200"
    return ok, f"{'answered' if answered else 'not answered'}: {seen}" + \
        (", memory bounded" if growth_ok else ", RSS over bound") + \
        (", others served" if status == "200" else f", probe: {status}")


def unread_flood(t, make, total):
    """Frames the server must answer, sent without reading the answers, from a connection whose
    receive buffer is small: the server's answers back up at once, and it must stop reading
    (backpressure) or cut the connection off rather than queue them. Another client is probed
    meanwhile. Passes when memory stays within RSS_BOUND_KIB and the probe is served."""
    c = t.conn(rcvbuf=4096)
    batch = 1000
    data = b"".join(make(i) for i in range(batch))
    watch = Watch(t.opts.pid)
    result = {}
    prober = threading.Thread(target=lambda: result.update(status=probe(t)), daemon=True)
    start = time.monotonic()
    c.sock.settimeout(2.0)
    sent, ended = 0, "all sent"
    while sent < total and time.monotonic() - start < 10:
        if sent == 20 * batch:
            prober.start()
        try:
            c.sock.sendall(data)
        except (socket.timeout, TimeoutError):
            ended = "backpressure"
            break
        except (OSError, ssl.SSLError):
            ended = "connection closed"
            break
        sent += batch
    if not prober.is_alive() and "status" not in result:
        prober.start()
    prober.join(t.opts.timeout * 3)
    growth_ok = watch.stop(t.numbers)
    status = result.get("status", "probe hung")
    t.numbers.update(frames_sent=sent, seconds=round(time.monotonic() - start, 2),
                     ended=ended)
    ok = growth_ok and status == "200"
    return ok, ("memory bounded" if growth_ok else "RSS over bound") + \
        (", others served" if status == "200" else f", probe: {status}")


@case("security/SETTINGS flood, ACKs unread -> memory bounded, others served",
      group="security")
def _(t):
    return unread_flood(t, lambda i: frame(SETTINGS, 0, 0), 2_000_000)


@case("security/PING flood, ACKs unread -> memory bounded, others served", group="security")
def _(t):
    return unread_flood(t, lambda i: frame(PING, 0, 0, struct.pack(">Q", i)), 2_000_000)


@case("security/WINDOW_UPDATE flood -> memory bounded, others served", group="security")
def _(t):
    return unread_flood(t, lambda i: frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)),
                        2_000_000)


# Timeouts: bounds on a client that stops half way. labgate gives an HTTP/1.1 client 10 s for
# its head (proxy/src/fast.rs HEAD_TIMEOUT) and an h2 client 10 s for its first bytes
# (proxy/src/preface.rs); an h2 client that stops inside its preface or a header block must be
# held no longer. Closed within 14 s passes (10 s and room for a loaded machine).

TIMEOUT_BOUND = 14.0


def closed_within(c, bound):
    start = time.monotonic()
    while time.monotonic() - start < bound:
        ev = c.event(bound - (time.monotonic() - start))
        if ev.kind == "closed":
            return True, "closed"
        if ev.kind == "timeout":
            break
    return False, f"still open after {bound:.0f} s"


@case("timeouts/TLS done, no preface -> closed within 10 s", group="timeouts")
def _(t):
    c = t.conn(handshake=False)
    start = time.monotonic()
    ok, seen = closed_within(c, TIMEOUT_BOUND)
    t.numbers["seconds"] = round(time.monotonic() - start, 2)
    return ok, seen


@case("timeouts/partial preface, then silence -> closed within 10 s", group="timeouts")
def _(t):
    c = t.conn(handshake=False)
    c.send(PREFACE[:16])
    start = time.monotonic()
    ok, seen = closed_within(c, TIMEOUT_BOUND)
    t.numbers["seconds"] = round(time.monotonic() - start, 2)
    return ok, seen


@case("timeouts/preface without SETTINGS, then silence -> closed within 10 s", group="timeouts")
def _(t):
    c = t.conn(handshake=False)
    c.send(PREFACE)
    start = time.monotonic()
    ok, seen = closed_within(c, TIMEOUT_BOUND)
    t.numbers["seconds"] = round(time.monotonic() - start, 2)
    return ok, seen


@case("timeouts/HEADERS without END_HEADERS left hanging -> closed within 10 s",
      group="timeouts", forwardable=False)
def _(t):
    c = t.conn()
    c.headers(1, t.common(), end_headers=False)
    start = time.monotonic()
    ok, seen = closed_within(c, TIMEOUT_BOUND)
    t.numbers["seconds"] = round(time.monotonic() - start, 2)
    return ok, seen


@case("timeouts/half a frame header left hanging -> closed within 10 s", group="timeouts")
def _(t):
    c = t.conn()
    c.send(b"\x00\x00\x08\x06")
    start = time.monotonic()
    ok, seen = closed_within(c, TIMEOUT_BOUND)
    t.numbers["seconds"] = round(time.monotonic() - start, 2)
    return ok, seen


# Flow: a stream its client reads slowly (no WINDOW_UPDATE for it) must not stall the others.

@case("flow/a stream without WINDOW_UPDATE does not stall the others", group="flow")
def _(t):
    c = t.conn(handshake=False)
    c.handshake(((INITIAL_WINDOW_SIZE, DEFAULT_WINDOW),))
    c.auto_window = False
    c.window_update(0, 64 << 20)  # the connection never runs dry
    slow = 1
    c.headers(slow, t.common(path="/bytes/262144"))
    others = {}
    for i in range(1, 13):
        size = [100, 10240, 131072, 204800][i % 4]
        others[1 + 2 * i] = size
        c.headers(1 + 2 * i, t.common(path=f"/bytes/{size}"))
    deadline = time.monotonic() + 20
    statuses = {}
    while time.monotonic() < deadline and not all(s in c.ended for s in others):
        ev = c.event(deadline - time.monotonic())
        if ev.kind != "frame":
            break
        if ev.type == HEADERS and ev.status:
            statuses[ev.stream] = ev.status
        if ev.type == DATA and ev.stream != slow and ev.payload and not ev.flags & END_STREAM:
            c.window_update(ev.stream, len(ev.payload))
        if ev.type in (GOAWAY, RST_STREAM):
            return False, ev.describe()
    done = [s for s in others if s in c.ended and c.received.get(s) == others[s]]
    t.numbers.update(others_done=len(done), slow_received=c.received.get(slow, 0))
    if len(done) != len(others):
        return False, f"{len(done)} of {len(others)} other streams complete"
    if c.received.get(slow, 0) > DEFAULT_WINDOW or slow in c.ended:
        return False, f"the slow stream got {c.received.get(slow, 0)} octets past its window"
    # Now the slow stream reads: it completes.
    c.window_update(slow, 262144)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and slow not in c.ended:
        ev = c.event(deadline - time.monotonic())
        if ev.kind != "frame":
            break
    if c.received.get(slow) != 262144 or any(v != "200" for v in statuses.values()):
        return False, f"slow stream {c.received.get(slow)} octets, statuses {statuses}"
    return True, "others complete while the slow stream waits; it completes after"


# Exchange: how each response ends. tests/h2.rs runs these against tests/support/backend.rs
# (its paths that misbehave: /status/<code>, /cut/<n>, /drop-if-reused/..., /answer-first/...)
# with, on the same host, a service at /down whose backend refuses connections (labgate
# answers there with its 502 page), one at /answer-first that takes 64 KiB of body, and one
# at /drop-if-reused with a backend of its own.

# labgate drains a request body still coming after its answer for 5 s (or 1 MiB), then resets
# the stream; 3 s more for a loaded machine.
DRAIN_BOUND = 5 + 3


def wait_until(c, done, deadline):
    """Reads events until `done()` holds, the connection closes or `deadline`; `done()`."""
    while not done():
        left = deadline - time.monotonic()
        if left <= 0 or c.event(left).kind != "frame":
            return done()
    return True


def status_of(c, stream):
    return c.answers.get(stream, (None, None))[0]


@case("exchange/pages to five unfinished 200 kB uploads give their window back -> "
      "a 100 kB upload completes", group="exchange")
def _(t):
    # Before labgate gave the window back, the 1 MB these uploads hold of the 1 MiB
    # connection window stayed taken and the next upload stalled.
    c = t.conn()
    deadline = time.monotonic() + 2 * t.opts.timeout
    uploads = [1, 3, 5, 7, 9]
    for stream in uploads:
        c.headers(stream, t.common("POST", path=f"/down/upload/{stream}"), end_stream=False)
        sent = c.upload(stream, 200_000, False, deadline)
        if sent < 200_000:
            return False, f"stream {stream} could send {sent} of 200000 octets"
    if not wait_until(c, lambda: all(s in c.answers for s in uploads), deadline):
        return False, f"answers {sorted(c.answers.items())}, then nothing"
    statuses = sorted({status_of(c, s) for s in uploads})
    if statuses != ["502"]:
        return False, f"the uploads got {statuses}, not 502"
    after = 11
    c.headers(after, t.common("POST", path="/upload/after-pages",
                              extra=[("content-length", "100000")]), end_stream=False)
    deadline = time.monotonic() + t.opts.timeout
    sent = c.upload(after, 100_000, True, deadline)
    if sent < 100_000:
        return False, f"the next upload stalled after {sent} of 100000 octets"
    wait_until(c, lambda: after in c.ended, deadline)
    return status_of(c, after) == "200" and after in c.ended, \
        f"five 502 pages, then the upload: {status_of(c, after)}" \
        f"{'' if after in c.ended else ', not ended'}"


@case("exchange/a page to an upload that goes on -> the page whole, its body drained, "
      "then RST_STREAM NO_ERROR", group="exchange")
def _(t):
    # The answer goes whole (END_STREAM) while the body keeps coming; the body is read and
    # dropped a while (a client such as curl loses an answer reset before it sent its body),
    # its window given back, then the stream is reset.
    c = t.conn()
    c.headers(1, t.common("POST", path="/down/goes-on"), end_stream=False)
    c.data(1, b"u" * 1000, end_stream=False)
    deadline = time.monotonic() + t.opts.timeout
    if not wait_until(c, lambda: 1 in c.ended or 1 in c.resets, deadline):
        return False, f"answer {status_of(c, 1)}, then nothing"
    if 1 in c.resets or status_of(c, 1) != "502":
        return False, f"answer {status_of(c, 1)}, reset {c.resets.get(1)} before its end"
    # More than the stream's window: it must come back while the body is drained.
    sent = c.upload(1, 300_000, False, time.monotonic() + t.opts.timeout)
    if sent < 300_000 and 1 not in c.resets:
        return False, f"the page whole; the body after it stalled at {sent} octets"
    ended = c.ended_at[1]
    wait_until(c, lambda: 1 in c.resets, ended + DRAIN_BOUND)
    if 1 not in c.resets:
        return False, f"the page whole, {sent} octets drained, then no RST_STREAM " \
            f"within {DRAIN_BOUND} s"
    code, at = c.resets[1]
    t.numbers.update(drained=sent, seconds=round(at - ended, 2))
    return code == NO_ERROR and sent == 300_000, \
        f"the page whole, {'the' if sent == 300_000 else 'part of the'} body drained, " \
        f"then RST_STREAM {error_name(code)}"


@case("exchange/a backend status HTTP/2 cannot carry (099) -> 502", group="exchange")
def _(t):
    c = t.conn()
    c.headers(1, t.common(path="/status/099"))
    return response(c, 1, ("502",))


def reset_after_head(c, stream, deadline):
    """A response whose head went before it failed: the stream is reset (a client must not
    take it for whole, nor wait for the rest)."""
    wait_until(c, lambda: stream in c.ended or stream in c.resets, deadline)
    got = f"response {status_of(c, stream)}, {c.received.get(stream, 0)} octets"
    if stream in c.ended:
        return False, f"{got}, then END_STREAM: a cut body passes as whole"
    if stream not in c.resets:
        return False, f"{got}, then nothing"
    return status_of(c, stream) == "200", \
        f"{got}, then RST_STREAM {error_name(c.resets[stream][0])}"


@case("exchange/a backend closing after its head and 10 of 100000 octets -> RST_STREAM",
      group="exchange")
def _(t):
    c = t.conn()
    c.headers(1, t.common(path="/cut/100000"))
    return reset_after_head(c, 1, time.monotonic() + t.opts.timeout)


@case("exchange/a request body over max_body after the backend's head -> RST_STREAM",
      group="exchange")
def _(t):
    # The service at /answer-first takes 64 KiB; its backend answers before reading the body.
    c = t.conn()
    c.headers(1, t.common("POST", path="/answer-first/over-max-body"), end_stream=False)
    deadline = time.monotonic() + t.opts.timeout
    if not wait_until(c, lambda: 1 in c.answers, deadline):
        return False, "no response head"
    c.upload(1, 100_000, True, deadline)
    return reset_after_head(c, 1, deadline)


def head_page(t, fields, statuses):
    """A HEAD request answered with one of labgate's pages: its HEADERS end the stream and no
    DATA follows (a PING answered after them shows none was queued)."""
    c = t.conn()
    c.headers(1, fields)
    ok, seen = response(c, 1, statuses)
    if not ok:
        return False, seen
    ended = 1 in c.ended  # by the HEADERS frame alone: nothing after it is read yet
    c.ping(b"headpage")
    ok, _ = ping_ack(c, b"headpage")
    octets = c.received.get(1, 0)
    if not ended or octets or not ok:
        return False, f"{seen} {'with' if ended else 'without'} END_STREAM, " \
            f"then {octets} octets of DATA"
    return True, f"{seen} with END_STREAM, no DATA"


@case("exchange/HEAD answered with a 502 page -> HEADERS with END_STREAM, no DATA",
      group="exchange")
def _(t):
    return head_page(t, t.common("HEAD", path="/down/head"), ("502",))


@case("exchange/HEAD for a host labgate does not serve -> HEADERS with END_STREAM, no DATA",
      group="exchange", forwardable=False)
def _(t):
    fields = [(n, "unknown.lab.test" if n == ":authority" else v) for n, v in t.common("HEAD")]
    return head_page(t, fields, ("421",))


@case("exchange/the backend drops a reused connection: a GET is retried -> 200, "
      "a POST is not -> 502", group="exchange")
def _(t):
    # One connection, one request at a time: the first fills labgate's idle pool (one pool per
    # thread, and a connection stays on its thread), the next two each take the pooled
    # backend connection, which the backend reads from and closes without answering.
    # tests/h2.rs gives /drop-if-reused a backend of its own (no other case takes its pooled
    # connections) and counts what reached it: the GET twice, the POST once.
    c = t.conn()
    seen = []
    for stream, method, path, want in [(1, "GET", "/drop-if-reused/first", "200"),
                                       (3, "GET", "/drop-if-reused/get", "200"),
                                       (5, "POST", "/drop-if-reused/post", "502")]:
        c.headers(stream, t.common(method, path=path))
        wait_until(c, lambda: stream in c.ended or stream in c.resets,
                   time.monotonic() + t.opts.timeout)
        got = status_of(c, stream)
        seen.append(f"{method} {got}{'' if stream in c.ended else ' unended'}")
        if got != want or stream not in c.ended:
            return False, ", ".join(seen)
    return True, ", ".join(seen)


# Running.

def run_case(opts, this):
    t = Run(opts, this)
    start = time.monotonic()
    try:
        ok, observed = this.fn(t)
    except Exception as e:  # a broken case fails loudly with what broke
        ok, observed = False, f"error: {type(e).__name__}: {e}"
    finally:
        for c in t.conns:
            c.close()
    return {"case": this.name, "group": this.group, "pass": bool(ok), "observed": observed,
            "ms": int((time.monotonic() - start) * 1000), "path": this.path,
            "slug": this.slug, "forwardable": this.forwardable, "numbers": t.numbers}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--group", action="append", help="run only these groups (repeatable)")
    p.add_argument("--case", help="run only cases whose name contains this")
    p.add_argument("--pid", type=int, help="labgate's pid, for the security group's numbers")
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per wait")
    p.add_argument("--list", action="store_true")
    p.add_argument("--trace", action="store_true", help="print every event on stderr")
    opts = p.parse_args()
    opts.trace_name = ""
    slugs = [c.slug for c in CASES]
    assert len(slugs) == len(set(slugs)), "case names must differ"
    cases = [c for c in CASES if (not opts.group or c.group in opts.group)
             and (not opts.case or opts.case in c.name)]
    if opts.list:
        for c in cases:
            print(c.name)
        return
    if any(c.group == "security" for c in cases) and not opts.pid:
        p.error("the security group needs --pid")
    lock = threading.Lock()

    def one(this):
        result = run_case(opts, this)
        with lock:
            print(json.dumps(result), flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        list(pool.map(one, cases))


if __name__ == "__main__":
    main()
