#!/usr/bin/env python3
"""Memory of idle keep-alive TLS connections: opens N connections to a server, sends one
request on each, reads the whole response and keeps the connection open; waits; then does
the same for N more. Prints the server process's RSS growth per connection for each batch:
the second batch shows what a server that gives idle connections' buffers back lets new
connections reuse.

  benches/load/idle.py PORT PID [PATH] [N]      # e.g. 18441 $(pgrep -f 'labgate run') /100k 1000

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


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    path = sys.argv[3] if len(sys.argv) > 3 else "/1k"
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = []
    before = rss_kib(pid)
    for batch in (1, 2):
        held += [one(ctx, port, path) for _ in range(n)]
        time.sleep(IDLE)
        after = rss_kib(pid)
        print(f"{path} batch {batch}: +{(after - before) / n:.1f} KiB per idle connection")
        before = after


main()
