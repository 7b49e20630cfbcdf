"""test_loops.py: SMTP sessions on several event loops (smtp.threads,
docs/architecture.md#threads). A real submitd with 2 and with 4 loops and
many real clients at once (smtplib in threads, swaks): the sessions land
on more than one loop (/metrics submitd_smtp_sessions_total{loop=...} and
loop= in the connect log lines), AUTH after STARTTLS works on every loop,
every message is stored and answered with its tokens; the limits that
count across loops still hold exactly (server.max_connections,
server.max_connections_per_ip, a sending limit), and SIGTERM drains the
sessions of every loop, storing every message that was being received.
Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_loops
"""

import hashlib
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import unittest
import urllib.request

from harness import (TIMEOUT_SCALE, RawSMTP, Submitd, dot_stuff, parse_replies, parse_token_reply,
                     which)

USER = "loops@example.org"
PASSWORD = "loops test password"
WAIT = 30.0 * TIMEOUT_SCALE


def loops_in_log(log):
    """The loop of every session that connected, in order."""
    return [int(n) for n in re.findall(r"event=connect session=\w+ .*? loop=(\d+)", log)]


def sessions_by_loop(s):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % s.http_port, timeout=10) as f:
        text = f.read().decode()
    return {int(n): int(v) for n, v in re.findall(r'^submitd_smtp_sessions_total\{loop="(\d+)"\} (\d+)$',
                                                   text, re.M)}


def first_reply(port, source="127.0.0.1", timeout=10.0):
    """Connect from source and read the first reply: (code, socket). The
    socket stays open (the caller closes it); code None: closed at once."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    data = b""
    while True:
        replies = parse_replies(data) if data.endswith(b"\r\n") else []
        if replies:
            return replies[0].code, sock
        chunk = sock.recv(4096)
        if not chunk:
            return None, sock
        data += chunk


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Loops(unittest.TestCase):
    def server(self, loops, options=None):
        opts = {"smtp.threads": str(loops)}
        opts.update(options or {})
        s = Submitd(opts)
        s.start()
        self.addCleanup(s.cleanup)
        self.assertIn("smtp_loops=%d" % loops, s.log())
        return s

    def test_sessions_spread_over_the_loops(self):
        for loops in (2, 4):
            with self.subTest(loops=loops):
                self.spread(loops)

    def spread(self, loops):
        """Many authenticated sessions at once (STARTTLS, AUTH, 2 recipients):
        every message stored and answered with 3 tokens, on several loops."""
        s = self.server(loops)
        s.add_user(USER, PASSWORD)
        clients, per_client = 8, 6
        sent, errors, lock = {}, [], threading.Lock()

        def client(n):
            try:
                for i in range(per_client):
                    marker = "loops-%d-c%dm%d" % (loops, n, i)
                    body = ("From: <%s>\r\nSubject: %s\r\n\r\nbody of %s\r\n" % (USER, marker, marker)).encode()
                    c = smtplib.SMTP("127.0.0.1", s.port, timeout=30 * TIMEOUT_SCALE)
                    c.ehlo("loops.test")
                    c.starttls(context=tls_context())
                    c.ehlo("loops.test")
                    c.login(USER, PASSWORD)
                    c.mail(USER)
                    for r in ("a@example.net", "b@example.net"):
                        code, _ = c.rcpt(r)
                        if code != 250:
                            raise AssertionError("RCPT %s: %d" % (r, code))
                    code, text = c.data(body)
                    c.quit()
                    tokens = re.findall(rb"v4\.public\.[A-Za-z0-9_-]+", text)
                    if code != 250 or len(tokens) != 3:
                        raise AssertionError("DATA: %d %r" % (code, text))
                    with lock:
                        sent[marker] = hashlib.sha256(body).hexdigest()
            except Exception as e:  # reported below, not lost in the thread
                errors.append("client %d: %r" % (n, e))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        # swaks too, at the same time: STARTTLS and AUTH PLAIN
        swaks_markers = []
        if which("swaks"):
            for i in range(4):
                marker = "loops-%d-swaks%d" % (loops, i)
                p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(s.port), "--tls",
                                    "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
                                    "--from", USER, "--to", "c@example.net", "--header", "Subject: " + marker,
                                    "--body", "swaks body " + marker],
                                   capture_output=True, timeout=60 * TIMEOUT_SCALE)
                out = p.stdout.decode("utf-8", "replace")
                self.assertEqual(p.returncode, 0, out)
                self.assertEqual(len(re.findall(r"<~\s+250[- ]2\.1\.13 .*v4\.public\.", out)), 2, out)
                swaks_markers.append(marker)
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(sent), clients * per_client)
        stored = {r["sha256"] for r in s.sql("SELECT sha256 FROM messages")}
        for marker in swaks_markers:
            s.message_with_marker(marker)
        # every smtplib message stored exactly as sent (swaks' add to the rows)
        self.assertEqual(set(sent.values()) - stored, set())
        self.assertEqual(s.message_count(), len(sent) + len(swaks_markers))
        # on more than one loop, by the metrics and by the log
        by_loop = sessions_by_loop(s)
        self.assertEqual(sorted(by_loop), list(range(loops)), by_loop)
        self.assertGreater(sum(1 for v in by_loop.values() if v > 0), 1, by_loop)
        log = s.log()
        seen = loops_in_log(log)
        self.assertEqual(len(seen), sum(by_loop.values()))
        self.assertGreater(len(set(seen)), 1)
        # AUTH after STARTTLS succeeded on more than one loop
        loop_of = dict(re.findall(r"event=connect session=(\w+) .*? loop=(\d+)", log))
        auth_loops = {loop_of[sid] for sid in re.findall(r"event=auth_ok session=(\w+)", log)}
        self.assertGreater(len(auth_loops), 1, auth_loops)
        s.stop()

    def fill_address(self, port, per_ip, socks):
        """per_ip sessions from 127.0.0.1 greeted (kept in socks), the next refused."""
        for _ in range(per_ip):
            code, sock = first_reply(port)
            socks.append(sock)
            self.assertEqual(code, 220)
        code, sock = first_reply(port)
        sock.close()
        self.assertEqual(code, 421)

    def test_connection_limits_hold_across_loops(self):
        per_ip, total = 16, 24
        s = self.server(2, {"server.max_connections_per_ip": str(per_ip),
                            "server.max_connections": str(total)})
        socks = []
        try:
            # per address: per_ip sessions, spread over both loops
            self.fill_address(s.port, per_ip, socks)
            self.assertGreater(len(set(loops_in_log(s.log()))), 1)
            # another address is not held back, up to the total
            for _ in range(total - per_ip):
                code, sock = first_reply(s.port, source="127.0.0.2")
                socks.append(sock)
                self.assertEqual(code, 220)
            for source in ("127.0.0.2", "127.0.0.3"):
                code, sock = first_reply(s.port, source=source)
                sock.close()
                self.assertEqual(code, 421)
            self.assertRegex(s.log(), re.compile(r"reason=max_connections$", re.M))
            self.assertIn("reason=max_connections_per_ip", s.log())
            # the places come back when the sessions end, on whichever loop
            for sock in socks:
                sock.close()
            socks = []
            deadline = time.monotonic() + WAIT
            while re.findall(r"^submitd_sessions (\d+)$", self.metrics(s), re.M) != ["0"]:
                self.assertLess(time.monotonic(), deadline, "sessions did not end")
                time.sleep(0.1)
            self.fill_address(s.port, per_ip, socks)
        finally:
            for sock in socks:
                sock.close()
        s.stop()

    def metrics(self, s):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % s.http_port, timeout=10) as f:
            return f.read().decode()

    def test_sending_limit_holds_across_loops(self):
        limit = 6
        s = self.server(2, {"smtp.auth_cleartext_loopback": "true",
                            "limits.user_messages_per_hour": str(limit)})
        s.add_user(USER, PASSWORD)
        accepted = refused = 0
        # each transaction on a new connection: the kernel picks the loop
        for i in range(limit + 10):
            c = RawSMTP(s.port)
            c.ehlo()
            self.assertEqual(c.auth_plain(USER, PASSWORD).code, 235)
            r = c.cmd("MAIL FROM:<%s>" % USER)
            if r.code == 250:
                self.assertEqual(c.cmd("RCPT TO:<a@example.net>").code, 250)
                self.assertEqual(c.cmd("DATA").code, 354)
                c.send(dot_stuff(b"Subject: limit %d\r\n\r\nhello\r\n" % i))
                r = c.reply()
                self.assertEqual(r.code, 250, r)
                self.assertEqual(len(parse_token_reply(r)), 2)
                accepted += 1
            else:
                self.assertEqual(r.code, 450, r)
                self.assertIn("limits.user_messages_per_hour", r.text)
                refused += 1
            c.quit()
            c.close()
        self.assertEqual((accepted, refused), (limit, 10))
        self.assertEqual(s.message_count(), limit)
        self.assertGreater(len(set(loops_in_log(s.log()))), 1)
        s.stop()

    def test_sigterm_drains_every_loop(self):
        s = self.server(2, {"smtp.trusted_networks": "127.0.0.0/8", "server.drain_timeout": "30",
                            "server.max_connections_per_ip": "100"})
        busy, idle = [], []
        for i in range(16):
            c = RawSMTP(s.port)
            c.ehlo()
            self.assertEqual(c.cmd("MAIL FROM:<a@example.org>").code, 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.net>").code, 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(b"Subject: drain %d\r\n\r\nfirst half\r\n" % i)
            busy.append(c)
        for i in range(8):
            c = RawSMTP(s.port)
            c.ehlo()
            idle.append(c)
        seen = loops_in_log(s.log())
        self.assertEqual(len(seen), 24)
        self.assertEqual(set(seen), {0, 1})
        s.proc.send_signal(signal.SIGTERM)
        # every idle session, on either loop, is told and closed
        for c in idle:
            r = c.reply()
            self.assertEqual((r.code, r.lines[0][:5]), (421, "4.3.2"))
            self.assertTrue(c.closed_by_peer())
        # the messages being received complete, are stored, then 421
        for i, c in enumerate(busy):
            c.send(b"second half %d\r\n.\r\n" % i)
        for c in busy:
            r = c.reply()
            self.assertEqual(r.code, 250, r)
            self.assertEqual(len(parse_token_reply(r)), 2)
            r = c.reply()
            self.assertEqual((r.code, r.lines[0][:5]), (421, "4.3.2"))
        self.assertEqual(s.proc.wait(20 * TIMEOUT_SCALE), 0)
        self.assertEqual(s.message_count(), 16)
        self.assertIn("per_loop=", s.log())
        for c in busy + idle:
            c.close()
        s.stop()


if __name__ == "__main__":
    unittest.main()
