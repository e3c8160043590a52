#!/usr/bin/env python3
"""Asks one name every INTERVAL seconds for DURATION seconds, each with a 1 s timeout, and
prints how many were answered with the expected address and the p50/p99 of their latency:
the well-behaved client during a flood (benches/load/flood.sh).

    probe.py PORT NAME ADDRESS DURATION [INTERVAL]
"""
import random
import socket
import struct
import sys
import time


def query(qid, name):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00\x00\x01\x00\x01"


def main():
    port, name, want = int(sys.argv[1]), sys.argv[2], socket.inet_aton(sys.argv[3])
    duration = float(sys.argv[4])
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.05
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    asked, times = 0, []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        qid = random.randrange(65536)
        t0 = time.monotonic()
        s.sendto(query(qid, name), ("127.0.0.1", port))
        asked += 1
        deadline = t0 + 1.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data = s.recv(4096)
            except socket.timeout:
                break
            if data[:2] == struct.pack(">H", qid):
                if data.endswith(want):
                    times.append(time.monotonic() - t0)
                break
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    times.sort()
    pct = lambda p: times[min(len(times) - 1, int(len(times) * p))] * 1000 if times else float("nan")
    print(f"{len(times)} {asked} {pct(0.5):.2f} {pct(0.99):.2f}")


main()
