#!/usr/bin/python3
"""A DNS client for tests/pair.rs that asks without pause, as a LAN's stub resolvers do.

    dns_client.py SERVER NAME EXPECTED TIMEOUT

Asks SERVER (port 53, UDP, a new socket and source port per query, like a stub) for NAME's A
record, one query at a time, until it is killed; at most one query per 10 ms. One line per query
on stdout, flushed at once:

    right MICROS          NOERROR, one answer: the A record EXPECTED
    silent MICROS         no answer within TIMEOUT seconds, or the port refused (ICMP)
    wrong MICROS HEX      any other answer, the whole message in hex

MICROS is how long the query took. One long-lived process, not one dig per query: starting dig
on a loaded machine takes up to 2 s, which would be measured as an outage.
"""
import socket
import struct
import sys
import time


def query(qid: int, name: str) -> bytes:
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split("."))
    # id, flags (RD), 1 question; QTYPE A, QCLASS IN.
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + b"\0\x01\0\x01"


def judge(qid: int, reply: bytes, want: bytes) -> bool:
    """NOERROR, one answer and nothing else, whose last record is IN A `want`."""
    if len(reply) < 12 + 14:
        return False
    rid, flags, _qd, an, ns, ar = struct.unpack(">HHHHHH", reply[:12])
    return (
        rid == qid
        and flags & 0x8000 != 0
        and flags & 0x000F == 0
        and (an, ns, ar) == (1, 0, 0)
        # TYPE A, CLASS IN, (TTL), RDLENGTH 4, RDATA
        and reply[-14:-10] == b"\0\x01\0\x01"
        and reply[-6:-4] == b"\0\x04"
        and reply[-4:] == want
    )


def main() -> None:
    server, name, expected, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    want = socket.inet_aton(expected)
    qid = 0
    while True:
        qid = (qid + 1) & 0xFFFF
        start = time.monotonic()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        try:
            s.connect((server, 53))
            s.send(query(qid, name))
            reply = s.recv(4096)
            outcome = "right" if judge(qid, reply, want) else "wrong"
        except (socket.timeout, ConnectionRefusedError, OSError):
            reply, outcome = b"", "silent"
        finally:
            s.close()
        took = time.monotonic() - start
        line = f"{outcome} {int(took * 1e6)}"
        if outcome == "wrong":
            line += " " + reply.hex()
        print(line, flush=True)
        if took < 0.01:
            time.sleep(0.01 - took)


if __name__ == "__main__":
    main()
