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
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import tempfile
import unittest
import urllib.request
import uuid

from harness import HOSTNAME, Submitd, client_tls_context, dot_stuff

ALICE = ("Alice@example.org", "alice pass 1")
BOB = ("bob@example.org", "bob pass 2")
BOB_EXTRA = "Carol@example.org"
HTTP_LIMIT = 1024           # http.max_header_size and http.max_body_size here

SRV = None        # defaults but for trusted loopback, AUTH in cleartext, small HTTP limits
BIN = None        # smtp.binarymime = true


def setUpModule():
    global SRV, BIN
    SRV = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "smtp.auth_cleartext_loopback": "true",
                   "http.max_header_size": str(HTTP_LIMIT), "http.max_body_size": str(HTTP_LIMIT)})
    SRV.__enter__()
    BIN = Submitd({"smtp.auth_cleartext_loopback": "true", "smtp.binarymime": "true"}, tls_listener=False)
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

class ApiErrorTests(unittest.TestCase):
    """http.max_header_size = http.max_body_size = 1024 on SRV."""

    def curl(self, path, *args, data=None):
        cmd = ["curl", "-sS", "-i", "--max-time", "60"] + list(args)
        if data is not None:
            cmd += ["--data-binary", "@-"]
        cmd.append("http://127.0.0.1:%d%s" % (SRV.http_port, path))
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

    def assertJsonError(self, got, status, words):
        code, headers, body = got
        self.assertEqual(code, status, got)
        self.assertEqual(headers.get("content-type"), "application/json", got)
        j = json.loads(body)
        self.assertEqual(set(j), {"error"}, j)     # the shape of 404 and 405
        self.assertIn(words, j["error"])
        self.assertEqual(json.loads(self.curl("/nowhere")[2]).keys(), j.keys())

    def test_header_over_limit(self):
        got = self.curl("/healthz", "-H", "X-Padding: " + "a" * 2000)
        self.assertJsonError(got, 431, "request header too large (at most 1024 octets)")
        self.assertEqual(self.curl("/healthz", "-H", "X-Padding: " + "a" * 500)[0], 200)

    def test_body_over_limit(self):
        body = json.dumps({"token": "v4.public." + "A" * 2000}).encode()
        for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
            with self.subTest(extra=extra):
                got = self.curl("/v1/verify", "-H", "Content-Type: application/json", *extra, data=body)
                self.assertJsonError(got, 413, "request body too large (at most 1024 octets)")
        got = self.curl("/v1/verify", "-H", "Content-Type: application/json",
                        data=json.dumps({"token": "v4.public." + "A" * 900}).encode())
        self.assertEqual(got[0], 400, got)
        self.assertEqual(json.loads(got[2])["result"], "malformed")

    def test_every_known_method_gets_json_405(self):
        # (before, libevent refused TRACE and CONNECT itself, in HTML)
        for method in ("TRACE", "OPTIONS", "PUT"):
            with self.subTest(method=method):
                got = self.curl("/v1/keys", "-X", method)
                self.assertJsonError(got, 405, "method not allowed")
        # curl sends CONNECT with the authority as its target: no such path
        self.assertJsonError(self.curl("/v1/keys", "-X", "CONNECT"), 404, "not found")

    def test_beyond_the_backstop_still_refused(self):
        # Four times the limit and more: libevent 2.1 refuses it itself,
        # before any handler (docs/api.md); the server goes on serving.
        got = self.curl("/healthz", "-H", "X-Padding: " + "a" * 20000)
        self.assertIn(got[0], (400, 413), got)
        with socket.create_connection(("127.0.0.1", SRV.http_port), timeout=10) as s:
            s.sendall(b"NOT A REQUEST LINE\r\n\r\n")
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 400 "))
        self.assertEqual(self.curl("/healthz")[0], 200)


# -------------------------------------------------------- sender binding

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
