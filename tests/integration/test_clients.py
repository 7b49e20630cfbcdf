"""End-to-end tests of submitd with real SMTP clients nobody here wrote
(swaks, curl, msmtp, Python's smtplib), then a look at what was stored.

Each test that submits a message puts a unique marker in it, finds the
stored row by that marker, and compares the stored body byte for byte with
what the client put on the wire minus dot-stuffing, plus the size, the
SHA-256 and the envelope. Token replies are checked line by line against
the documented shape and verified with submitctl.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_clients
SUBMITD_KEEP=1 keeps each server's temporary directory (its log is submitd.log).
"""

import email.generator
import email.message
import hashlib
import io
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import unittest
import uuid

from harness import (HOSTNAME, run_as_user, Submitd, TOKEN_RE, client_tls_context, dot_stuff,
                     parse_token_reply, run_program, which)

SERVER = None       # the shared default server, started in setUpModule


def setUpModule():
    global SERVER
    # BINARYMIME is off by default (docs/config.md); BdatTests sends it
    SERVER = Submitd({"smtp.binarymime": "true"})
    SERVER.__enter__()


def tearDownModule():
    # stop() requires exit status 0 after SIGTERM: a crash on shutdown fails the module.
    SERVER.__exit__(None, None, None)


def new_marker():
    return "m" + uuid.uuid4().hex


def make_body(marker, sender="demo@example.org", to="alice@example.net"):
    """A CRLF message with the lines that trip SMTP implementations: a lone dot,
    leading dots (dot-stuffed on the wire, stored as written), a long line."""
    lines = [
        "From: Sender <%s>" % sender,
        "To: <%s>" % to,
        "Subject: integration %s" % marker,
        "Message-ID: <%s@client.test>" % marker,
        "Date: Mon, 01 Jan 2024 00:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "First line of %s" % marker,
        ".a line that starts with a dot",
        "..two dots",
        ".",
        "  leading and trailing spaces  ",
        "x" * 900,
        "",
        "last line",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def run(cmd, input=None, timeout=60):
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)


def require(tool):
    """Fail, not skip, when a client is missing: these tests exist to run
    the real clients (scripts/deps test installs them)."""
    if which(tool) is None:
        raise AssertionError("%s is not installed: run scripts/deps test" % tool)
    if tool == "swaks":
        # Debian's swaks only recommends Net::SSLeay; without it --tls fails.
        p = run(["swaks", "--support"])
        if b"TLS supported" not in p.stdout + p.stderr:
            raise AssertionError("swaks has no TLS support: install libnet-ssleay-perl\n%s"
                                 % (p.stdout + p.stderr).decode("utf-8", "replace"))


class StoredMixin:
    """Assertions about what the server stored for one submission."""

    def assertBytesEqual(self, got, want, what="body"):
        if got == want:
            return
        n = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
        self.fail("%s differs at offset %d (got %d bytes, want %d)\n got: %r\nwant: %r"
                  % (what, n, len(got), len(want), got[max(0, n - 40):n + 40], want[max(0, n - 40):n + 40]))

    def assertStored(self, srv, marker, body, sender, rcpts, login, helo=None, body_type=None, smtputf8=None):
        row = srv.message_with_marker(marker)
        stored = srv.body(row["message_id"])
        self.assertBytesEqual(stored, body)
        self.assertEqual(row["size"], len(body), "messages.size")
        self.assertEqual(row["sha256"], hashlib.sha256(body).hexdigest(), "messages.sha256")
        self.assertEqual(row["envelope_from"], sender, "messages.envelope_from")
        self.assertEqual(srv.recipients(row["message_id"]), rcpts, "recipients in RCPT order")
        self.assertEqual(row["auth_login"], login, "messages.auth_login")
        self.assertIn("127.0.0.1", row["client_address"], "messages.client_address")
        if helo is not None:
            self.assertEqual(row["helo"], helo, "messages.helo")
        if body_type is not None:
            self.assertEqual(row["body_type"], body_type, "messages.body_type")
        if smtputf8 is not None:
            self.assertEqual(row["smtputf8"], smtputf8, "messages.smtputf8")
        return row

    def assertTokenCount(self, transcript, nrcpt):
        """A client transcript shows one token per recipient plus the sender's."""
        tokens = TOKEN_RE.findall(transcript)
        self.assertEqual(len(tokens), nrcpt + 1, "tokens in the final reply:\n" + transcript)
        self.assertRegex(transcript, r"250 2\.1\.13 (<[^>]*> )?v4\.public\.\S+ Saved")
        return tokens


# ------------------------------------------------------------------ swaks

class SwaksTests(StoredMixin, unittest.TestCase):
    LOGIN, PASSWORD = "swaks@example.org", "swaks pass phrase 1"

    @classmethod
    def setUpClass(cls):
        require("swaks")
        SERVER.add_user(cls.LOGIN, cls.PASSWORD)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def swaks(self, body, rcpts, *extra, port=None, auth="PLAIN"):
        # swaks sends the file's bytes dot-stuffed and appends CRLF "." CRLF,
        # so a file without a final CRLF is stored as file + CRLF. The file has
        # no %TOKEN%, no literal backslash-n and no "From " line that swaks
        # would rewrite.
        assert body.endswith(b"\r\n")
        path = os.path.join(self.tmp.name, uuid.uuid4().hex + ".eml")
        with open(path, "wb") as f:
            f.write(body[:-2])
        cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port or SERVER.port),
               "--helo", "swaks.client.test", "--from", self.LOGIN, "--to", ",".join(rcpts),
               "--auth", auth, "--auth-user", self.LOGIN, "--auth-password", self.PASSWORD,
               "--data", "@" + path, "--timeout", "30"] + list(extra)
        p = run(cmd)
        out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "swaks failed:\n" + out)
        return out

    def check(self, rcpts, *extra, port=None, auth="PLAIN"):
        marker = new_marker()
        body = make_body(marker, self.LOGIN, rcpts[0])
        out = self.swaks(body, rcpts, *extra, port=port, auth=auth)
        self.assertTokenCount(out, len(rcpts))
        self.assertStored(SERVER, marker, body, self.LOGIN, rcpts, self.LOGIN, helo="swaks.client.test",
                          body_type="7BIT")
        return out

    def test_starttls_auth_plain(self):
        out = self.check(["alice@example.net", "bob@example.com"], "--tls")
        self.assertIn("AUTH PLAIN", out)
        self.assertRegex(out, r"<~  235 2\.7\.0")

    def test_starttls_auth_login(self):
        out = self.check(["carol@example.net"], "--tls", auth="LOGIN")
        self.assertIn("AUTH LOGIN", out)
        self.assertRegex(out, r"<~  235 2\.7\.0")

    def test_pipelining(self):
        out = self.check(["p1@example.net", "p2@example.net", "p3@example.net"], "--tls", "--pipeline")
        # swaks --pipeline fails when PIPELINING is not advertised, so rc 0 proves it was.
        self.assertIn("PIPELINING", out)

    def test_implicit_tls(self):
        out = self.check(["tlsc@example.net"], "--tls-on-connect", port=SERVER.tls_port)
        self.assertNotIn("STARTTLS", out.split("EHLO", 1)[1])

    def test_implicit_tls_openssl_s_client(self):
        # A second TLS stack on the implicit-TLS port: greeting, then QUIT once
        # the greeting is in (no early talking); -quiet keeps reading until
        # the server closes.
        require("openssl")
        p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % SERVER.tls_port, "-quiet"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        greeting = p.stdout.readline().decode("utf-8", "replace")
        out, err = p.communicate(b"QUIT\r\n", timeout=30)
        self.assertTrue(greeting.startswith("220 %s ESMTP submitd" % HOSTNAME), (greeting, err))
        self.assertTrue(out.startswith(b"221 2.0.0"), out)


# ------------------------------------------------------------------- curl

class CurlTests(StoredMixin, unittest.TestCase):
    LOGIN, PASSWORD = "curl@example.org", "curl:pass with colon"

    @classmethod
    def setUpClass(cls):
        require("curl")
        SERVER.add_user(cls.LOGIN, cls.PASSWORD)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def curl(self, url, rcpts, *extra):
        # curl dot-stuffs and, as the file ends with CRLF, sends only "." CRLF
        # after it: the stored body is the file exactly.
        marker = new_marker()
        body = make_body(marker, self.LOGIN, rcpts[0])
        path = os.path.join(self.tmp.name, marker + ".eml")
        with open(path, "wb") as f:
            f.write(body)
        cmd = ["curl", "-v", "-sS", "-k", "--max-time", "30", url, "--mail-from", self.LOGIN,
               "--upload-file", path, "-u", "%s:%s" % (self.LOGIN, self.PASSWORD)] + list(extra)
        for r in rcpts:
            cmd += ["--mail-rcpt", r]
        p = run(cmd)
        err = p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "curl failed:\n" + err)
        self.assertTokenCount(err, len(rcpts))
        self.assertStored(SERVER, marker, body, self.LOGIN, rcpts, self.LOGIN, helo="curl.client.test")
        return err

    def test_starttls_ssl_reqd(self):
        err = self.curl("smtp://127.0.0.1:%d/curl.client.test" % SERVER.port,
                        ["alice@example.net", "bob@example.com", "carol@example.org"], "--ssl-reqd")
        self.assertIn("STARTTLS", err)
        self.assertRegex(err, r"< 235 2\.7\.0")

    def test_smtps(self):
        err = self.curl("smtps://127.0.0.1:%d/curl.client.test" % SERVER.tls_port,
                        ["dave@example.net", "erin@example.net"])
        self.assertRegex(err, r"< 235 2\.7\.0")


# ------------------------------------------------------------------ msmtp

class MsmtpTests(StoredMixin, unittest.TestCase):
    LOGIN, PASSWORD = "msmtp@example.org", "msmtp secret #1"

    @classmethod
    def setUpClass(cls):
        require("msmtp")
        SERVER.add_user(cls.LOGIN, cls.PASSWORD)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.conf = os.path.join(cls.tmp.name, "msmtprc")
        pwfile = os.path.join(cls.tmp.name, "pw")
        with open(pwfile, "w") as f:
            f.write(cls.PASSWORD + "\n")
        common = ("host 127.0.0.1\nfrom {login}\nauth on\nuser {login}\npasswordeval cat {pw}\n"
                  "tls on\ntls_certcheck off\ndomain msmtp.client.test\n").format(login=cls.LOGIN, pw=pwfile)
        with open(cls.conf, "w") as f:
            f.write("defaults\nsyslog off\n\n")
            f.write("account starttls\nport %d\ntls_starttls on\n%s\n" % (SERVER.port, common))
            f.write("account implicit\nport %d\ntls_starttls off\n%s\n" % (SERVER.tls_port, common))
        os.chmod(cls.conf, 0o600)   # msmtp refuses a config readable by others

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def msmtp(self, account, rcpts):
        # The message has From, Date and Message-ID, so msmtp adds no header,
        # and no Bcc, so it removes none: it sends the message as given.
        marker = new_marker()
        body = make_body(marker, self.LOGIN, rcpts[0])
        p = run(["msmtp", "-C", self.conf, "-a", account, "-f", self.LOGIN, "--"] + rcpts, input=body)
        self.assertEqual(p.returncode, 0, "msmtp failed:\n%s%s" % (p.stdout.decode(), p.stderr.decode()))
        self.assertStored(SERVER, marker, body, self.LOGIN, rcpts, self.LOGIN, helo="msmtp.client.test")

    def test_starttls_from_stdin(self):
        self.msmtp("starttls", ["alice@example.net", "bob@example.com"])

    def test_implicit_tls_from_stdin(self):
        self.msmtp("implicit", ["frank@example.net"])


# ---------------------------------------------------------------- smtplib

class SmtplibTests(StoredMixin, unittest.TestCase):
    LOGIN, PASSWORD = "py@example.org", "py pass 123"   # ASCII: smtplib encodes AUTH as ASCII

    @classmethod
    def setUpClass(cls):
        SERVER.add_user(cls.LOGIN, cls.PASSWORD)

    def starttls_client(self):
        s = smtplib.SMTP("127.0.0.1", SERVER.port, local_hostname="py.client.test", timeout=30)
        self.addCleanup(s.close)
        s.starttls(context=client_tls_context())
        s.login(self.LOGIN, self.PASSWORD)
        return s

    def test_starttls_login_sendmail(self):
        marker = new_marker()
        body = make_body(marker, self.LOGIN)
        rcpts = ["alice@example.net", "bob@example.com"]
        s = self.starttls_client()
        refused = s.sendmail(self.LOGIN, rcpts, body)
        self.assertEqual(refused, {})
        s.quit()
        self.assertStored(SERVER, marker, body, self.LOGIN, rcpts, self.LOGIN, helo="py.client.test",
                          body_type="7BIT", smtputf8=0)

    def test_smtp_ssl_sendmail(self):
        marker = new_marker()
        body = make_body(marker, self.LOGIN)
        s = smtplib.SMTP_SSL("127.0.0.1", SERVER.tls_port, local_hostname="pyssl.client.test", timeout=30,
                             context=client_tls_context())
        self.addCleanup(s.close)
        s.login(self.LOGIN, self.PASSWORD)
        self.assertEqual(s.sendmail(self.LOGIN, ["gina@example.net"], body), {})
        s.quit()
        self.assertStored(SERVER, marker, body, self.LOGIN, ["gina@example.net"], self.LOGIN,
                          helo="pyssl.client.test")

    def test_send_message_several_recipients(self):
        marker = new_marker()
        msg = email.message.EmailMessage()
        msg["From"] = self.LOGIN
        msg["To"] = "Hal <hal@example.net>, ivy@example.com"
        msg["Cc"] = "jo@example.org"
        msg["Subject"] = "send_message " + marker
        msg.set_content("Hello %s\n.dot line\nbye\n" % marker)
        # What smtplib.send_message puts on the wire before dot-stuffing.
        buf = io.BytesIO()
        email.generator.BytesGenerator(buf, policy=msg.policy.clone(linesep="\r\n")).flatten(msg)
        body = buf.getvalue()
        s = self.starttls_client()
        self.assertEqual(s.send_message(msg), {})
        s.quit()
        self.assertStored(SERVER, marker, body, self.LOGIN,
                          ["hal@example.net", "ivy@example.com", "jo@example.org"], self.LOGIN)

    def test_8bitmime(self):
        marker = new_marker()
        body = ("Subject: %s\r\n\r\nGr\u00fc\u00dfe, caf\u00e9 \u2603\r\n" % marker).encode("utf-8")
        s = self.starttls_client()
        self.assertTrue(s.has_extn("8bitmime"))
        self.assertEqual(s.sendmail(self.LOGIN, ["kim@example.net"], body, mail_options=["BODY=8BITMIME"]), {})
        s.quit()
        self.assertStored(SERVER, marker, body, self.LOGIN, ["kim@example.net"], self.LOGIN,
                          body_type="8BITMIME", smtputf8=0)

    def test_smtputf8_recipient(self):
        marker = new_marker()
        rcpt = "jos\u00e9@b\u00fccher.example"
        body = ("Subject: %s\r\nTo: %s\r\n\r\n\u00a1Hola!\r\n" % (marker, rcpt)).encode("utf-8")
        s = self.starttls_client()
        self.assertTrue(s.has_extn("smtputf8"))
        self.assertEqual(s.sendmail(self.LOGIN, [rcpt], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"]), {})
        s.quit()
        self.assertStored(SERVER, marker, body, self.LOGIN, [rcpt], self.LOGIN, body_type="8BITMIME", smtputf8=1)


# ------------------------------------------------------------------- BDAT

class BdatTests(StoredMixin, unittest.TestCase):
    # swaks 20201014 (the installed one) has no CHUNKING support and curl and
    # msmtp never use BDAT, so BDAT is driven with smtplib's low-level
    # send()/getreply() on a real STARTTLS+AUTH session.
    LOGIN, PASSWORD = "bdat@example.org", "bdat pass"

    @classmethod
    def setUpClass(cls):
        SERVER.add_user(cls.LOGIN, cls.PASSWORD)

    def client(self):
        s = smtplib.SMTP("127.0.0.1", SERVER.port, local_hostname="bdat.client.test", timeout=30)
        self.addCleanup(s.close)
        s.starttls(context=client_tls_context())
        s.login(self.LOGIN, self.PASSWORD)
        self.assertTrue(s.has_extn("chunking"), "CHUNKING not advertised")
        self.assertTrue(s.has_extn("binarymime"), "BINARYMIME not advertised")
        return s

    def bdat(self, s, chunk, last=False):
        s.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
        return s.getreply()

    def test_chunks_are_not_unstuffed(self):
        # BDAT carries no dot-stuffing (RFC 3030): leading dots are stored as sent.
        marker = new_marker()
        body = ("Subject: %s\r\n\r\n.one dot\r\n..two dots\r\n.\r\nend\r\n" % marker).encode()
        rcpts = ["alice@example.net", "bob@example.com"]
        s = self.client()
        self.assertEqual(s.docmd("MAIL", "FROM:<%s>" % self.LOGIN)[0], 250)
        for r in rcpts:
            self.assertEqual(s.docmd("RCPT", "TO:<%s>" % r)[0], 250)
        for chunk in (body[:7], body[7:30], body[30:]):
            code, msg = self.bdat(s, chunk)
            self.assertEqual(code, 250, msg)
        code, msg = self.bdat(s, b"", last=True)
        self.assertEqual(code, 250, msg)
        self.assertEqual(len(TOKEN_RE.findall(msg.decode())), len(rcpts) + 1, msg)
        s.quit()
        self.assertStored(SERVER, marker, body, self.LOGIN, rcpts, self.LOGIN, helo="bdat.client.test",
                          body_type="7BIT")

    def test_binarymime_pipelined(self):
        # Every octet value, bare CR and bare LF, NUL: legal in a BINARYMIME body.
        marker = new_marker()
        body = ("Subject: %s\r\nContent-Type: application/octet-stream\r\n\r\n" % marker).encode() + \
            bytes(range(256)) + b"\r\rbare\nLF\x00\r\n"
        s = self.client()
        half = len(body) // 2
        s.send(b"MAIL FROM:<%s> BODY=BINARYMIME\r\nRCPT TO:<bin@example.net>\r\n" % self.LOGIN.encode()
               + b"BDAT %d\r\n" % half + body[:half]
               + b"BDAT %d LAST\r\n" % (len(body) - half) + body[half:])
        replies = [s.getreply() for _ in range(4)]
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 250], replies)
        self.assertTrue(replies[0][1].startswith(b"2.1.0"), replies[0])
        self.assertTrue(replies[1][1].startswith(b"2.1.5"), replies[1])
        self.assertEqual(len(TOKEN_RE.findall(replies[3][1].decode())), 2, replies[3])
        s.quit()
        self.assertStored(SERVER, marker, body, self.LOGIN, ["bin@example.net"], self.LOGIN,
                          body_type="BINARYMIME")


# ----------------------------------------------------------------- tokens

def submit_raw(srv, login, password, sender, rcpts, body, tls=True):
    """Submit over a raw connection (pipelined MAIL/RCPT/DATA) and return the
    end-of-data Reply with its exact wire bytes."""
    with srv.raw(tls=tls) as c:
        c.login_session(login, password)
        cmds = "MAIL FROM:<%s>\r\n" % sender + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n"
        c.send(cmds.encode("utf-8"))
        r = c.reply()
        if r.code != 250:
            raise AssertionError("MAIL refused: %r" % r)
        for a in rcpts:
            r = c.reply()
            if r.code != 250:
                raise AssertionError("RCPT %s refused: %r" % (a, r))
        r = c.reply()
        if r.code != 354:
            raise AssertionError("DATA refused: %r" % r)
        c.send(dot_stuff(body))
        final = c.reply()
        q = c.cmd("QUIT")
        if q.code != 221:
            raise AssertionError("QUIT: %r" % q)
    return final


class TokenTests(StoredMixin, unittest.TestCase):
    LOGIN, PASSWORD = "tok@example.org", "token pass"

    @classmethod
    def setUpClass(cls):
        SERVER.add_user(cls.LOGIN, cls.PASSWORD)

    def verify(self, token, address=None):
        """(exit status, result name) of submitctl token verify. The result
        name is read from a "result=NAME" line, else the output's last word."""
        args = ["token", "verify", token] + (["--address", address] if address is not None else [])
        p = SERVER.submitctl(*args, check=False)
        out = p.stdout + "\n" + p.stderr
        m = re.search(r"^result=([a-z_]+)\s*$", out, re.M)
        words = out.split()
        return p.returncode, (m.group(1) if m else words[-1] if words else "")

    def assertValid(self, token, address):
        rc, result = self.verify(token, address)
        self.assertEqual((rc, result), (0, "valid"), "token for %s does not verify" % address)

    def submit(self, rcpts):
        marker = new_marker()
        body = make_body(marker, self.LOGIN, rcpts[0])
        final = submit_raw(SERVER, self.LOGIN, self.PASSWORD, self.LOGIN, rcpts, body)
        lines = parse_token_reply(final)
        self.assertEqual(len(lines), len(rcpts) + 1, final)
        expected = list(rcpts) + [self.LOGIN]
        for tl, addr in zip(lines, expected):
            self.assertLessEqual(len(tl.raw), 512, "reply line over 512 octets: %r" % tl.raw)
            if tl.address is None:
                # Left out only when the line with it would exceed 512 octets.
                self.assertGreater(len(tl.raw) + len("<%s> " % addr), 512,
                                   "address left out of a line that had room: %r" % tl.raw)
            else:
                self.assertEqual(tl.address, addr, "token lines not in RCPT order, sender last")
        row = self.assertStored(SERVER, marker, body, self.LOGIN, list(rcpts), self.LOGIN)
        self.assertTokenRows(row["message_id"], rcpts)
        return row, [(tl.token, a) for tl, a in zip(lines, expected)]

    def assertTokenRows(self, message_id, rcpts):
        rows = SERVER.sql("SELECT t.role, t.address, t.recipient_id, t.revoked_at, r.position, r.address AS raddr "
                          "FROM tokens t LEFT JOIN recipients r ON r.recipient_id = t.recipient_id "
                          "WHERE t.message_id = %d ORDER BY t.role = 'sender', r.position" % message_id)
        self.assertEqual(len(rows), len(rcpts) + 1, "tokens rows for the message")
        for i, (row, addr) in enumerate(zip(rows, rcpts)):
            self.assertEqual((row["role"], row["address"], row["position"], row["raddr"]),
                             ("recipient", addr, i + 1, addr))
            self.assertIsNone(row["revoked_at"])
        self.assertEqual((rows[-1]["role"], rows[-1]["address"], rows[-1]["recipient_id"]),
                         ("sender", self.LOGIN, None))

    def test_one_recipient(self):
        _, toks = self.submit(["one@example.net"])
        for t, a in toks:
            self.assertValid(t, a)

    def test_two_recipients_and_tampering(self):
        row, toks = self.submit(["two-a@example.net", "two-b@example.com"])
        for t, a in toks:
            self.assertValid(t, a)
        (t0, a0), (t1, a1), (ts, sender) = toks
        self.assertEqual(len({t0, t1, ts}), 3, "tokens must differ")
        # One character of the signed part changed: refused.
        # Flip a character in the middle of the payload (not the last base64
        # character, whose low bits may be padding, nor the footer).
        i = len("v4.public.") + len(t0.split(".")[2]) // 2
        flipped = t0[:i] + ("A" if t0[i] != "A" else "B") + t0[i + 1:]
        rc, result = self.verify(flipped, a0)
        self.assertNotEqual(rc, 0, "a tampered token verified")
        self.assertIn(result, ("bad_signature", "malformed"))
        # A recipient's token is not valid for another address.
        rc, result = self.verify(t0, a1)
        self.assertNotEqual(rc, 0)
        self.assertEqual(result, "wrong_address")
        # Revoking one token revokes it alone.
        SERVER.submitctl("token", "revoke", t0)
        rc, result = self.verify(t0, a0)
        self.assertNotEqual(rc, 0)
        self.assertEqual(result, "revoked")
        self.assertValid(t1, a1)
        self.assertValid(ts, sender)
        # Revoking by message revokes the rest.
        SERVER.submitctl("token", "revoke", "--message", row["public_id"])
        for t, a in toks:
            rc, result = self.verify(t, a)
            self.assertNotEqual(rc, 0)
            self.assertEqual(result, "revoked")
        left = SERVER.sql("SELECT count(*) AS n FROM tokens WHERE message_id = %d AND revoked_at IS NULL"
                          % row["message_id"])[0]["n"]
        self.assertEqual(left, 0)

    def test_hundred_recipients(self):
        rcpts = ["r%03d@example.net" % i for i in range(100)]
        _, toks = self.submit(rcpts)
        for t, a in toks:
            self.assertValid(t, a)

    def test_hundred_and_first_recipient_refused(self):
        with SERVER.raw(tls=True) as c:
            c.login_session(self.LOGIN, self.PASSWORD)
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % self.LOGIN).code, 250)
            c.send("".join("RCPT TO:<x%03d@example.net>\r\n" % i for i in range(101)))
            replies = [c.reply() for _ in range(101)]
            self.assertEqual([r.code for r in replies[:100]], [250] * 100)
            self.assertEqual(replies[100].code, 452, replies[100])
            self.assertTrue(replies[100].text.startswith("4.5.3"), replies[100])

    def test_maximum_length_addresses(self):
        local = "l" * 64
        # RFC 5321 limits: 64-octet local part, 253-octet domain of <= 63-octet labels.
        longest = local + "@" + ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
        self.assertEqual(len(longest), 64 + 1 + 253)
        # and the longest that fits the 256-octet path limit with its brackets
        path_max = local + "@" + ".".join(["e" * 63, "f" * 63, "g" * 61])
        self.assertEqual(len(path_max) + 2, 256)
        _, toks = self.submit([longest, path_max, "short@example.net"])
        for t, a in toks:
            self.assertValid(t, a)
        self.assertEqual(self.verify(toks[0][0], path_max)[1], "wrong_address")


# ----------------------------------------------------------- no tokens

class NoTokenTests(StoredMixin, unittest.TestCase):
    LOGIN, PASSWORD = "plain@example.org", "no tokens here"

    @classmethod
    def setUpClass(cls):
        cls.srv = Submitd({"tokens.enabled": "false"})
        cls.srv.__enter__()
        cls.srv.add_user(cls.LOGIN, cls.PASSWORD)

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def test_smtplib_gets_public_id(self):
        marker = new_marker()
        body = make_body(marker, self.LOGIN)
        s = smtplib.SMTP("127.0.0.1", self.srv.port, local_hostname="nt.client.test", timeout=30)
        self.addCleanup(s.close)
        s.starttls(context=client_tls_context())
        s.login(self.LOGIN, self.PASSWORD)
        self.assertFalse(s.has_extn("xsubmittoken"), "XSUBMITTOKEN advertised with tokens disabled")
        self.assertEqual(s.mail(self.LOGIN)[0], 250)
        self.assertEqual(s.rcpt("alice@example.net")[0], 250)
        self.assertEqual(s.rcpt("bob@example.net")[0], 250)
        code, msg = s.data(body)
        s.quit()
        self.assertEqual(code, 250, msg)
        # The contract writes "250 2.0.0 <PUBLIC_ID> Saved"; the brackets may be
        # notation or literal, both are accepted, the id must be the stored one.
        m = re.fullmatch(rb"2\.0\.0 <?([A-Za-z0-9_-]+)>? Saved", msg)
        self.assertIsNotNone(m, msg)
        row = self.assertStored(self.srv, marker, body, self.LOGIN, ["alice@example.net", "bob@example.net"],
                                self.LOGIN)
        self.assertEqual(row["public_id"], m.group(1).decode())
        self.assertEqual(self.srv.sql("SELECT count(*) AS n FROM tokens WHERE message_id = %d"
                                      % row["message_id"])[0]["n"], 0)


# ------------------------------------------------------------- limits

class LimitTests(StoredMixin, unittest.TestCase):
    LOGIN, PASSWORD = "limit@example.org", "limits"

    @classmethod
    def setUpClass(cls):
        cls.srv = Submitd({"smtp.max_message_size": "4096", "smtp.max_recipients": "3"})
        cls.srv.__enter__()
        cls.srv.add_user(cls.LOGIN, cls.PASSWORD)

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def test_size_limit(self):
        with self.srv.raw(tls=True) as c:
            ehlo = c.ehlo()
            self.assertIn("SIZE 4096", ehlo.lines)
            self.assertEqual(c.auth_plain(self.LOGIN, self.PASSWORD).code, 235)
            # Declared too big: refused at MAIL (RFC 1870).
            r = c.cmd("MAIL FROM:<%s> SIZE=5000" % self.LOGIN)
            self.assertEqual(r.code, 552, r)
            self.assertTrue(r.text.startswith("5.3.4"), r)
            # Undeclared, too big: refused after the end of data, nothing stored.
            before = self.srv.message_count()
            big_marker = new_marker()
            big = ("Subject: %s\r\n\r\n" % big_marker).encode() + b"y" * 70 + b"\r\n"
            big = big * 80
            self.assertGreater(len(big), 4096)
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % self.LOGIN).code, 250)
            self.assertEqual(c.cmd("RCPT TO:<big@example.net>").code, 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(dot_stuff(big))
            r = c.reply()
            self.assertEqual(r.code, 552, r)
            self.assertTrue(r.text.startswith("5.3.4"), r)
            self.assertEqual(self.srv.message_count(), before)
            # The session goes on: a small message in the same session is accepted.
            marker = new_marker()
            small = make_body(marker, self.LOGIN)[:3000]
            small = small[:small.rfind(b"\r\n") + 2]
            self.assertEqual(c.cmd("MAIL FROM:<%s> SIZE=%d" % (self.LOGIN, len(small))).code, 250)
            self.assertEqual(c.cmd("RCPT TO:<small@example.net>").code, 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(dot_stuff(small))
            r = c.reply()
            self.assertEqual(r.code, 250, r)
        self.assertStored(self.srv, marker, small, self.LOGIN, ["small@example.net"], self.LOGIN)

    def test_recipient_limit(self):
        with self.srv.raw(tls=True) as c:
            c.login_session(self.LOGIN, self.PASSWORD)
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % self.LOGIN).code, 250)
            for i in range(3):
                self.assertEqual(c.cmd("RCPT TO:<r%d@example.net>" % i).code, 250)
            r = c.cmd("RCPT TO:<r3@example.net>")
            self.assertEqual(r.code, 452, r)
            self.assertTrue(r.text.startswith("4.5.3"), r)


# --------------------------------------------------------------- security

class SecurityTests(StoredMixin, unittest.TestCase):
    LOGIN, PASSWORD = "sec@example.org", "security pass"

    @classmethod
    def setUpClass(cls):
        SERVER.add_user(cls.LOGIN, cls.PASSWORD)

    def auth(self, login, password):
        """AUTH PLAIN on a fresh STARTTLS session; returns the Reply."""
        with SERVER.raw() as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            r = c.auth_plain(login, password)
            c.cmd("QUIT")
            return r

    def assertAuthRefused(self, login, password):
        r = self.auth(login, password)
        self.assertEqual(r.code, 535, r)
        self.assertTrue(r.text.startswith("5.7.8"), r)

    def assertAuthOK(self, login, password):
        r = self.auth(login, password)
        self.assertEqual(r.code, 235, r)
        self.assertTrue(r.text.startswith("2.7.0"), r)

    def test_greeting_and_ehlo(self):
        with SERVER.raw() as c:
            self.assertEqual(c.greeting.code, 220)
            self.assertRegex(c.greeting.lines[0], r"^%s ESMTP submitd" % re.escape(HOSTNAME))
            ehlo = c.ehlo()
            words = [l.split(" ")[0].upper() for l in ehlo.lines[1:]]
            for ext in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING",
                        "BINARYMIME", "STARTTLS", "XSUBMITTOKEN"):
                self.assertIn(ext, words, "EHLO before TLS: %r" % ehlo)
            self.assertIn("SIZE 52428800", ehlo.lines)
            self.assertNotIn("AUTH", words, "AUTH offered before TLS: %r" % ehlo)
            c.starttls()
            ehlo = c.ehlo()
            words = [l.split(" ")[0].upper() for l in ehlo.lines[1:]]
            self.assertNotIn("STARTTLS", words, "STARTTLS offered inside TLS")
            auth = [l for l in ehlo.lines if l.upper().startswith("AUTH ")]
            self.assertEqual(len(auth), 1, ehlo)
            self.assertEqual(set(auth[0].upper().split()[1:]), {"PLAIN", "LOGIN"})
        with SERVER.raw(tls=True) as c:
            ehlo = c.ehlo()
            words = [l.split(" ")[0].upper() for l in ehlo.lines[1:]]
            self.assertIn("AUTH", words, "implicit TLS: %r" % ehlo)
            self.assertNotIn("STARTTLS", words)

    def test_auth_refused_before_tls(self):
        with SERVER.raw() as c:
            c.ehlo()
            r = c.auth_plain(self.LOGIN, self.PASSWORD)
            self.assertEqual(r.code, 538, r)
            self.assertTrue(r.text.startswith("5.7.11"), r)
            r = c.cmd("AUTH LOGIN")
            self.assertEqual(r.code, 538, r)

    def test_mail_without_auth(self):
        with SERVER.raw() as c:
            c.ehlo()
            r = c.cmd("MAIL FROM:<%s>" % self.LOGIN)
            self.assertEqual(r.code, 530, r)
            self.assertTrue(r.text.startswith("5.7.0"), r)
            c.starttls()
            c.ehlo()
            r = c.cmd("MAIL FROM:<%s>" % self.LOGIN)
            self.assertEqual(r.code, 530, r)
            self.assertTrue(r.text.startswith("5.7.0"), r)

    def test_wrong_password_and_unknown_user(self):
        self.assertAuthRefused(self.LOGIN, self.PASSWORD + "x")
        self.assertAuthRefused("nobody@example.org", self.PASSWORD)
        # smtplib sees the same
        s = smtplib.SMTP("127.0.0.1", SERVER.port, timeout=30)
        self.addCleanup(s.close)
        s.starttls(context=client_tls_context())
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            s.login(self.LOGIN, "wrong")
        self.assertEqual(cm.exception.smtp_code, 535)

    def test_sender_not_owned_then_added(self):
        other = "alias-%s@example.org" % uuid.uuid4().hex[:8]
        with SERVER.raw(tls=True) as c:
            c.login_session(self.LOGIN, self.PASSWORD)
            r = c.cmd("MAIL FROM:<%s>" % other)
            self.assertEqual(r.code, 553, r)
            self.assertTrue(r.text.startswith("5.7.1"), r)
            r = c.cmd("MAIL FROM:<someone@example.org>")
            self.assertEqual(r.code, 553, r)
        SERVER.submitctl("user", "address", "add", self.LOGIN, other)
        marker = new_marker()
        body = make_body(marker, other)
        final = submit_raw(SERVER, self.LOGIN, self.PASSWORD, other, ["alice@example.net"], body)
        self.assertEqual(final.code, 250, final)
        self.assertStored(SERVER, marker, body, other, ["alice@example.net"], self.LOGIN)
        # and removed again: refused again on a new session
        SERVER.submitctl("user", "address", "del", self.LOGIN, other)
        with SERVER.raw(tls=True) as c:
            c.login_session(self.LOGIN, self.PASSWORD)
            r = c.cmd("MAIL FROM:<%s>" % other)
            self.assertEqual(r.code, 553, "after user address del: %r" % r)

    def test_utf8_password(self):
        login = "utf8-%s@example.org" % uuid.uuid4().hex[:8]
        SERVER.add_user(login, "p\u00e4ss w\u00f6rd \u2603")
        self.assertAuthOK(login, "p\u00e4ss w\u00f6rd \u2603")
        self.assertAuthRefused(login, "pass word \u2603")

    def test_passwd_takes_effect_without_restart(self):
        login = "pw-%s@example.org" % uuid.uuid4().hex[:8]
        SERVER.add_user(login, "old password 1")
        self.assertAuthOK(login, "old password 1")       # the server may now cache this login
        SERVER.submitctl("user", "passwd", login, input="new password 2\n")
        self.assertAuthRefused(login, "old password 1")
        self.assertAuthOK(login, "new password 2")
        self.assertAuthRefused(login, "old password 1")

    def test_user_del(self):
        login = "gone-%s@example.org" % uuid.uuid4().hex[:8]
        SERVER.add_user(login, "soon gone")
        self.assertIn(login, SERVER.submitctl("user", "list").stdout)
        self.assertAuthOK(login, "soon gone")
        SERVER.submitctl("user", "del", login)
        self.assertNotIn(login, SERVER.submitctl("user", "list").stdout)
        self.assertAuthRefused(login, "soon gone")

    def test_database_mode(self):
        mode = os.stat(SERVER.db_path).st_mode & 0o777
        self.assertEqual(mode, 0o600, "database mode %o" % mode)
        # SQLite gives the -wal and -shm files the database's mode; they hold
        # message bodies too.
        for suffix in ("-wal", "-shm"):
            p = SERVER.db_path + suffix
            if os.path.exists(p):
                self.assertEqual(os.stat(p).st_mode & 0o077, 0, "%s mode %o" % (p, os.stat(p).st_mode & 0o777))

    def test_tls_material_generated(self):
        tls_dir = os.path.join(SERVER.data_dir, "tls")
        files = os.listdir(tls_dir)
        self.assertTrue(files, "no certificate generated in %s" % tls_dir)
        # A private key must not be readable by group or others.
        for f in files:
            with open(os.path.join(tls_dir, f), "rb") as fh:
                if b"PRIVATE KEY" in fh.read():
                    mode = os.stat(os.path.join(tls_dir, f)).st_mode & 0o777
                    self.assertEqual(mode & 0o077, 0, "private key %s has mode %o" % (f, mode))


# --------------------------------------------------------------- storage

class SharedDatabaseTests(StoredMixin, unittest.TestCase):
    """submitctl and the sqlite3 CLI use the database while submitd runs:
    the server's WAL must stay in place, accepted messages must be visible
    to other processes at once, and the file must stay sound."""

    def test_admin_commands_while_running(self):
        srv = Submitd(keep=True)          # kept for the integrity check after shutdown
        self.addCleanup(shutil.rmtree, srv.tmp, True)
        with srv:
            srv.add_user("a@example.org", "pass a")
            # A first AUTH (the server opens the database in an auth worker) ...
            with srv.raw(tls=True) as c:
                c.login_session("a@example.org", "pass a")
            # ... then submitctl writes while the server holds the database open.
            srv.add_user("b@example.org", "pass b")
            wal = [f for f in os.listdir(srv.data_dir) if f.startswith("submitd.db-")]
            self.assertEqual(sorted(wal), ["submitd.db-shm", "submitd.db-wal"],
                             "the running server's WAL files were removed by another process")
            for login in ("a@example.org", "b@example.org"):
                marker = new_marker()
                body = make_body(marker, login)
                final = submit_raw(srv, login, "pass " + login[0], login, ["x@example.net"], body)
                self.assertEqual(final.code, 250, final)
                # visible to another process right after the 250
                self.assertStored(srv, marker, body, login, ["x@example.net"], login)
                srv.add_user("c-%s@example.org" % marker, "pass c")
            self.assertEqual(srv.message_count(), 2)
        # after shutdown (the context manager checked exit status 0)
        p = subprocess.run(["sqlite3", srv.db_path, "PRAGMA integrity_check"], capture_output=True, text=True)
        self.assertEqual(p.stdout.strip(), "ok", p.stderr)


# ---------------------------------------------------------- config check

class ConfigCheckTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def write(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, *args):
        user = ["-o", "server.user=" + run_as_user()] if run_as_user() else []
        p = run_program("submitd", list(args) + user + ["-n"], capture_output=True, timeout=60)
        return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")

    GOOD = ("# submitd test configuration\n"
            "[server]\n"
            "data_dir = {dir}/var\n"
            "hostname = check.test\n"
            "\n"
            "[smtp]\n"
            "listen = 127.0.0.1:2587\n"
            "listen_tls =\n"
            "max_recipients = 50\n"
            "\n"
            "[tokens]\n"
            "enabled = false\n")

    def test_good_config(self):
        path = self.write("good.conf", self.GOOD.format(dir=self.tmp.name))
        rc, out = self.check("-c", path)
        self.assertEqual(rc, 0, out)

    def test_unknown_key(self):
        text = self.GOOD.format(dir=self.tmp.name).replace("max_recipients = 50\n",
                                                            "max_recipients = 50\nfrobnicate = 1\n")
        path = self.write("unknown.conf", text)
        rc, out = self.check("-c", path)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:10:" % path, out)
        self.assertIn("frobnicate", out)

    def test_bad_value(self):
        text = self.GOOD.format(dir=self.tmp.name).replace("max_recipients = 50", "max_recipients = lots")
        path = self.write("badvalue.conf", text)
        rc, out = self.check("-c", path)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:9:" % path, out)
        self.assertIn("max_recipients", out)

    def test_out_of_range_value(self):
        text = self.GOOD.format(dir=self.tmp.name).replace("hostname = check.test",
                                                            "hostname = check.test\nmax_connections = 0")
        path = self.write("range.conf", text)
        rc, out = self.check("-c", path)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:5:" % path, out)

    def test_bad_override(self):
        path = self.write("good.conf", self.GOOD.format(dir=self.tmp.name))
        rc, out = self.check("-c", path, "-o", "smtp.no_such_key=1")
        self.assertEqual(rc, 1, out)
        self.assertIn("no_such_key", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
