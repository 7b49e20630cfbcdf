"""test_api.py: the verification HTTP API (docs/api.md) end to end.

A real submitd accepts messages over SMTP; the tokens from its 2.1.13 reply
are then presented to the API with curl (the client the team wants to
work), and with Python's http.client or a raw socket where curl cannot say
it (keep-alive on one connection, malformed and half-sent requests). Every
answer is checked against the rows the server wrote, read with the sqlite3
CLI: the message, the token, the signing keys, the audit trail.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_api
SUBMITD_KEEP=1 keeps each server's temporary directory (its log is submitd.log).
"""

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest
import uuid

from harness import (MEMCHECK, RawSMTP, Submitd, b64url_decode, dot_stuff, free_port, jti_of, kid_of,
                     parse_token_reply, run_as_user, run_program, which)

SERVER = None        # the shared server, started in setUpModule
SENT = 0             # messages SERVER accepted (for the metrics test)
ISSUED = []          # every token SERVER handed out (for the log test)

SENDER = "sender@example.org"
RCPT = "alice@example.net"
RCPT2 = "bob@example.com"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
SECRET_RE = re.compile(r"^sd_[A-Za-z0-9_-]{43}$")
SANITIZED = os.environ.get("SUBMITD_SANITIZE", "none") not in ("", "none")


class ApiServer(Submitd):
    """A Submitd with the HTTP API on a free loopback port of its own, and
    (for setting up messages quickly) loopback as a trusted network."""

    def __init__(self, options=None, **kw):
        opts = {"smtp.trusted_networks": "127.0.0.0/8",
                "http.listen": "127.0.0.1:%d" % free_port()}
        opts.update(options or {})
        super().__init__(opts, **kw)
        m = re.match(r"^127\.0\.0\.1:(\d+)$", self.options["http.listen"])
        self.http_port = int(m.group(1)) if m else None

    def url(self, path, scheme="http"):
        return "%s://127.0.0.1:%d%s" % (scheme, self.http_port, path)

    def add_service(self, name):
        secret = self.submitctl("service", "add", name).stdout.strip()
        if not SECRET_RE.match(secret):
            raise AssertionError("service add printed %r, not sd_ + 43 base64url characters" % secret)
        return secret


def setUpModule():
    global SERVER
    if which("curl") is None:
        raise AssertionError("curl is not installed: run scripts/deps test")
    SERVER = ApiServer()
    SERVER.__enter__()


def tearDownModule():
    SERVER.__exit__(None, None, None)


# --------------------------------------------------------------- SMTP setup

def new_marker():
    return "m" + uuid.uuid4().hex


def make_body(marker, size=0):
    body = ("From: <%s>\r\nTo: <%s>\r\nSubject: api %s\r\nMessage-ID: <%s@client.test>\r\n\r\n"
            "Body of %s\r\n.a line with a leading dot\r\n" % (SENDER, RCPT, marker, marker, marker)).encode()
    line = b"y" * 998 + b"\r\n"
    if len(body) < size:
        body += line * ((size - len(body)) // len(line) + 1)
    return body


def submit(srv, rcpts=(RCPT,), body=None, sender=SENDER):
    """Send one message over SMTP (trusted network). Returns (tokens, row,
    body): tokens maps each address (recipients and sender) to its token."""
    global SENT
    marker = new_marker()
    if body is None:
        body = make_body(marker)
    else:
        body = body.replace(b"@MARKER@", marker.encode())
    with RawSMTP(srv.port, timeout=120) as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s> SIZE=%d" % (sender, len(body)))
        if r.code != 250:
            raise AssertionError("MAIL refused: %r" % r)
        for a in rcpts:
            r = c.cmd("RCPT TO:<%s>" % a)
            if r.code != 250:
                raise AssertionError("RCPT refused: %r" % r)
        r = c.cmd("DATA")
        if r.code != 354:
            raise AssertionError("DATA refused: %r" % r)
        c.send(dot_stuff(body))
        lines = parse_token_reply(c.reply())
        c.cmd("QUIT")
    if len(lines) != len(rcpts) + 1:
        raise AssertionError("expected %d tokens, got %r" % (len(rcpts) + 1, lines))
    tokens = {}
    for l, a in zip(lines, list(rcpts) + [sender]):
        # one line per recipient in RCPT order, then the sender's
        if l.address is not None and l.address != a:
            raise AssertionError("token line for %r where %r was expected: %r" % (l.address, a, lines))
        tokens[a] = l.token
    if srv is SERVER:
        SENT += 1
        ISSUED.extend(tokens.values())
    row = srv.message_with_marker(marker)
    return tokens, row, body


def token_row(srv, token):
    """The tokens row of a token, found by its jti (the payload claim)."""
    jti = jti_of(token)
    rows = srv.sql("SELECT * FROM tokens WHERE token_id = '%s'" % jti)
    if len(rows) != 1:
        raise AssertionError("token %s has %d rows" % (jti, len(rows)))
    return rows[0]


def flip_signature(token):
    """One character of the signature changed (well inside the last 64
    octets, away from the last character and its unused bits)."""
    parts = token.split(".")
    body = parts[2]
    i = len(body) - 10
    parts[2] = body[:i] + ("B" if body[i] != "B" else "C") + body[i + 1:]
    out = ".".join(parts)
    assert out != token and len(out) == len(token)
    return out


def db_time_to_api(t):
    """'YYYY-MM-DD HH:MM:SS.sss' -> 'YYYY-MM-DDTHH:MM:SS.sssZ'"""
    return t.replace(" ", "T") + "Z"


def wait_rows(srv, query, n=1, timeout=10.0):
    """Audit rows are written by the writer thread: poll until n rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = srv.sql(query)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


# ------------------------------------------------------------------- HTTP

class Response:
    def __init__(self, status, reason, headers, body, what):
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value) in wire order
        self.body = body
        self.what = what            # the request, for failure messages

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        if len(vals) > 1:
            raise AssertionError("header %s sent %d times: %r" % (name, len(vals), self))
        return vals[0] if vals else None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("not JSON: %r" % self)

    def __repr__(self):
        return "<%s -> %d %s %r %r>" % (self.what, self.status, self.reason, self.headers, self.body[:400])


def parse_http(raw, what):
    """Parse curl -i output: skip interim 1xx answers (Expect: 100-continue)."""
    while True:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError("no complete header block in %r (%s)" % (raw[:300], what))
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise AssertionError("bad status line %r (%s)" % (lines[0], what))
        status = int(m.group(1))
        if 100 <= status < 200:
            raw = rest
            continue
        headers = []
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers.append((k.strip(), v.strip()))
        return Response(status, m.group(2), headers, rest, what)


def curl(srv, path, method=None, headers=(), data=None, head=False, scheme="http", extra=(), check=True):
    """One request with curl; returns the Response. headers: "Name: value"."""
    cmd = ["curl", "-sS", "-i", "--max-time", "120"]
    if head:
        cmd.append("-I")
    if method:
        cmd += ["-X", method]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["--data-binary", "@-"]
        if isinstance(data, str):
            data = data.encode()
    cmd += list(extra)
    cmd.append(srv.url(path, scheme))
    what = "%s %s%s" % (method or ("HEAD" if head else "POST" if data is not None else "GET"), path,
                        "".join(" [%s]" % (h if len(h) < 60 else h[:57] + "...") for h in headers))
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=180)
    if p.returncode != 0:
        if not check:
            return p
        raise AssertionError("curl exited %d for %s: %s" % (p.returncode, what, p.stderr.decode(errors="replace")))
    return parse_http(p.stdout, what)


def tok(token):
    return "Submit-Token: " + token


def bearer(secret):
    return "Authorization: Bearer " + secret


def metrics(srv, scheme="http"):
    r = curl(srv, "/metrics", scheme=scheme, extra=["-k"] if scheme == "https" else [])
    if r.status != 200:
        raise AssertionError("GET /metrics: %r" % r)
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", line)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        out[m.group(1)] = float(m.group(2))
    return out, r


class ApiMixin:
    def assertJsonError(self, r, status, result):
        """A JSON error answer: status, Content-Type and {"result", "error"}."""
        self.assertEqual(r.status, status, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"), r)
        j = r.json()
        if result is not None:
            self.assertEqual(j.get("result"), result, r)
        self.assertIsInstance(j.get("error"), str, r)
        self.assertTrue(j["error"], r)
        return j

    def assertUnauthorized(self, r):
        self.assertJsonError(r, 401, "unauthorized")
        self.assertRegex(r.header("WWW-Authenticate") or "", r"^Bearer\b", r)

    def assertAlive(self, srv):
        r = curl(srv, "/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "ok"})

    def assertAlive_tls(self, s):
        r = curl(s, "/healthz", scheme="https", extra=["-k"])
        self.assertEqual(r.status, 200, r)


# ------------------------------------------------------------------ verify

class Verify(ApiMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tokens, cls.row, cls.body = submit(SERVER, (RCPT, RCPT2))

    def check_valid(self, r, token, address, role):
        self.assertEqual(r.status, 200, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"), r)
        j = r.json()
        t = token_row(SERVER, token)
        row = self.row
        self.assertEqual(set(j), {"result", "token_id", "role", "address", "issuer", "key_id", "expires_at",
                                  "message"}, j)
        self.assertEqual(j["result"], "valid")
        self.assertEqual(j["token_id"], t["token_id"])
        self.assertEqual(j["token_id"], jti_of(token))
        self.assertEqual(j["role"], role)
        self.assertEqual(j["role"], t["role"])
        self.assertEqual(j["address"], address)
        self.assertEqual(j["address"], t["address"])
        self.assertEqual(j["issuer"], SERVER.hostname)
        self.assertEqual(j["key_id"], t["key_id"])
        self.assertTrue(j["key_id"].startswith("k4.pid."), j)
        self.assertRegex(j["expires_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(j["expires_at"], t["expires_at"].replace(" ", "T")[:19] + "Z")
        m = j["message"]
        self.assertEqual(set(m), {"id", "received_at", "envelope_from", "size", "sha256"}, m)
        self.assertEqual(m["id"], row["public_id"])
        self.assertRegex(m["received_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(m["received_at"], db_time_to_api(row["received_at"]))
        self.assertEqual(m["envelope_from"], SENDER)
        self.assertEqual(m["envelope_from"], row["envelope_from"])
        self.assertIs(type(m["size"]), int)
        self.assertEqual(m["size"], row["size"])
        self.assertEqual(m["size"], len(self.body))
        self.assertRegex(m["sha256"], HEX64)
        self.assertEqual(m["sha256"], row["sha256"])
        self.assertEqual(m["sha256"], hashlib.sha256(self.body).hexdigest())
        return j

    def test_get_recipient_token(self):
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT])])
        self.check_valid(r, self.tokens[RCPT], RCPT, "recipient")
        self.assertEqual(r.header("Cache-Control"), "no-store", r)

    def test_get_second_recipient_and_sender(self):
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT2])])
        self.check_valid(r, self.tokens[RCPT2], RCPT2, "recipient")
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[SENDER])])
        self.check_valid(r, self.tokens[SENDER], SENDER, "sender")

    def test_post_json(self):
        r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"],
                 data=json.dumps({"token": self.tokens[RCPT]}))
        self.check_valid(r, self.tokens[RCPT], RCPT, "recipient")
        r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"],
                 data=json.dumps({"token": self.tokens[RCPT2], "address": RCPT2}))
        self.check_valid(r, self.tokens[RCPT2], RCPT2, "recipient")

    def test_strings_escaped(self):
        """The answer is written in place, not by a JSON library: a quote
        and a backslash in a stored string are escaped, and come back as
        the same string once the answer is parsed."""
        sender = '"a\\"b c"@example.org'
        tokens, row, _ = submit(SERVER, (RCPT,), sender=sender)
        self.assertEqual(row["envelope_from"], sender)
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[sender])])
        self.assertEqual(r.status, 200, r)
        self.assertIn(b'\\"a\\\\\\"b c\\"@example.org', r.body)
        j = r.json()
        self.assertEqual(j["address"], sender)
        self.assertEqual(j["message"]["envelope_from"], sender)

    def test_post_header_form(self):
        r = curl(SERVER, "/v1/verify", method="POST", headers=[tok(self.tokens[SENDER]), "Submit-Address: " + SENDER])
        self.check_valid(r, self.tokens[SENDER], SENDER, "sender")

    def test_right_and_wrong_address_header(self):
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT]), "Submit-Address: " + RCPT])
        self.check_valid(r, self.tokens[RCPT], RCPT, "recipient")
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT]), "Submit-Address: " + RCPT2])
        self.assertJsonError(r, 409, "wrong_address")
        self.assertNotIn(b"token_id", r.body)

    def test_address_case(self):
        """docs/tokens.md section 4: the domain is compared without case,
        the local part exactly."""
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT]), "Submit-Address: alice@EXAMPLE.Net"])
        self.check_valid(r, self.tokens[RCPT], RCPT, "recipient")
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT]), "Submit-Address: Alice@example.net"])
        self.assertJsonError(r, 409, "wrong_address")

    def test_wrong_address_json(self):
        r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"],
                 data=json.dumps({"token": self.tokens[RCPT], "address": "mallory@example.net"}))
        self.assertJsonError(r, 409, "wrong_address")

    def test_malformed(self):
        for bad in ("not-a-token", "v4.public.!!!!", "v4.local." + self.tokens[RCPT][10:],
                    self.tokens[RCPT] + "=", self.tokens[RCPT] + "."):
            with self.subTest(token=bad[:30]):
                r = curl(SERVER, "/v1/verify", headers=[tok(bad)])
                self.assertJsonError(r, 400, "malformed")

    def test_malformed_json_token(self):
        r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"],
                 data=json.dumps({"token": "v4.public.xyz"}))
        self.assertJsonError(r, 400, "malformed")

    def test_bad_signature(self):
        bad = flip_signature(self.tokens[RCPT])
        r = curl(SERVER, "/v1/verify", headers=[tok(bad)])
        self.assertJsonError(r, 422, "bad_signature")
        # the genuine token is still fine
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT])])
        self.assertEqual(r.status, 200, r)

    def test_unknown_key(self):
        with ApiServer() as other:
            foreign, _, _ = submit(other)
        self.assertNotEqual(token_row_kid(foreign), SERVER.sql("SELECT key_id FROM signing_keys")[0]["key_id"])
        r = curl(SERVER, "/v1/verify", headers=[tok(foreign[RCPT])])
        self.assertJsonError(r, 404, "unknown_key")

    def test_revoked(self):
        tokens, _, _ = submit(SERVER)
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[RCPT])])
        self.assertEqual(r.status, 200, r)
        p = SERVER.submitctl("token", "revoke", tokens[RCPT])
        self.assertEqual(p.returncode, 0)
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[RCPT])])
        self.assertJsonError(r, 403, "revoked")
        # only that one: the sender's copy of the same message is still valid
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[SENDER])])
        self.assertEqual(r.status, 200, r)

    def test_missing_token(self):
        r = curl(SERVER, "/v1/verify")
        self.assertJsonError(r, 400, "missing_token")
        r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"], data="{}")
        self.assertJsonError(r, 400, "missing_token")
        r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"],
                 data=json.dumps({"address": RCPT}))
        self.assertJsonError(r, 400, "missing_token")

    def test_bad_json(self):
        for body in ('{"token": ', "[1, 2]", '"v4.public.x"', '{"token": 42}', "\x00\x01"):
            with self.subTest(body=body):
                r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"], data=body)
                self.assertJsonError(r, 400, "bad_request")

    def test_overlong_address_not_ignored(self):
        """An expected address the server cannot compare must not be dropped
        silently: the answer may be 400 or 409, never "valid"."""
        long_addr = "a" * 1100 + "@example.net"
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT]), "Submit-Address: " + long_addr])
        self.assertIn(r.status, (400, 409), r)
        self.assertNotEqual(r.json().get("result"), "valid", r)
        r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"],
                 data=json.dumps({"token": self.tokens[RCPT], "address": long_addr}))
        self.assertIn(r.status, (400, 409), r)
        self.assertNotEqual(r.json().get("result"), "valid", r)

    def test_token_never_in_url(self):
        """A token in the query string is not read: the request has no token."""
        r = curl(SERVER, "/v1/verify?token=" + self.tokens[RCPT])
        self.assertJsonError(r, 400, "missing_token")


def token_row_kid(tokens):
    """The kid in the footer of one of the tokens."""
    return kid_of(next(iter(tokens.values())))


class Expiry(ApiMixin, unittest.TestCase):
    def test_expired_verify_and_fetch(self):
        with ApiServer({"tokens.lifetime": "2"}) as s:
            secret = s.add_service("reader")
            tokens, _, _ = submit(s)
            r = curl(s, "/v1/verify", headers=[tok(tokens[RCPT])])
            self.assertEqual(r.status, 200, r)
            before, _ = metrics(s)
            time.sleep(3.5)
            r = curl(s, "/v1/verify", headers=[tok(tokens[RCPT])])
            self.assertJsonError(r, 410, "expired")
            r = curl(s, "/v1/message", headers=[tok(tokens[SENDER]), bearer(secret)])
            self.assertJsonError(r, 410, "expired")
            after, _ = metrics(s)
            key = 'submitd_tokens_refused_total{result="expired"}'
            self.assertEqual(after[key], before[key] + 2)
            rows = wait_rows(s, "SELECT * FROM audit_log WHERE result = 'expired' ORDER BY audit_id", 2)
            self.assertEqual([(x["action"], x["token_id"]) for x in rows],
                             [("verify", jti_of(tokens[RCPT])), ("fetch", jti_of(tokens[SENDER]))])
            self.assertEqual(rows[1]["service"], "reader")


class Retention(ApiMixin, unittest.TestCase):
    def test_retention_purge(self):
        """retention.keep=1: a delivered message's stored copy (and its token
        rows) go after a second; the still unexpired token then gets 410 Gone,
        and a fetch says why: "purged"."""
        with ApiServer({"retention.keep": "1", "retention.interval": "1"}) as s:
            secret = s.add_service("reader")
            tokens, row, _ = submit(s)
            # with a relay, retention keeps a copy while a recipient is
            # queued: mark it delivered so the test holds either way
            s.sql("UPDATE recipients SET state = 'delivered' WHERE message_id = %d" % row["message_id"])
            deadline = time.monotonic() + 20
            while s.sql("SELECT 1 FROM message_bodies WHERE message_id = %d" % row["message_id"]):
                self.assertLess(time.monotonic(), deadline, "retention did not purge the body in 20 s")
                time.sleep(0.2)
            r = curl(s, "/v1/verify", headers=[tok(tokens[RCPT])])
            self.assertEqual(r.status, 410, r)
            self.assertIn(r.json()["result"], ("expired", "purged"), r)
            r = curl(s, "/v1/message", headers=[tok(tokens[RCPT]), bearer(secret)])
            self.assertJsonError(r, 410, "purged")


# ------------------------------------------------------------------- fetch

class Fetch(ApiMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.secret = SERVER.add_service("fetcher")
        cls.tokens, cls.row, cls.body = submit(SERVER, (RCPT,))

    def test_get_exact_bytes(self):
        r = curl(SERVER, "/v1/message", headers=[tok(self.tokens[RCPT]), bearer(self.secret)])
        self.assertEqual(r.status, 200, r)
        stored = SERVER.body(self.row["message_id"])
        self.assertEqual(stored, self.body)
        self.assertEqual(r.body, stored)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), self.row["sha256"])
        self.assertEqual(r.header("Content-Type"), "message/rfc822")
        self.assertEqual(r.header("Content-Length"), str(self.row["size"]))
        self.assertEqual(r.header("ETag"), '"%s"' % self.row["sha256"])
        self.assertEqual(r.header("X-Submit-Message-Id"), self.row["public_id"])
        self.assertIsNone(r.header("Transfer-Encoding"), r)

    def test_sender_token_and_address(self):
        r = curl(SERVER, "/v1/message", headers=[tok(self.tokens[SENDER]), "Submit-Address: " + SENDER,
                                                 bearer(self.secret)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, self.body)

    def test_head(self):
        r = curl(SERVER, "/v1/message", head=True, headers=[tok(self.tokens[RCPT]), bearer(self.secret)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "message/rfc822")
        self.assertEqual(r.header("Content-Length"), str(self.row["size"]))
        self.assertEqual(r.header("ETag"), '"%s"' % self.row["sha256"])
        self.assertEqual(r.header("X-Submit-Message-Id"), self.row["public_id"])
        self.assertEqual(r.body, b"")

    def test_head_sends_no_body(self):
        """Raw socket: after the HEAD answer's headers the next bytes on the
        connection must be the answer to the following request."""
        with socket.create_connection(("127.0.0.1", SERVER.http_port), timeout=10) as s:
            s.sendall(("HEAD /v1/message HTTP/1.1\r\nHost: x\r\nSubmit-Token: %s\r\n"
                       "Authorization: Bearer %s\r\n\r\n" % (self.tokens[RCPT], self.secret)).encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "closed before the HEAD headers: %r" % data)
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            self.assertTrue(rest.startswith(b"HTTP/1.1 200"), "bytes after the HEAD answer: %r" % rest[:200])
            self.assertIn(b'{"status":"ok"}', rest)

    def test_refusals(self):
        """The token classes are refused on fetch exactly as on verify."""
        other_tokens, _, _ = submit(SERVER)
        SERVER.submitctl("token", "revoke", other_tokens[RCPT])
        with ApiServer() as other:
            foreign, _, _ = submit(other)
        cases = [
            ("malformed", [tok("v4.public.nope")], 400, "malformed"),
            ("missing", [], 400, "missing_token"),
            ("bad_signature", [tok(flip_signature(self.tokens[RCPT]))], 422, "bad_signature"),
            ("unknown_key", [tok(foreign[RCPT])], 404, "unknown_key"),
            ("revoked", [tok(other_tokens[RCPT])], 403, "revoked"),
            ("wrong_address", [tok(self.tokens[RCPT]), "Submit-Address: " + RCPT2], 409, "wrong_address"),
        ]
        for name, hdrs, status, result in cases:
            with self.subTest(case=name):
                r = curl(SERVER, "/v1/message", headers=hdrs + [bearer(self.secret)])
                self.assertJsonError(r, status, result)
                self.assertNotEqual(r.header("Content-Type"), "message/rfc822")
                r = curl(SERVER, "/v1/verify", headers=hdrs)
                self.assertJsonError(r, status, result)

    def test_purged(self):
        tokens, row, _ = submit(SERVER)
        r = curl(SERVER, "/v1/message", head=True, headers=[tok(tokens[RCPT]), bearer(self.secret)])
        self.assertEqual(r.status, 200, r)
        SERVER.sql("DELETE FROM message_bodies WHERE message_id = %d" % row["message_id"])
        r = curl(SERVER, "/v1/message", headers=[tok(tokens[RCPT]), bearer(self.secret)])
        self.assertJsonError(r, 410, "purged")
        # the token itself is still valid: verify says so
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[RCPT])])
        self.assertEqual(r.status, 200, r)

    def test_cli_fetch_matches_api(self):
        opts = SERVER.option_args()
        p = run_program("submitctl", opts + ["message", "fetch", self.tokens[RCPT], "--address", RCPT],
                        capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        r = curl(SERVER, "/v1/message", headers=[tok(self.tokens[RCPT]), bearer(self.secret)])
        self.assertEqual(p.stdout, r.body)
        p = run_program("submitctl", opts + ["message", "fetch", flip_signature(self.tokens[RCPT])],
                        capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, b"")
        self.assertIn(b"result=bad_signature", p.stderr)


# ---------------------------------------------------------- access control

class Access(ApiMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tokens, cls.row, cls.body = submit(SERVER)

    def test_fetch_needs_credential(self):
        r = curl(SERVER, "/v1/message", headers=[tok(self.tokens[RCPT])])
        self.assertUnauthorized(r)
        self.assertNotIn(self.body[:40], r.body)

    def test_service_lifecycle(self):
        secret = SERVER.add_service("reader")
        listing = SERVER.submitctl("service", "list").stdout
        self.assertRegex(listing, r"(?m)^reader\b")
        self.assertNotIn(secret, listing)
        # only the hash is stored
        rows = SERVER.sql("SELECT * FROM services WHERE name = 'reader'")
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["secret_sha256"], hashlib.sha256(secret.encode()).hexdigest())
        self.assertNotIn(secret, json.dumps(SERVER.sql("SELECT * FROM services")))

        r = curl(SERVER, "/v1/message", headers=[tok(self.tokens[RCPT]), bearer(secret)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, self.body)

        wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        for name, hdr in (("wrong secret", bearer(wrong)), ("no scheme", "Authorization: " + secret),
                          ("basic", "Authorization: Basic " + secret), ("empty bearer", "Authorization: Bearer ")):
            with self.subTest(case=name):
                r = curl(SERVER, "/v1/message", headers=[tok(self.tokens[RCPT]), hdr])
                self.assertUnauthorized(r)

        p = SERVER.submitctl("service", "del", "reader")
        self.assertEqual(p.returncode, 0)
        self.assertNotRegex(SERVER.submitctl("service", "list").stdout, r"(?m)^reader\b")
        r = curl(SERVER, "/v1/message", headers=[tok(self.tokens[RCPT]), bearer(secret)])
        self.assertUnauthorized(r)

    def test_service_names(self):
        p = SERVER.submitctl("service", "add", "has space", check=False)
        self.assertNotEqual(p.returncode, 0)
        SERVER.add_service("dup")
        p = SERVER.submitctl("service", "add", "dup", check=False)
        self.assertNotEqual(p.returncode, 0)
        p = SERVER.submitctl("service", "del", "no-such-service", check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_verify_open_by_default(self):
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT])])
        self.assertEqual(r.status, 200, r)
        for path in ("/v1/keys", "/healthz", "/metrics"):
            with self.subTest(path=path):
                self.assertEqual(curl(SERVER, path).status, 200)

    def test_wrong_credential_refused_where_optional(self):
        """A credential that is presented is checked even where none is
        required: a wrong one is refused rather than ignored."""
        secret = SERVER.add_service("optional")
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT]), bearer(secret + "x")])
        self.assertUnauthorized(r)
        r = curl(SERVER, "/v1/keys", headers=[bearer(secret + "x")])
        self.assertUnauthorized(r)
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT]), bearer(secret)])
        self.assertEqual(r.status, 200, r)
        # and a good one names the service in the audit trail of a refusal
        last = SERVER.sql("SELECT coalesce(max(audit_id), 0) AS n FROM audit_log")[0]["n"]
        r = curl(SERVER, "/v1/verify", headers=[tok(self.tokens[RCPT]), "Submit-Address: x@example.net",
                                                bearer(secret)])
        self.assertEqual(r.status, 409, r)
        rows = wait_rows(SERVER, "SELECT * FROM audit_log WHERE audit_id > %d" % last)
        self.assertEqual([(x["action"], x["result"], x["service"]) for x in rows],
                         [("verify", "wrong_address", "optional")])

    def test_auth_verify_keys_metrics(self):
        with ApiServer({"http.auth_verify": "true", "http.auth_keys": "true",
                        "http.auth_metrics": "true"}) as s:
            tokens, _, _ = submit(s)
            secret = s.add_service("checker")
            r = curl(s, "/v1/verify", headers=[tok(tokens[RCPT])])
            self.assertUnauthorized(r)
            r = curl(s, "/v1/verify", headers=["Content-Type: application/json"],
                     data=json.dumps({"token": tokens[RCPT]}))
            self.assertUnauthorized(r)
            r = curl(s, "/v1/verify", headers=[tok(tokens[RCPT]), bearer(secret[:-2])])
            self.assertUnauthorized(r)
            r = curl(s, "/v1/verify", headers=[tok(tokens[RCPT]), bearer(secret)])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["result"], "valid")
            for path in ("/v1/keys", "/metrics"):
                with self.subTest(path=path):
                    self.assertUnauthorized(curl(s, path))
                    self.assertEqual(curl(s, path, headers=[bearer(secret)]).status, 200)
            # health stays open: it is what a load balancer polls
            self.assertAlive(s)

    def test_auth_fetch_false_on_loopback(self):
        with ApiServer({"http.auth_fetch": "false"}) as s:
            tokens, _, body = submit(s)
            r = curl(s, "/v1/message", headers=[tok(tokens[RCPT])])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, body)
            rows = wait_rows(s, "SELECT * FROM audit_log WHERE action = 'fetch'")
            self.assertEqual(len(rows), 1, rows)
            self.assertIsNone(rows[0]["service"])
            self.assertEqual(rows[0]["result"], "served")

    def check_config(self, opts):
        args = ["-n"]
        if run_as_user():
            opts = dict(opts, **{"server.user": run_as_user()})
        for k, v in opts.items():
            args += ["-o", "%s=%s" % (k, v)]
        return run_program("submitd", args, capture_output=True, text=True, timeout=60)

    def test_public_listener_without_fetch_auth_refused(self):
        port = free_port()
        base = {"server.data_dir": os.path.join(SERVER.tmp, "unused")}
        p = self.check_config(dict(base, **{"http.listen": "0.0.0.0:%d" % port, "http.auth_fetch": "false"}))
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("auth_fetch", p.stdout + p.stderr)
        # the same listener with the credential required, or loopback without: fine
        p = self.check_config(dict(base, **{"http.listen": "0.0.0.0:%d" % port, "http.auth_fetch": "true"}))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = self.check_config(dict(base, **{"http.listen": "127.0.0.1:%d" % port, "http.auth_fetch": "false"}))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = self.check_config(dict(base, **{"http.listen": "127.0.0.1:%d, [::]:%d" % (port, port),
                                            "http.auth_fetch": "false"}))
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_public_listener_without_fetch_auth_does_not_start(self):
        s = ApiServer({"http.listen": "0.0.0.0:%d" % free_port(), "http.auth_fetch": "false"})
        try:
            with self.assertRaises(RuntimeError) as cm:
                s.start()
            self.assertIn("before event=ready", str(cm.exception))
            self.assertNotEqual(s.proc.returncode, 0)
        finally:
            s.proc = None
            if s.log_file:
                s.log_file.close()
            s.cleanup()


# ------------------------------------------------------------------- audit

class Audit(ApiMixin, unittest.TestCase):
    def test_fetch_and_refused_verify_recorded(self):
        secret = SERVER.add_service("auditor")
        tokens, _, _ = submit(SERVER)
        jti = jti_of(tokens[RCPT])
        last = SERVER.sql("SELECT coalesce(max(audit_id), 0) AS n FROM audit_log")[0]["n"]
        r = curl(SERVER, "/v1/message", headers=[tok(tokens[RCPT]), bearer(secret)])
        self.assertEqual(r.status, 200, r)
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[RCPT]), "Submit-Address: " + RCPT2])
        self.assertEqual(r.status, 409, r)
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[RCPT])])
        self.assertEqual(r.status, 200, r)
        # claims are read only from a token whose signature verified: a forged
        # payload must not put its jti into the audit trail
        r = curl(SERVER, "/v1/verify", headers=[tok(flip_signature(tokens[RCPT]))])
        self.assertEqual(r.status, 422, r)
        r = curl(SERVER, "/v1/message", headers=[tok(tokens[SENDER]), "Submit-Address: " + RCPT, bearer(secret)])
        self.assertEqual(r.status, 409, r)
        rows = wait_rows(SERVER, "SELECT * FROM audit_log WHERE audit_id > %d ORDER BY audit_id" % last, 4)
        got = [(x["action"], x["result"], x["service"], x["token_id"]) for x in rows]
        self.assertEqual(got, [("fetch", "served", "auditor", jti),
                               ("verify", "wrong_address", None, jti),
                               ("verify", "bad_signature", None, None),
                               ("fetch", "wrong_address", "auditor", jti_of(tokens[SENDER]))])
        for x in rows:
            self.assertEqual(x["client_address"], "127.0.0.1")
            self.assertRegex(x["at"], r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")

    def test_unparsable_and_unauthorized(self):
        last = SERVER.sql("SELECT coalesce(max(audit_id), 0) AS n FROM audit_log")[0]["n"]
        tokens, _, _ = submit(SERVER)
        r = curl(SERVER, "/v1/verify", headers=[tok("v4.public.garbage")])
        self.assertEqual(r.status, 400, r)
        r = curl(SERVER, "/v1/message", headers=[tok(tokens[RCPT])])
        self.assertEqual(r.status, 401, r)
        rows = wait_rows(SERVER, "SELECT * FROM audit_log WHERE audit_id > %d ORDER BY audit_id" % last, 2)
        got = [(x["action"], x["result"], x["service"], x["token_id"]) for x in rows]
        self.assertEqual(got, [("verify", "malformed", None, None), ("fetch", "unauthorized", None, None)])


    def test_request_errors_recorded(self):
        """Refusals before any token is checked are recorded too, with the
        result name the client was given."""
        secret = SERVER.add_service("auditor2")
        last = SERVER.sql("SELECT coalesce(max(audit_id), 0) AS n FROM audit_log")[0]["n"]
        r = curl(SERVER, "/v1/message", headers=[tok("v4.public." + "A" * 5000), bearer(secret)])
        self.assertJsonError(r, 400, "malformed")
        r = curl(SERVER, "/v1/message", headers=[bearer(secret)])
        self.assertJsonError(r, 400, "missing_token")
        r = curl(SERVER, "/v1/verify")
        self.assertJsonError(r, 400, "missing_token")
        r = curl(SERVER, "/v1/verify", headers=["Content-Type: application/json"], data="{")
        self.assertJsonError(r, 400, "bad_request")
        rows = wait_rows(SERVER, "SELECT * FROM audit_log WHERE audit_id > %d ORDER BY audit_id" % last, 4)
        got = [(x["action"], x["result"], x["service"], x["token_id"]) for x in rows]
        self.assertEqual(got, [("fetch", "malformed", "auditor2", None),
                               ("fetch", "missing_token", "auditor2", None),
                               ("verify", "missing_token", None, None),
                               ("verify", "bad_request", None, None)])


# -------------------------------------------------------------------- keys

class Keys(ApiMixin, unittest.TestCase):
    def check_key(self, k, db):
        self.assertEqual(set(k), {"key_id", "public_key", "public_key_hex", "state", "created_at", "retired_at",
                                  "node"}, k)
        self.assertEqual(k["node"], "submitd.test")     # tokens.issuer, by default the hostname
        self.assertTrue(k["key_id"].startswith("k4.pid."), k)
        self.assertTrue(k["public_key"].startswith("k4.public."), k)
        self.assertRegex(k["public_key_hex"], HEX64)
        self.assertEqual(k["key_id"], db["key_id"])
        self.assertEqual(k["public_key_hex"], db["hex"].lower())
        self.assertEqual(b64url_decode(k["public_key"][len("k4.public."):]).hex(), k["public_key_hex"])
        self.assertEqual(k["state"], db["state"])
        self.assertRegex(k["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        if db["retired_at"] is None:
            self.assertIsNone(k["retired_at"])
        else:
            self.assertRegex(k["retired_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def db_keys(self, s):
        return {r["key_id"]: r for r in s.sql(
            "SELECT key_id, hex(public_key) AS hex, state, created_at, retired_at FROM signing_keys")}

    def test_keys_and_rotation(self):
        with ApiServer() as s:
            r = curl(s, "/v1/keys")
            self.assertEqual(r.status, 200, r)
            keys = r.json()["keys"]
            db = self.db_keys(s)
            self.assertEqual(len(keys), 1, keys)
            self.assertEqual(keys[0]["state"], "active")
            self.check_key(keys[0], db[keys[0]["key_id"]])
            # submitctl key export agrees
            export = s.submitctl("key", "export").stdout.split()
            self.assertIn(keys[0]["public_key"], export)
            self.assertIn(keys[0]["public_key_hex"], export)
            old_token, _, _ = submit(s)

            s.submitctl("key", "rotate")
            r = curl(s, "/v1/keys")
            keys = r.json()["keys"]
            db = self.db_keys(s)
            self.assertEqual(len(keys), 2, keys)
            self.assertEqual(sorted(k["state"] for k in keys), ["active", "retired"])
            for k in keys:
                self.check_key(k, db[k["key_id"]])
            retired = [k for k in keys if k["state"] == "retired"][0]
            self.assertEqual(retired["key_id"], token_row_kid(old_token))
            self.assertIsNotNone(retired["retired_at"])
            # the retired key still verifies its tokens; new ones use the new key
            self.assertEqual(curl(s, "/v1/verify", headers=[tok(old_token[RCPT])]).status, 200)
            new_token, _, _ = submit(s)
            active = [k for k in keys if k["state"] == "active"][0]
            self.assertEqual(token_row_kid(new_token), active["key_id"])
            r = curl(s, "/v1/verify", headers=[tok(new_token[RCPT])])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["key_id"], active["key_id"])


# ------------------------------------------------------ health and metrics

class HealthMetrics(ApiMixin, unittest.TestCase):
    def test_healthz(self):
        r = curl(SERVER, "/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("application/json"), r)
        self.assertEqual(r.json(), {"status": "ok"})

    def test_healthz_unavailable(self):
        with ApiServer() as s:
            self.assertAlive(s)
            s.sql("ALTER TABLE signing_keys RENAME TO signing_keys_away")
            try:
                r = curl(s, "/healthz")
                self.assertEqual(r.status, 503, r)
                j = r.json()
                self.assertEqual(j.get("status"), "unavailable", r)
                self.assertIsInstance(j.get("error"), str, r)
            finally:
                s.sql("ALTER TABLE signing_keys_away RENAME TO signing_keys")
            self.assertAlive(s)

    def test_metrics_format(self):
        submit(SERVER)
        m, r = metrics(SERVER)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4")
        text = r.body.decode()
        for name, typ in (("submitd_sessions", "gauge"), ("submitd_sessions_total", "counter"),
                          ("submitd_messages_accepted_total", "counter"),
                          ("submitd_messages_refused_total", "counter"),
                          ("submitd_bytes_accepted_total", "counter"), ("submitd_tokens_issued_total", "counter"),
                          ("submitd_tokens_verified_total", "counter"),
                          ("submitd_tokens_refused_total", "counter"), ("submitd_fetches_total", "counter"),
                          ("submitd_auth_total", "counter"), ("submitd_commit_latency_seconds", "histogram"),
                          ("submitd_writer_queue_depth", "gauge")):
            with self.subTest(metric=name):
                self.assertIn("\n# TYPE %s %s\n" % (name, typ), "\n" + text)
                self.assertIn("\n# HELP %s " % name, "\n" + text)
        self.assertGreaterEqual(m["submitd_messages_accepted_total"], SENT)
        self.assertEqual(m["submitd_messages_accepted_total"], SERVER.message_count())
        self.assertGreaterEqual(m["submitd_sessions_total"], SENT)
        self.assertGreaterEqual(m["submitd_tokens_issued_total"], 2 * SENT)
        self.assertEqual(m["submitd_bytes_accepted_total"],
                         SERVER.sql("SELECT sum(size) AS n FROM messages")[0]["n"])
        for reason in ("too_big", "bare_cr_lf", "nul", "long_line", "storage"):
            self.assertIn('submitd_messages_refused_total{reason="%s"}' % reason, m)
        for result in ("malformed", "bad_signature", "unknown_key", "expired", "revoked", "wrong_address"):
            self.assertIn('submitd_tokens_refused_total{result="%s"}' % result, m)
        for result in ("ok", "failed"):
            self.assertIn('submitd_auth_total{result="%s"}' % result, m)
        # histogram: cumulative buckets ending in +Inf = _count
        buckets = re.findall(r'^submitd_commit_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)
        self.assertGreaterEqual(len(buckets), 2, buckets)
        self.assertEqual(buckets[-1][0], "+Inf")
        values = [float(v) for _, v in buckets]
        self.assertEqual(values, sorted(values))
        les = [float(le) for le, _ in buckets[:-1]]
        self.assertEqual(les, sorted(les))
        self.assertEqual(values[-1], m["submitd_commit_latency_seconds_count"])
        self.assertGreaterEqual(m["submitd_commit_latency_seconds_count"], SENT)
        self.assertGreater(m["submitd_commit_latency_seconds_sum"], 0)
        self.assertIn("submitd_writer_queue_depth", m)

    def test_counters_move(self):
        secret = SERVER.add_service("metrics-reader")
        tokens, _, _ = submit(SERVER)
        before, _ = metrics(SERVER)
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[RCPT])])
        self.assertEqual(r.status, 200, r)
        mid, _ = metrics(SERVER)
        self.assertEqual(mid["submitd_tokens_verified_total"], before["submitd_tokens_verified_total"] + 1)
        r = curl(SERVER, "/v1/verify", headers=[tok(flip_signature(tokens[RCPT]))])
        self.assertEqual(r.status, 422, r)
        r = curl(SERVER, "/v1/verify", headers=[tok(tokens[RCPT]), "Submit-Address: nobody@example.net"])
        self.assertEqual(r.status, 409, r)
        r = curl(SERVER, "/v1/verify", headers=[tok("v4.public.x")])
        self.assertEqual(r.status, 400, r)
        r = curl(SERVER, "/v1/message", headers=[tok(tokens[RCPT]), bearer(secret)])
        self.assertEqual(r.status, 200, r)
        after, _ = metrics(SERVER)
        for result, n in (("bad_signature", 1), ("wrong_address", 1), ("malformed", 1), ("expired", 0),
                          ("revoked", 0), ("unknown_key", 0)):
            key = 'submitd_tokens_refused_total{result="%s"}' % result
            self.assertEqual(after[key], mid[key] + n, key)
        self.assertEqual(after["submitd_fetches_total"], mid["submitd_fetches_total"] + 1)
        submit(SERVER)
        later, _ = metrics(SERVER)
        self.assertEqual(later["submitd_messages_accepted_total"], after["submitd_messages_accepted_total"] + 1)
        self.assertEqual(later["submitd_tokens_issued_total"], after["submitd_tokens_issued_total"] + 2)
        self.assertEqual(later["submitd_commit_latency_seconds_count"],
                         after["submitd_commit_latency_seconds_count"] + 1)


# ------------------------------------------------------------------ errors

class Errors(ApiMixin, unittest.TestCase):
    """Abuse on a server with small limits; the server must go on serving."""

    @classmethod
    def setUpClass(cls):
        cls.srv = ApiServer({"http.timeout": "2", "http.max_body_size": "1024"})
        cls.srv.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def test_unknown_path(self):
        for path in ("/", "/v1", "/v1/verify/extra", "/v2/verify", "/V1/VERIFY", "/metrics.txt"):
            with self.subTest(path=path):
                r = curl(self.srv, path)
                self.assertEqual(r.status, 404, r)
                self.assertTrue(r.header("Content-Type").startswith("application/json"), r)
                self.assertEqual(r.json(), {"error": "not found"})

    def test_wrong_method(self):
        for method, path, allow in (("DELETE", "/v1/verify", {"GET", "POST"}), ("PUT", "/v1/verify", {"GET", "POST"}),
                                    ("POST", "/v1/keys", {"GET"}), ("POST", "/v1/message", {"GET", "HEAD"}),
                                    ("DELETE", "/v1/message", {"GET", "HEAD"}), ("POST", "/healthz", {"GET"}),
                                    ("PATCH", "/metrics", {"GET"})):
            with self.subTest(method=method, path=path):
                r = curl(self.srv, path, method=method)
                self.assertEqual(r.status, 405, r)
                got = {m.strip() for m in (r.header("Allow") or "").split(",") if m.strip()}
                self.assertEqual(got, allow, r)
                self.assertIsInstance(r.json().get("error"), str)

    def test_huge_header(self):
        r = curl(self.srv, "/healthz", headers=["X-Padding: " + "a" * 20000], check=False)
        if isinstance(r, subprocess.CompletedProcess):
            self.fail("no HTTP answer to a 20 KB header (curl exit %d: %s)" % (r.returncode, r.stderr))
        self.assertEqual(r.status // 100, 4, r)
        self.assertAlive(self.srv)

    def test_huge_token_header(self):
        r = curl(self.srv, "/v1/verify", headers=[tok("v4.public." + "A" * 6000)])
        self.assertEqual(r.status, 400, r)
        self.assertAlive(self.srv)

    def test_body_too_large(self):
        body = json.dumps({"token": "v4.public." + "A" * 2000})
        self.assertGreater(len(body), 1024)
        r = curl(self.srv, "/v1/verify", headers=["Content-Type: application/json"], data=body)
        self.assertEqual(r.status, 413, r)
        # just under the limit is read (and refused for what it says, not its size)
        body = json.dumps({"token": "v4.public." + "A" * 900})
        self.assertLess(len(body), 1024)
        r = curl(self.srv, "/v1/verify", headers=["Content-Type: application/json"], data=body)
        self.assertJsonError(r, 400, "malformed")
        self.assertAlive(self.srv)

    def test_chunked_refused(self):
        """No body without Content-Length: a chunked one is 411, large or small."""
        for n in (4000, 10):
            body = json.dumps({"token": "v4.public." + "A" * n})
            r = curl(self.srv, "/v1/verify", headers=["Content-Type: application/json", "Transfer-Encoding: chunked"],
                     data=body)
            j = self.assertJsonError(r, 411, None)
            self.assertIn("Content-Length", j["error"])
        self.assertAlive(self.srv)

    def test_slow_client_dropped(self):
        with socket.create_connection(("127.0.0.1", self.srv.http_port), timeout=20) as s:
            s.sendall(b"GET /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nSubmit-To")
            t0 = time.monotonic()
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except (socket.timeout, TimeoutError):
                self.fail("half a request: still connected after 20 s with http.timeout=2 (got %r)" % data)
            except ConnectionResetError:
                pass
            print("\nhalf-sent request dropped after %.1f s; answer %r" % (time.monotonic() - t0, data[:60]))
            self.assertNotIn(b"HTTP/1.1 200", data)
        self.assertAlive(self.srv)

    def test_idle_keepalive_dropped(self):
        c = http.client.HTTPConnection("127.0.0.1", self.srv.http_port, timeout=20)
        c.request("GET", "/healthz")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        r.read()
        try:
            self.assertEqual(c.sock.recv(1), b"", "idle connection not closed")
        except (socket.timeout, TimeoutError):
            self.fail("idle keep-alive connection still open after 20 s with http.timeout=2")
        except ConnectionResetError:
            pass
        c.close()

    def test_malformed_requests(self):
        for raw in (b"BLAH\r\n\r\n", b"GET\r\n\r\n", b"GET /healthz HTTP/9.9\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n",
                    b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n"):
            with self.subTest(raw=raw[:30]):
                with socket.create_connection(("127.0.0.1", self.srv.http_port), timeout=20) as s:
                    s.sendall(raw)
                    data = b""
                    try:
                        while True:
                            chunk = s.recv(65536)
                            if not chunk:
                                break
                            data += chunk
                    except ConnectionResetError:
                        pass
                    except (socket.timeout, TimeoutError):
                        self.fail("malformed request %r: connection neither answered nor closed" % raw[:30])
                    # either closed without a word, or answered with an error
                    if data:
                        self.assertRegex(data, rb"^HTTP/1\.[01] [45]\d\d ", data[:200])
                self.assertAlive(self.srv)

    def test_zz_smtp_after_http_abuse(self):
        """Runs last in this class (name order): after all of the above,
        SMTP still takes a message and the API still verifies its token."""
        tokens, row, body = submit(self.srv)
        self.assertEqual(row["size"], len(body))
        r = curl(self.srv, "/v1/verify", headers=[tok(tokens[RCPT])])
        self.assertEqual(r.status, 200, r)


class Tls(ApiMixin, unittest.TestCase):
    def test_https(self):
        with ApiServer({"http.tls": "true"}) as s:
            tokens, _, _ = submit(s)
            r = curl(s, "/v1/verify", scheme="https", headers=[tok(tokens[RCPT])], extra=["-k"])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["result"], "valid")
            # the certificate is the SMTP one
            with open(os.path.join(s.data_dir, "tls", "cert.pem")) as f:
                cert = f.read()
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as raw:
                with ctx.wrap_socket(raw) as t:
                    der = t.getpeercert(binary_form=True)
            self.assertEqual(ssl.DER_cert_to_PEM_cert(der).strip(), cert.strip())
            # plain HTTP on the TLS port gets no HTTP answer
            p = curl(s, "/healthz", check=False, extra=["--max-time", "10"])
            self.assertIsInstance(p, subprocess.CompletedProcess, "plain HTTP answered on a TLS listener: %r" % p)
            self.assertAlive_tls(s)


# --------------------------------------------------------------- keep-alive

class KeepAlive(ApiMixin, unittest.TestCase):
    def test_two_requests_one_connection(self):
        secret = SERVER.add_service("keepalive")
        tokens, _, body = submit(SERVER)
        c = http.client.HTTPConnection("127.0.0.1", SERVER.http_port, timeout=20)
        try:
            c.request("GET", "/v1/verify", headers={"Submit-Token": tokens[RCPT]})
            r1 = c.getresponse()
            b1 = r1.read()
            self.assertEqual(r1.status, 200, b1)
            self.assertEqual(json.loads(b1)["result"], "valid")
            self.assertFalse(r1.will_close, r1.getheaders())
            sock1 = c.sock
            local1 = sock1.getsockname()
            c.request("GET", "/v1/message", headers={"Submit-Token": tokens[RCPT],
                                                     "Authorization": "Bearer " + secret})
            r2 = c.getresponse()
            b2 = r2.read()
            self.assertEqual(r2.status, 200)
            self.assertEqual(b2, body)
            self.assertIs(c.sock, sock1, "http.client had to reconnect")
            self.assertEqual(c.sock.getsockname(), local1)
            c.request("POST", "/v1/verify", body=json.dumps({"token": tokens[SENDER], "address": SENDER}),
                      headers={"Content-Type": "application/json"})
            r3 = c.getresponse()
            self.assertEqual(r3.status, 200, r3.read())
            r3.read()
            self.assertIs(c.sock, sock1, "http.client had to reconnect")
        finally:
            c.close()


# ------------------------------------------------------------------ memory

class Memory(ApiMixin, unittest.TestCase):
    @unittest.skipIf(SANITIZED, "sanitizer builds keep freed memory in quarantine: RSS says nothing there")
    def test_20mb_fetch_bounded_rss(self):
        s = ApiServer()
        try:
            s.start()
            secret = s.add_service("big")
            body = make_body("@MARKER@", 20 * 1024 * 1024)
            self.assertGreater(len(body), 20 * 1024 * 1024)
            tokens, row, body = submit(s, body=body)
            self.assertEqual(row["size"], len(body))
            # a fresh process, so that receiving the message does not hide the fetch's peak
            s.stop()
            s.start()
            pid = s.proc.pid
            self.assertEqual(curl(s, "/v1/verify", headers=[tok(tokens[RCPT])]).status, 200)
            before = status_kb(pid, "VmHWM")
            rss_before = status_kb(pid, "VmRSS")
            r = curl(s, "/v1/message", headers=[tok(tokens[RCPT]), bearer(secret)])
            after = status_kb(pid, "VmHWM")
            rss_after = status_kb(pid, "VmRSS")
            print("\n20 MB fetch: VmHWM %d kB -> %d kB (+%d kB), VmRSS %d kB -> %d kB, message %d octets"
                  % (before, after, after - before, rss_before, rss_after, len(body)))
            self.assertEqual(r.status, 200, r.status)
            self.assertEqual(len(r.body), len(body))
            self.assertEqual(hashlib.sha256(r.body).hexdigest(), row["sha256"])
            self.assertEqual(r.body, body)
            if not MEMCHECK:    # under valgrind, RSS is valgrind's: the fetch itself is still checked
                self.assertLess(after - before, 8 * 1024)
            s.stop()
        finally:
            s.cleanup()


class AbortedFetch(ApiMixin, unittest.TestCase):
    def test_client_leaves_mid_body(self):
        """A client that closes in the middle of a big body: the server
        stops, says so in the log, and goes on serving (also that message)."""
        with ApiServer() as s:
            secret = s.add_service("quitter")
            tokens, row, body = submit(s, body=make_body("@MARKER@", 8 * 1024 * 1024))
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", s.http_port), timeout=20) as c:
                    c.sendall(("GET /v1/message HTTP/1.1\r\nHost: x\r\nSubmit-Token: %s\r\n"
                               "Authorization: Bearer %s\r\n\r\n" % (tokens[RCPT], secret)).encode())
                    got = b""
                    while len(got) < 100000:
                        chunk = c.recv(65536)
                        self.assertTrue(chunk, "closed early: %r" % got[:200])
                        got += chunk
                    self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:200])
            deadline = time.monotonic() + 10
            while "event=api_fetch_aborted" not in s.log():
                self.assertLess(time.monotonic(), deadline, "no event=api_fetch_aborted in the log:\n" + s.log())
                time.sleep(0.1)
            self.assertAlive(s)
            r = curl(s, "/v1/message", headers=[tok(tokens[RCPT]), bearer(secret)])
            self.assertEqual(r.status, 200)
            self.assertEqual(hashlib.sha256(r.body).hexdigest(), row["sha256"])


def status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


# --------------------------------------------------------------------- log

def log_form(token):
    """How the log shows a token (docs/operations.md): "..." and the last 12
    characters before the footer, the end of the signature."""
    return "..." + token.rsplit(".", 1)[0][-12:]


class TokenLog(ApiMixin, unittest.TestCase):
    def test_tokens_not_logged_in_full(self):
        secret = SERVER.add_service("logcheck")
        tokens, _, _ = submit(SERVER)
        t = tokens[RCPT]
        self.assertEqual(curl(SERVER, "/v1/verify", headers=[tok(t)]).status, 200)
        self.assertEqual(curl(SERVER, "/v1/verify", headers=[tok(flip_signature(t))]).status, 422)
        self.assertEqual(curl(SERVER, "/v1/message", headers=[tok(t), bearer(secret)]).status, 200)
        self.assertEqual(curl(SERVER, "/v1/verify", headers=[tok(t), "Submit-Address: x@example.net"]).status, 409)
        log = SERVER.log()
        # the API events are there, each with a shortened token only
        events = re.findall(r"event=api_(verify|fetch) result=(\S+) token=(\S*) service=(\S+) ip=(\S+)", log)
        mine = [e for e in events if e[2] == log_form(t)]
        self.assertEqual([(e[0], e[1], e[3]) for e in mine],
                         [("verify", "valid", "-"), ("fetch", "valid", "logcheck"), ("verify", "wrong_address", "-")],
                         "api events for the token in the log:\n" + log[-3000:])
        self.assertIn(("verify", "bad_signature", log_form(flip_signature(t)), "-", "127.0.0.1"), events)
        for e in events:
            self.assertLessEqual(len(e[2]), 25, "a logged token is not short: %r" % (e,))
        self.assertGreaterEqual(len(ISSUED), 2)
        for full in ISSUED + [flip_signature(t)]:
            self.assertNotIn(full, log)
            # nor the part before the footer, nor its signature half
            self.assertNotIn(full.rsplit(".", 1)[0], log)
            self.assertNotIn(full.rsplit(".", 1)[0][-86:], log)
        self.assertNotIn(secret, log)


if __name__ == "__main__":
    unittest.main()


# ------------------------------------------------------------------ threads

class Threads(ApiMixin, unittest.TestCase):
    """http.threads event loops share the listeners, the counters and the
    TLS context: many clients on keep-alive HTTPS connections, with the
    certificate reloaded (SIGHUP) in the middle, get exactly the answers
    and the counts they would get from one thread."""

    THREADS = 4
    CLIENTS = 12
    ROUNDS = 20

    def test_concurrent_clients_and_reload(self):
        with ApiServer({"http.threads": str(self.THREADS), "http.tls": "true"}) as s:
            tokens, _, _ = submit(s, (RCPT, RCPT2))
            good = [tokens[RCPT], tokens[RCPT2], tokens[SENDER]]
            bad = flip_signature(tokens[RCPT])
            names = set()
            for tid in os.listdir("/proc/%d/task" % s.proc.pid):
                try:
                    with open("/proc/%d/task/%s/comm" % (s.proc.pid, tid)) as f:
                        names.add(f.read().strip())
                except OSError:
                    pass
            if not MEMCHECK:   # valgrind runs every thread under its own name
                self.assertTrue({"sd-http%d" % i for i in range(self.THREADS)} <= names, names)
            before, _ = metrics(s, "https")
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            errors, counts, lock = [], {"valid": 0, "bad_signature": 0}, threading.Lock()

            def client(n):
                c = http.client.HTTPSConnection("127.0.0.1", s.http_port, timeout=60, context=ctx)
                try:
                    for i in range(self.ROUNDS):
                        t = bad if (n + i) % 5 == 0 else good[(n + i) % 3]
                        c.request("GET", "/v1/verify", headers={"Submit-Token": t})
                        r = c.getresponse()
                        j = json.loads(r.read())
                        want = "bad_signature" if t is bad else "valid"
                        if j.get("result") != want:
                            raise AssertionError("client %d request %d: %d %r" % (n, i, r.status, j))
                        with lock:
                            counts[want] += 1
                except Exception as e:        # reported by the main thread
                    errors.append(e)
                finally:
                    c.close()

            workers = [threading.Thread(target=client, args=(n,)) for n in range(self.CLIENTS)]
            for w in workers:
                w.start()
            for _ in range(3):
                s.proc.send_signal(signal.SIGHUP)
                time.sleep(0.2)
            for w in workers:
                w.join(300)
            self.assertEqual(errors, [])
            self.assertEqual(sum(counts.values()), self.CLIENTS * self.ROUNDS)
            after, _ = metrics(s, "https")
            self.assertEqual(after["submitd_tokens_verified_total"] - before["submitd_tokens_verified_total"],
                             counts["valid"])
            key = 'submitd_tokens_refused_total{result="bad_signature"}'
            self.assertEqual(after[key] - before[key], counts["bad_signature"])
            # every refusal is audited, whichever thread answered it
            rows = wait_rows(s, "SELECT audit_id FROM audit_log WHERE action = 'verify' AND result = 'bad_signature'",
                             counts["bad_signature"])
            self.assertEqual(len(rows), counts["bad_signature"])
            self.assertEqual(len(re.findall(r"event=reloaded what=tls", s.log())), 3)
            self.assertAlive_tls(s)
