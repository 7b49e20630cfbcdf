"""Hardening against SMTP smuggling and a few loose ends, on the real server:

* BINARYMIME is offered only with smtp.binarymime = true: by default it is
  not advertised and BODY=BINARYMIME is refused, so BDAT cannot carry it.
* smtp.forbid_unauth_pipelining (default on): a client that is not
  authenticated and does not wait for a reply RFC 2920 makes it wait for
  (the greeting, EHLO, DATA's 354, AUTH, NOOP...) gets 554 5.5.0 and is
  disconnected, logged and counted in /metrics; a client that pipelines
  correctly (an authenticated one, swaks --pipeline, smtplib) is untouched.
* The API's own limit errors are JSON like every other error.
* Sender binding ignores ASCII case as the database's uniqueness does.

Raw sockets for the violations (no real client commits them), swaks --pipeline,
smtplib and curl for the well-behaved side.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_hardening
"""

import base64
import http.client
import json
import os
import re
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import tempfile
import unittest
import urllib.request
import uuid

from harness import HOSTNAME, Submitd, client_tls_context, dot_stuff

ALICE = ("Alice@example.org", "alice pass 1")
BOB = ("bob@example.org", "bob pass 2")
BOB_EXTRA = "Carol@example.org"
HTTP_LIMIT = 1024           # http.max_header_size and http.max_body_size here

HTTP_TIMEOUT = 3            # http.timeout on SRV, for the request that stops mid-header

SRV = None        # defaults but for trusted loopback, AUTH in cleartext, small HTTP limits
BIN = None        # smtp.binarymime = true; its API speaks HTTPS, with SRV's small limits


def setUpModule():
    global SRV, BIN
    SRV = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "smtp.auth_cleartext_loopback": "true",
                   "http.max_header_size": str(HTTP_LIMIT), "http.max_body_size": str(HTTP_LIMIT),
                   "http.timeout": str(HTTP_TIMEOUT)})
    SRV.__enter__()
    BIN = Submitd({"smtp.auth_cleartext_loopback": "true", "smtp.binarymime": "true", "http.tls": "true",
                   "http.max_header_size": str(HTTP_LIMIT), "http.max_body_size": str(HTTP_LIMIT)},
                  tls_listener=False)
    BIN.__enter__()
    for s in (SRV, BIN):
        s.add_user(*ALICE)
        s.add_user(*BOB, addresses=(BOB_EXTRA,))


def tearDownModule():
    for s in (BIN, SRV):
        if s is not None:
            s.__exit__(None, None, None)


def plain(login, password):
    return base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()).decode()


def marker():
    return "hardening-" + uuid.uuid4().hex


def metric(srv, name):
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % srv.http_port, headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    if not m:
        raise AssertionError("no %s in /metrics" % name)
    return int(m.group(1))


class Base(unittest.TestCase):
    def conn(self, srv=None, ehlo=True):
        c = (srv or SRV).raw()
        self.addCleanup(c.close)
        self.assertEqual(c.greeting.code, 220)
        if ehlo:
            c.ehlo()
        return c

    def authed(self, srv=None, who=ALICE):
        c = self.conn(srv)
        self.assertReply(c.auth_plain(*who), 235, "2.7.0")
        return c

    def assertReply(self, r, code, esc):
        self.assertEqual(r.code, code, r)
        self.assertTrue(r.text.startswith(esc + " ") or r.text == esc, "want %s, got %r" % (esc, r))

    def replies_until_close(self, c, timeout=5.0):
        """Every reply the server sends before it closes; fails if it does not close."""
        out = []
        c.sock.settimeout(timeout)
        try:
            while True:
                out.append(c.reply())
        except ConnectionError:
            return out
        except (socket.timeout, TimeoutError):
            self.fail("connection still open after %r" % out)


# ------------------------------------------------------------- BINARYMIME

class BinaryMimeTests(Base):
    def test_not_offered_by_default(self):
        c = self.conn(ehlo=False)
        words = [l.split(" ")[0].upper() for l in c.ehlo().lines[1:]]
        self.assertNotIn("BINARYMIME", words)
        self.assertIn("CHUNKING", words)
        self.assertIn("8BITMIME", words)

    def test_refused_by_default(self):
        before = SRV.message_count()
        c = self.authed()
        # RFC 5321 4.1.1.11: a parameter of an extension not offered is 555
        self.assertReply(c.cmd("MAIL FROM:<%s> BODY=BINARYMIME" % ALICE[0]), 555, "5.5.4")
        # no transaction: the BDAT that would carry it is refused too (its chunk read and dropped)
        c.send(b"BDAT 9 LAST\r\nbare\nLF\x00!")
        self.assertReply(c.reply(), 503, "5.5.1")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        self.assertEqual(SRV.message_count(), before)
        # and the bare LF is still refused on the 8BITMIME path
        self.assertReply(c.cmd("MAIL FROM:<%s> BODY=8BITMIME" % ALICE[0]), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<x@example.net>"), 250, "2.1.5")
        c.send(b"BDAT 9 LAST\r\nbare\nLF\x00!")
        self.assertEqual(c.reply().code, 550)
        self.assertEqual(SRV.message_count(), before)

    def test_offered_and_accepted_when_enabled(self):
        c = self.conn(BIN, ehlo=False)
        words = [l.split(" ")[0].upper() for l in c.ehlo().lines[1:]]
        self.assertIn("BINARYMIME", words)
        self.assertReply(c.auth_plain(*ALICE), 235, "2.7.0")
        mark = marker()
        body = ("Subject: %s\r\n\r\n" % mark).encode() + b"bare\nLF\rCR\x00NUL\r\n.\r\n"
        self.assertReply(c.cmd("MAIL FROM:<%s> BODY=BINARYMIME" % ALICE[0]), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<x@example.net>"), 250, "2.1.5")
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        self.assertEqual(c.reply().code, 250)
        row = BIN.message_with_marker(mark)
        self.assertEqual(row["body_type"], "BINARYMIME")
        self.assertEqual(BIN.body(row["message_id"]), body)


# ------------------------------------------------------------- pipelining

class PipeliningTests(Base):
    """SRV: forbid_unauth_pipelining at its default (on); loopback is a
    trusted network, so the unauthenticated clients here could submit."""

    def assertRefused(self, c, after, want_before):
        replies = self.replies_until_close(c)
        self.assertEqual([r.code for r in replies], want_before + [554], replies)
        self.assertReply(replies[-1], 554, "5.5.0")
        self.assertRegex(SRV.log(), r"event=pipelining_refused session=\w+ ip=127\.0\.0\.1 after=%s " % after)

    def test_data_before_354(self):
        before, refused = SRV.message_count(), metric(SRV, "submitd_smtp_pipelining_refused_total")
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<anyone@example.org>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<x@example.net>"), 250, "2.1.5")
        c.send(b"DATA\r\nSubject: smuggled\r\n\r\nbody\r\n.\r\n")
        self.assertRefused(c, "DATA", [354])
        self.assertEqual(SRV.message_count(), before)
        self.assertEqual(metric(SRV, "submitd_smtp_pipelining_refused_total"), refused + 1)

    def test_group_after_ehlo(self):
        c = self.conn(ehlo=False)
        c.send(b"EHLO client.test\r\nMAIL FROM:<anyone@example.org>\r\n")
        self.assertRefused(c, "EHLO", [250])

    def test_group_after_noop_and_helo(self):
        for first, want in ((b"NOOP", [250, 250]), (b"HELO client.test", [250, 250])):
            with self.subTest(first=first):
                c = self.conn()
                self.assertReply(c.cmd("RSET"), 250, "2.0.0")
                c.send(b"RSET\r\n" + first + b"\r\nRSET\r\n")       # RSET may lead a group, not follow these
                self.assertRefused(c, first.split(b" ")[0].decode(), want)

    def test_after_auth_credentials_not_logged(self):
        secret = plain(*ALICE)
        c = self.conn()
        c.send(("AUTH PLAIN %s\r\nMAIL FROM:<%s>\r\n" % (secret, ALICE[0])).encode())
        replies = self.replies_until_close(c)
        self.assertEqual([r.code for r in replies], [235, 554], replies)
        log = SRV.log()
        self.assertIn("after=AUTH sample=\"********\"", log)
        self.assertNotIn(secret, log)

    def test_sasl_line_before_334(self):
        c = self.conn()
        c.send(("AUTH LOGIN\r\n%s\r\n" % base64.b64encode(ALICE[0].encode()).decode()).encode())
        replies = self.replies_until_close(c)
        self.assertEqual([r.code for r in replies], [334, 554], replies)

    def test_before_greeting(self):
        # Stopped, the server cannot greet: the kernel completes the
        # connection and takes the client's EHLO, so it is there before the
        # 220 is written, whatever the timing.
        refused = metric(SRV, "submitd_smtp_pipelining_refused_total")
        os.kill(SRV.proc.pid, signal.SIGSTOP)
        try:
            s = socket.create_connection(("127.0.0.1", SRV.port), timeout=10)
            self.addCleanup(s.close)
            s.sendall(b"EHLO early.client.test\r\n")
        finally:
            os.kill(SRV.proc.pid, signal.SIGCONT)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        lines = data.split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"220 "), data)
        self.assertEqual(lines[1], b"554 5.5.0 Error: SMTP protocol synchronization", data)
        self.assertEqual(lines[2:], [b""], data)
        self.assertIn("after=CONNECT sample=\"EHLO early.client.test\\x0d\\x0a\"", SRV.log())
        self.assertEqual(metric(SRV, "submitd_smtp_pipelining_refused_total"), refused + 1)

    def test_authenticated_client_pipelines(self):
        # RFC 2920: MAIL, RCPTs and DATA in one group, BDAT chunks with
        # their commands; also a NOOP in the middle of a group, which only
        # an authenticated client gets away with.
        before = SRV.message_count()
        c = self.authed()
        mark = marker()
        body = ("Subject: %s\r\n\r\npipelined\r\n" % mark).encode()
        c.send(("MAIL FROM:<%s>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                % ALICE[0]).encode())
        self.assertEqual([c.reply().code for _ in range(4)], [250, 250, 250, 354])
        c.send(dot_stuff(body))
        self.assertEqual(c.reply().code, 250)
        mark2 = marker()
        body = ("Subject: %s\r\n\r\npipelined\r\n" % mark2).encode()
        c.send(b"MAIL FROM:<%s>\r\nNOOP\r\nRCPT TO:<a@example.net>\r\nBDAT 5\r\n%sBDAT %d LAST\r\n%s"
               % (ALICE[0].encode(), body[:5], len(body) - 5, body[5:]))
        self.assertEqual([c.reply().code for _ in range(5)], [250, 250, 250, 250, 250])
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        self.assertEqual(SRV.message_count(), before + 2)
        self.assertNotRegex(SRV.log(), r"event=pipelining_refused session=\w+ ip=127\.0\.0\.1 after=NOOP")

    def test_swaks_pipe_without_auth(self):
        # a trusted client, not authenticated, that pipelines as RFC 2920
        # allows (MAIL, RCPT, DATA in one group, then waits for the 354)
        mark = marker()
        with tempfile.NamedTemporaryFile("wb", suffix=".eml") as f:
            f.write(("Subject: %s\r\n\r\nswaks --pipeline" % mark).encode())
            f.flush()
            p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(SRV.port), "--pipeline",
                                "--helo", "swaks.client.test", "--from", "anyone@example.org",
                                "--to", "a@example.net,b@example.net", "--data", "@" + f.name,
                                "--timeout", "30"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
        self.assertIsNotNone(SRV.message_with_marker(mark))

    def test_swaks_pipe_with_auth(self):
        mark = marker()
        with tempfile.NamedTemporaryFile("wb", suffix=".eml") as f:
            f.write(("Subject: %s\r\n\r\nswaks --pipeline --auth" % mark).encode())
            f.flush()
            p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(SRV.port), "--pipeline",
                                "--helo", "swaks.client.test", "--from", ALICE[0], "--to", "a@example.net",
                                "--auth", "PLAIN", "--auth-user", ALICE[0], "--auth-password", ALICE[1],
                                "--data", "@" + f.name, "--timeout", "30"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
        self.assertIsNotNone(SRV.message_with_marker(mark))

    def test_smtplib_without_auth(self):
        mark = marker()
        with smtplib.SMTP("127.0.0.1", SRV.port, local_hostname="smtplib.client.test", timeout=30) as s:
            self.assertEqual(s.sendmail("anyone@example.org", ["a@example.net"],
                                        "Subject: %s\r\n\r\nsmtplib\r\n" % mark), {})
            s.noop()
        self.assertIsNotNone(SRV.message_with_marker(mark))

    def test_off_keeps_the_old_behaviour(self):
        with Submitd({"smtp.trusted_networks": "127.0.0.0/8", "smtp.forbid_unauth_pipelining": "false"},
                     tls_listener=False) as srv:
            c = srv.raw()
            self.addCleanup(c.close)
            c.send(b"EHLO client.test\r\nNOOP\r\n")
            self.assertEqual(c.reply().code, 250)
            self.assertReply(c.reply(), 250, "2.0.0")
            self.assertNotIn("event=pipelining_refused", srv.log())


class StarttlsInjectionTests(Base):
    def test_unauthenticated_injection_disconnects(self):
        c = self.conn()
        c.send(b"STARTTLS\r\nMAIL FROM:<x@example.org>\r\n")
        replies = self.replies_until_close(c)
        self.assertEqual([r.code for r in replies], [220, 554], replies)

    def test_correct_starttls_untouched(self):
        c = self.conn()
        c.starttls()
        self.assertEqual(c.ehlo().code, 250)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")


# ---------------------------------------------------------- the API's errors

def read_answers(data):
    """The HTTP answers in data, in order: [(status, {header: value}, body)]."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError("a partial answer: %r" % data[:300])
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        answers.append((int(lines[0].split(" ")[1]), headers, rest[:n]))
        data = rest[n:]
    return answers


class ApiErrorTests(unittest.TestCase):
    """http.max_header_size = http.max_body_size = 1024 on SRV (plain) and BIN (HTTPS)."""

    def curl(self, path, *args, data=None, srv=None):
        srv = srv or SRV
        cmd = ["curl", "-sS", "-i", "-k", "--max-time", "60"] + list(args)
        if data is not None:
            cmd += ["--data-binary", "@-"]
        cmd.append("%s://127.0.0.1:%d%s" % ("https" if srv is BIN else "http", srv.http_port, path))
        p = subprocess.run(cmd, input=data, capture_output=True, timeout=90)
        self.assertEqual(p.returncode, 0, p.stderr)
        raw = p.stdout
        while True:
            head, _, raw = raw.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            if status != 100:
                break
        headers = {}
        for l in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers, raw

    def raw(self, data, srv=None, shut=False):
        """Send data on a new connection (the server may stop reading, and
        close, before it is all sent), then read until the server closes."""
        srv = srv or SRV
        s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=30)
        if srv is BIN:
            s = client_tls_context().wrap_socket(s)
        out = b""
        with s:
            try:
                s.sendall(data)
                if shut and srv is not BIN:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass            # refused early: the answer is still there to read
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    out += b
            except (ConnectionResetError, ssl.SSLError):
                pass
        return out

    def assertJsonError(self, got, status, words):
        code, headers, body = got
        self.assertEqual(code, status, got)
        self.assertEqual(headers.get("content-type"), "application/json", got)
        self.assertNotIn(b"<html", body.lower())
        j = json.loads(body)
        self.assertEqual(set(j), {"error"}, j)     # the shape of 404 and 405
        self.assertIn(words, j["error"])
        self.assertEqual(json.loads(self.curl("/nowhere")[2]).keys(), j.keys())

    def assertRefused(self, data, status, words, srv=None):
        """One JSON answer, then the server closes; and it serves the next one."""
        answers = read_answers(self.raw(data, srv=srv))
        self.assertEqual(len(answers), 1, answers)
        self.assertJsonError(answers[0], status, words)
        self.assertEqual(answers[0][1].get("connection"), "close", answers)
        self.assertEqual(self.curl("/healthz", srv=srv)[0], 200)

    def test_header_over_limit(self):
        got = self.curl("/healthz", "-H", "X-Padding: " + "a" * 2000)
        self.assertJsonError(got, 431, "request header too large (at most 1024 octets)")
        self.assertEqual(self.curl("/healthz", "-H", "X-Padding: " + "a" * 500)[0], 200)

    def test_header_2x_5x_100x(self):
        # (before, 4x and more were libevent's own HTML page)
        for times in (2, 5, 100):
            pad = "a" * (HTTP_LIMIT * times)
            with self.subTest(times=times, client="curl"):
                got = self.curl("/healthz", "-H", "X-Padding: " + pad)
                self.assertJsonError(got, 431, "request header too large (at most 1024 octets)")
            for srv in (SRV, BIN):
                with self.subTest(times=times, client="socket", tls=srv is BIN):
                    self.assertRefused(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: %s\r\n\r\n" % pad.encode(),
                                       431, "request header too large (at most 1024 octets)", srv=srv)
            with self.subTest(times=times, client="many short lines"):
                lines = b"".join(b"X-%d: a\r\n" % i for i in range(HTTP_LIMIT * times // 8))
                self.assertRefused(b"GET /healthz HTTP/1.1\r\n" + lines + b"\r\n",
                                   431, "request header too large (at most 1024 octets)")

    def test_body_over_limit(self):
        body = json.dumps({"token": "v4.public." + "A" * 2000}).encode()
        got = self.curl("/v1/verify", "-H", "Content-Type: application/json", data=body)
        self.assertJsonError(got, 413, "request body too large (at most 1024 octets)")
        got = self.curl("/v1/verify", "-H", "Content-Type: application/json",
                        data=json.dumps({"token": "v4.public." + "A" * 900}).encode())
        self.assertEqual(got[0], 400, got)
        self.assertEqual(json.loads(got[2])["result"], "malformed")

    def test_content_length_10x_1000x(self):
        for times in (10, 1000):
            n = HTTP_LIMIT * times
            with self.subTest(times=times, client="curl"):
                got = self.curl("/v1/verify", "-H", "Content-Type: application/json", data=b"{" * n)
                self.assertJsonError(got, 413, "request body too large (at most 1024 octets)")
            for srv in (SRV, BIN):
                with self.subTest(times=times, client="socket, no body sent", tls=srv is BIN):
                    self.assertRefused(b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n,
                                       413, "request body too large (at most 1024 octets)", srv=srv)
            with self.subTest(times=times, client="socket, body sent"):
                self.assertRefused(b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n
                                   + b"x" * n, 413, "request body too large (at most 1024 octets)")

    def test_chunked_refused(self):
        body = json.dumps({"token": "v4.public." + "A" * 2000}).encode()
        got = self.curl("/v1/verify", "-H", "Content-Type: application/json", "-H", "Transfer-Encoding: chunked",
                        data=body)
        self.assertJsonError(got, 411, "Content-Length")

    def test_malformed_requests(self):
        for data, status, words in (
                (b"NOT A REQUEST LINE\r\n\r\n", 400, "malformed request line"),
                (b"GET /healthz\r\n\r\n", 400, "HTTP/0.9"),          # HTTP/0.9: no version
                (b"GET /healthz\r\n", 400, "HTTP/0.9"),
                (b"GET /healthz HTTP/2.0\r\n\r\n", 505, "HTTP/1.0 and HTTP/1.1"),
                (b"GET /healthz HTTP/1.1 \r\n\r\n", 400, "malformed request line"),
                (b"GET /a b HTTP/1.1\r\n\r\n", 400, "malformed request line"),
                (b"GET /<x> HTTP/1.1\r\n\r\n", 400, "malformed request target"),
                (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header field"),
                (b"GET /healthz HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400, "folded"),
                (b"GET /healthz HTTP/1.1\r\nX : a\r\n\r\n", 400, "malformed header field"),
                (b"GET /healthz HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "control character"),
                (b"GET /healthz HTTP/1.1\r\nX: a\0b\r\n\r\n", 400, "control character"),
                (b"POST /v1/verify HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400, "Content-Length"),
                (b"POST /v1/verify HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400,
                 "more than one Content-Length"),
                (b"POST /v1/verify HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n", 417,
                 "100-continue"),
                (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "malformed request line"),
                ):
            with self.subTest(data=data):
                self.assertRefused(data, status, words)

    def test_unknown_method(self):
        for method in (b"FOO", b"BREW", b"get", b"CONNECT"):
            with self.subTest(method=method):
                self.assertRefused(method + b" /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method not implemented")
        self.assertJsonError(self.curl("/v1/keys", "-X", "FOO"), 501, "method not implemented")
        # curl sends CONNECT with the authority as its target
        self.assertJsonError(self.curl("/v1/keys", "-X", "CONNECT"), 501, "method not implemented")

    def test_every_known_method_gets_json_405(self):
        # (before, libevent refused TRACE and CONNECT itself, in HTML)
        for method in ("TRACE", "OPTIONS", "PUT"):
            with self.subTest(method=method):
                got = self.curl("/v1/keys", "-X", method)
                self.assertJsonError(got, 405, "method not allowed")

    def test_stops_mid_header(self):
        # closed after http.timeout without an answer: no JSON to give, and no HTML either
        with socket.create_connection(("127.0.0.1", SRV.http_port), timeout=HTTP_TIMEOUT * 10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half")
            self.assertEqual(s.recv(4096), b"")
        self.assertEqual(self.curl("/healthz")[0], 200)

    def test_pipelined_then_oversized(self):
        ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        post = (b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 16\r\n\r\n{\"token\": \"x.y\"}")
        big = b"GET /healthz HTTP/1.1\r\nX-Padding: %s\r\n\r\n" % (b"a" * (HTTP_LIMIT * 5))
        for srv in (SRV, BIN):
            for name, data, want in (("two then oversized", ok + ok + big, [200, 200, 431]),
                                     ("a body, then oversized", ok + post + ok + big, [200, 400, 200, 431]),
                                     ("oversized body", ok + post.replace(b"16", b"160000"), [200, 413]),
                                     ("then garbage", ok + b"\x00\x01\x02\r\n\r\n" + ok, [200, 400])):
                with self.subTest(name, tls=srv is BIN):
                    answers = read_answers(self.raw(data, srv=srv))
                    self.assertEqual([a[0] for a in answers], want, answers)
                    for a in answers:
                        self.assertEqual(a[1].get("content-type"), "application/json", a)
                        json.loads(a[2])
                    self.assertEqual(answers[-1][1].get("connection"), "close", answers)
        self.assertEqual(self.curl("/healthz")[0], 200)

    def test_keep_alive_unchanged(self):
        # several requests, with bodies, over one connection, as before
        c = http.client.HTTPConnection("127.0.0.1", SRV.http_port, timeout=10)
        for i in range(5):
            c.request("POST", "/v1/verify", body=b'{"token": "v4.public.x"}', headers={"Content-Type": "application/json"})
            r = c.getresponse()
            self.assertEqual(r.status, 400)
            self.assertEqual(json.loads(r.read())["result"], "malformed")
            c.request("GET", "/healthz")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b'{"status":"ok"}\n'))
        c.close()


# -------------------------------------------------------- sender binding

class LingerBoundTests(unittest.TestCase):
    """A refused connection lingers (reads and drops until the client closes
    or http.timeout), but at most 256 at once per API thread: past that a
    refused connection is closed at once, so a flood of bad requests cannot
    hold its sockets for http.timeout (server/api/api_guard.c)."""

    def test_at_most_256_linger_per_thread(self):
        n, cap = 300, 256
        with Submitd({"http.threads": "1", "http.timeout": "120"}, tls_listener=False) as srv:
            socks = []
            try:
                for _ in range(n):
                    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=30)
                    s.sendall(b"FOO / HTTP/1.1\r\n\r\n")
                    socks.append(s)
                for s in socks:
                    got = b""
                    while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                        b = s.recv(4096)
                        self.assertTrue(b, got)         # every client gets its answer
                        got += b
                    self.assertIn(b"501 Not Implemented", got)
                    self.assertIn(b"application/json", got)
                # evhttp shuts its side down after the answer either way; a
                # lingering connection still reads (and drops) what comes,
                # one closed at once answers it with a reset
                for s in socks:
                    s.sendall(b"more")
                time.sleep(1)
                closed = 0
                for s in socks:
                    try:
                        s.sendall(b"more")
                        s.settimeout(0.2)
                        s.recv(1)
                    except socket.timeout:
                        pass
                    except (ConnectionResetError, BrokenPipeError):
                        closed += 1
                self.assertEqual(closed, n - cap)
                self.assertEqual(subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                                 "http://127.0.0.1:%d/healthz" % srv.http_port],
                                                capture_output=True, timeout=60).stdout, b"200")
            finally:
                for s in socks:
                    s.close()


class SenderCaseTests(Base):
    def mail_from(self, who, address):
        c = self.authed(who=who)
        return c.cmd("MAIL FROM:<%s>" % address)

    def test_own_address_in_any_case(self):
        for address in ("Alice@example.org", "alice@EXAMPLE.org", "ALICE@example.ORG"):
            with self.subTest(address=address):
                self.assertReply(self.mail_from(ALICE, address), 250, "2.1.0")
        for address in ("carol@EXAMPLE.ORG", "CAROL@example.org", "bob@Example.Org"):
            with self.subTest(address=address):
                self.assertReply(self.mail_from(BOB, address), 250, "2.1.0")

    def test_other_users_address_in_other_case(self):
        for who, address in ((ALICE, "BOB@example.org"), (ALICE, "carol@example.org"),
                             (BOB, "alice@example.org"), (ALICE, "\"alice\"@example.org"),
                             (ALICE, "alicf@example.org")):
            with self.subTest(who=who[0], address=address):
                self.assertReply(self.mail_from(who, address), 553, "5.7.1")

    def test_database_agrees(self):
        # the reason for the rule: one address, whatever its case, has one owner
        p = SRV.submitctl("user", "address", "add", ALICE[0], "CAROL@EXAMPLE.ORG", check=False)
        self.assertNotEqual(p.returncode, 0, p)


if __name__ == "__main__":
    unittest.main()
