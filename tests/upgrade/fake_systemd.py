#!/usr/bin/env python3
"""systemd's side of one Type=notify service with a file descriptor store, for
tests/upgrade.rs (the test machine's PID 1 is not systemd, so `systemctl restart` cannot be
run there). It follows sd_notify(3) and sd_listen_fds(3): the service gets NOTIFY_SOCKET and
FDSTORE; descriptors it sends with FDSTORE=1 are kept under their FDNAME (FDSTOREREMOVE=1
drops one); on a restart the service gets SIGTERM, and once it exited the next one is started
with the kept descriptors from fd 3 on, LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID.

Usage: fake_systemd.py NOTIFY_PATH COMMAND...
stdin: `restart` restarts the service; end of input stops it and exits.
stdout: `ready PID FDS` each time a process says READY=1 (FDS: descriptors it was given).
"""
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading

path, command = sys.argv[1], sys.argv[2:]
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(path)
store = {}  # FDNAME -> fd (several fds may share a name: keep each)
lock = threading.Lock()
ready = threading.Condition(lock)
said_ready = [False]


def listen():
    while True:
        msg, fds, _, _ = socket.recv_fds(notify, 4096, 64)
        for fd in fds:
            os.set_inheritable(fd, False)
        fields = dict(l.split("=", 1) for l in msg.decode().splitlines() if "=" in l)
        with lock:
            if fields.get("FDSTORE") == "1":
                name = fields.get("FDNAME", "stored")
                for fd in fds:
                    # systemd ignores a descriptor it already holds (the same socket).
                    same = any(os.path.sameopenfile(fd, k) for _, k in store.values())
                    if same:
                        os.close(fd)
                    else:
                        store[len(store)] = (name, fd)
            elif fields.get("FDSTOREREMOVE") == "1":
                name = fields.get("FDNAME")
                for k in [k for k, (n, _) in store.items() if n == name]:
                    os.close(store.pop(k)[1])
            else:
                for fd in fds:
                    os.close(fd)
            if fields.get("READY") == "1":
                said_ready[0] = True
                ready.notify_all()


def start():
    with lock:
        kept = list(store.values())
    env = dict(os.environ, NOTIFY_SOCKET=path, FDSTORE="64")
    fds = [fd for _, fd in kept]
    if kept:
        env["LISTEN_FDS"] = str(len(kept))
        env["LISTEN_FDNAMES"] = ":".join(n for n, _ in kept)

    def place():
        # The kept descriptors at 3, 4, ...: first out of the way, then in place (dup2
        # clears close-on-exec on the copy; the rest stay close-on-exec).
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1000) for fd in fds]
        for i, fd in enumerate(moved):
            os.dup2(fd, 3 + i)

    # LISTEN_PID is the service's own pid: the shell's, which exec keeps.
    argv = ["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"'] + command if kept else command
    return subprocess.Popen(argv, env=env, preexec_fn=place if kept else None,
                            close_fds=False, stdin=subprocess.DEVNULL,
                            stdout=sys.stderr), len(kept)


def wait_ready(proc, given):
    with lock:
        while not said_ready[0] and proc.poll() is None:
            ready.wait(0.1)
        said_ready[0] = False
    if proc.poll() is not None:
        print(f"exited {proc.returncode}", flush=True)
        sys.exit(1)
    print(f"ready {proc.pid} {given}", flush=True)


threading.Thread(target=listen, daemon=True).start()
proc, given = start()
wait_ready(proc, given)
for line in sys.stdin:
    if line.strip() == "restart":
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        proc, given = start()
        wait_ready(proc, given)
proc.send_signal(signal.SIGTERM)
proc.wait()
