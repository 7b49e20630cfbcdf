#!/usr/bin/env python3
"""auth_rate.py: AUTH round trips per second, submitd's own user table
against Dovecot's auth service (auth.backend = dovecot); docs/performance.md.

Starts a private Dovecot (tests/integration/dovecot.py: passwd-file, an
auth-client listener) and two submitd (tests/integration/harness.py), one
per backend, both on the loopback with smtp.auth_cleartext_loopback, so that
TLS is not part of the figure. Each session: connect, EHLO, AUTH PLAIN (one
user, the same password), QUIT; -c sessions at once from one asyncio loop,
-n sessions per round, the median of -r rounds. The internal backend's
credential cache is warm (one login before measuring), as it is in
production for a returning user; Dovecot keeps no cache in this setup
(passwd-file with PLAIN passwords is cheap to read).

Run as root (Dovecot switches users):
  SUBMITD_BUILD_DIR=build python3 tests/bench/auth_rate.py [-n 2000] [-c 1,20] [-r 3]
"""

import argparse
import asyncio
import base64
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from dovecot import Dovecot  # noqa: E402
from harness import Submitd  # noqa: E402

USER = "bench@example.org"
PASSWORD = "bench pass phrase"


async def reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def session(port, auth_line):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if await reply(reader) != 220:
            raise RuntimeError("no greeting")
        writer.write(b"EHLO bench.example.org\r\n")
        if await reply(reader) != 250:
            raise RuntimeError("EHLO refused")
        writer.write(auth_line)
        code = await reply(reader)
        if code != 235:
            raise RuntimeError("AUTH answered %d" % code)
        writer.write(b"QUIT\r\n")
        await reply(reader)
    finally:
        writer.close()


async def round_(port, n, c):
    auth_line = b"AUTH PLAIN " + base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()) + b"\r\n"
    left = n

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            await session(port, auth_line)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(c)))
    return n / (time.monotonic() - t0)


def measure(port, n, c, rounds):
    asyncio.run(round_(port, min(n, 50), c))      # warm-up
    return [asyncio.run(round_(port, n, c)) for _ in range(rounds)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="sessions per round")
    ap.add_argument("-c", default="1,20", help="concurrency levels, comma separated")
    ap.add_argument("-r", type=int, default=3, help="rounds (the median is printed)")
    a = ap.parse_args()

    dove = Dovecot({USER: PASSWORD}, auth_socket=True)
    servers = []
    try:
        dove.start()
        common = {"smtp.auth_cleartext_loopback": "true", "auth.max_failures": "1000",
                  "server.max_connections_per_ip": "1000"}
        internal = Submitd(dict(common))
        servers.append(internal)
        internal.start()
        internal.add_user(USER, PASSWORD)
        viadove = Submitd(dict(common, **{"auth.backend": "dovecot",
                                          "auth.dovecot_socket": dove.auth_socket_path}))
        servers.append(viadove)
        viadove.start()
        for c in [int(x) for x in a.c.split(",")]:
            for name, sd in (("internal", internal), ("dovecot", viadove)):
                rates = measure(sd.port, a.n, c, a.r)
                print("auth_rate backend=%s c=%d sessions=%d rounds=%d median=%.0f/s min=%.0f max=%.0f"
                      % (name, c, a.n, a.r, statistics.median(rates), min(rates), max(rates)), flush=True)
    finally:
        for sd in servers:
            try:
                sd.stop()
            finally:
                sd.cleanup()
        dove.stop()


if __name__ == "__main__":
    main()
