#!/usr/bin/env python3
"""Memory of idle keep-alive TLS connections: opens N connections to a server, sends one
request on each, reads the whole response and keeps the connection open; waits; then does
the same for N more. Prints the server process's RSS growth per connection for each batch:
the second batch shows what a server that gives idle connections' buffers back lets new
connections reuse. With --h2 the connections speak HTTP/2 (ALPN h2): one stream each.

  benches/load/idle.py PORT PID [PATH] [N]      # e.g. 18441 $(pgrep -f 'labgate run') /100k 1000
  benches/load/idle.py --h2 PORT PID [PATH] [N]

Needs `ulimit -n` above 2N. Connects to 127.0.0.1 with SNI and Host app.bench.test (the
name benches/load/http.sh serves) and does not verify the certificate.
"""
import socket
import ssl
import sys
import time

HOST = "app.bench.test"
IDLE = 4  # seconds: past labgate's 2 s release of idle buffers


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise SystemExit(f"no process {pid}")


def one(ctx, port, path):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname=HOST)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("the server closed a connection")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lengths = [l.split(b":", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    if not lengths:
        raise SystemExit("a response without Content-Length")
    while len(body) < int(lengths[0]):
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("the server closed a connection mid-body")
        body += chunk
    return s


def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def literal(index, value):
    """An HPACK literal without indexing, its name from the static table, no Huffman."""
    value = value.encode()
    assert index < 15 and len(value) < 127
    return bytes([index, len(value)]) + value


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("the server closed a connection")
        buf += chunk
    return buf


def one_h2(ctx, port, path):
    """One HTTP/2 connection: preface, SETTINGS, one GET on stream 1 read to its end."""
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname=HOST)
    if s.selected_alpn_protocol() != "h2":
        raise SystemExit("the server did not choose h2")
    # :method GET (static 2), :scheme https (static 7), :path and :authority as literals.
    block = b"\x82\x87" + literal(4, path) + literal(1, HOST)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + frame(1, 0x5, 1, block))
    while True:
        head = recv_exact(s, 9)
        length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        recv_exact(s, length)
        if kind == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0))  # SETTINGS ACK
        if kind == 0 and length:
            # Give the connection's flow-control window back, as a browser does.
            s.sendall(frame(8, 0, 0, length.to_bytes(4, "big")))
        if kind == 7:
            raise SystemExit("the server sent GOAWAY")
        if stream == 1 and kind in (0, 1) and flags & 1:
            return s


def main():
    args = sys.argv[1:]
    h2 = args[:1] == ["--h2"]
    args = args[1:] if h2 else args
    if len(args) < 2:
        raise SystemExit(__doc__)
    port, pid = int(args[0]), int(args[1])
    path = args[2] if len(args) > 2 else "/1k"
    n = int(args[3]) if len(args) > 3 else 1000
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"] if h2 else ["http/1.1"])
    connect = one_h2 if h2 else one
    held = []
    before = rss_kib(pid)
    for batch in (1, 2):
        held += [connect(ctx, port, path) for _ in range(n)]
        time.sleep(IDLE)
        after = rss_kib(pid)
        print(f"{'h2 ' if h2 else ''}{path} batch {batch}: +{(after - before) / n:.1f} KiB per idle connection")
        before = after


main()
