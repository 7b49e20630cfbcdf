#!/usr/bin/env python3
"""sent_bench.py: throughput of the Sent filing into a real Dovecot.

Starts a private Dovecot (tests/integration/dovecot.py) and a submitd
(tests/integration/harness.py) with filing on, submits N messages over
STARTTLS + AUTH PLAIN from S parallel smtplib sessions, and waits until
every job is filed. It reports the acceptance rate and the filing rate,
the latter from the database itself: from the first message's acceptance
(messages.received_at) to the last copy filed (sent_jobs.filed_at).
It checks that every message is in Sent exactly once.

Run as root (Dovecot switches to nobody for mail), from the source tree:
  SUBMITD_BUILD_DIR=build python3 tests/bench/sent_bench.py [-n 500] [-s 4] [-c 2,4]
"""

import argparse
import datetime
import os
import re
import smtplib
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from dovecot import Dovecot                     # noqa: E402
from harness import Submitd, share_with_server  # noqa: E402

MASTER, MASTER_PW, PW = "submitd-master", "bench master", "bench user"


def stamp(s):
    return datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def body(user, run, i):
    return ("From: <%s>\r\nTo: <rcpt@example.net>\r\nSubject: bench %d\r\nMessage-ID: <b-%s-%d@bench>\r\n"
            "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n%s" % (user, i, run, i, ("line of text " * 6 + "\r\n") * 30)).encode()


def one_run(dovecot, n, sessions, connections):
    users = ["u%d@bench.test" % k for k in range(sessions)]
    s = Submitd()
    pwfile = os.path.join(s.tmp, "master")
    with open(pwfile, "w") as f:
        f.write(MASTER_PW + "\n")
    s.options.update({
        "sent.imap_host": "127.0.0.1", "sent.imap_port": str(dovecot.port), "sent.tls": "none",
        "sent.master_user": MASTER, "sent.master_password_file": share_with_server(pwfile),
        "sent.default": "on", "sent.connections": str(connections), "sent.poll_interval": "1",
    })
    try:
        s.start()
        for u in users:
            s.add_user(u, PW)
        run = "%d-%d" % (connections, int(time.time()))
        per = n // sessions

        def load(u, k):
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            c = smtplib.SMTP("127.0.0.1", s.port, timeout=60)
            c.starttls(context=ctx)
            c.login(u, PW)
            for i in range(per):
                c.sendmail(u, ["rcpt@example.net"], body(u, run, k * per + i))
            c.quit()

        t0 = time.monotonic()
        threads = [threading.Thread(target=load, args=(u, k)) for k, u in enumerate(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if s.message_count() < n // sessions * sessions:
            raise AssertionError("not every message was accepted:\n" + s.log()[-3000:])
        accepted_in = time.monotonic() - t0
        total = per * sessions
        while s.sql("SELECT count(*) AS n FROM sent_jobs WHERE state = 'filed'")[0]["n"] < total:
            time.sleep(0.2)
        row = s.sql("SELECT min(m.received_at) AS a, max(m.received_at) AS z, max(j.filed_at) AS f "
                    "FROM sent_jobs j JOIN messages m USING (message_id)")[0]
        span = stamp(row["f"]) - stamp(row["a"])
        ids = {}
        for u in users:
            m = dovecot.connect(u, PW)
            m.select('"Sent"', readonly=True)
            typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            for item in data:
                if isinstance(item, tuple):
                    k = re.search(rb"<[^>]+>", item[1]).group(0)
                    if k.startswith(b"<b-%s-" % run.encode()):   # earlier runs share the users
                        ids[k] = ids.get(k, 0) + 1
            m.logout()
        assert len(ids) == total and set(ids.values()) == {1}, "not exactly once: %d ids" % len(ids)
        return total, accepted_in, span
    finally:
        s.stop(check=False)
        s.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("-s", type=int, default=4, help="parallel SMTP sessions (one user each)")
    ap.add_argument("-c", default="2,4", help="sent.connections values to run")
    a = ap.parse_args()
    users = {"u%d@bench.test" % k: PW for k in range(a.s)}
    d = Dovecot(users, masters={MASTER: MASTER_PW})
    try:
        d.start()
        for c in (int(x) for x in a.c.split(",")):
            total, acc, span = one_run(d, a.n, a.s, c)
            print("sent.connections=%d messages=%d accepted_in=%.2fs (%.0f/s) first_accept_to_last_filed=%.2fs "
                  "filing=%.1f msg/s" % (c, total, acc, total / acc, span, total / span), flush=True)
    finally:
        d.stop()


if __name__ == "__main__":
    main()
