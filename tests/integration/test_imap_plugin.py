"""test_imap_plugin.py: the Dovecot plugin imap_submit_token (imap/,
docs/imap.md) loaded into a real Dovecot 2.3, against a real submitd and
against a fake API that misbehaves.

A real submitd (harness.Submitd, loopback as a trusted network to submit
quickly, the API on a free loopback port, a service credential from
`submitctl service add`) and a private Dovecot (tests/integration/
dovecot.py) whose `protocol imap` loads the plugin built in this tree
(mail_plugin_dir = the build's imap/). Python's imaplib logs in and sends
`XSUBMITTOKEN <mailbox> <token>`; the test then reads the mailbox back:
- a sender token files the copy: tagged OK [APPENDUID v uid], BODY.PEEK[]
  byte-identical to what was submitted, \\Seen, INTERNALDATE the
  acceptance time; the capability XSUBMITTOKEN is advertised;
- the same token again, and the same message into the same mailbox, answer
  the same UID and add nothing;
- a recipient token, another user's token, a forged, a malformed, a
  revoked, an expired and a purged token are each refused with their own
  response code, and nothing is filed; a missing mailbox is NO [TRYCREATE];
- with submitd stopped: NO [XSUBMITTOKEN-UNAVAILABLE], nothing filed, and
  the session goes on (NOOP, then the same command works once submitd is
  back);
- a second Dovecot points the plugin at a fake API (a Python HTTP server in
  this file) that answers garbage JSON, a megabyte of JSON, a cut body, an
  HTML 500, a message that does not match its SHA-256 or size, or nothing
  at all: each is NO [XSUBMITTOKEN-UNAVAILABLE], nothing is filed, the
  session and Dovecot go on, and Dovecot's log has no panic or fatal
  error; the fake's well-formed answer is filed, and the requests it saw
  carry the credential and the address, and no token in the URL;
- submit_token_address_domain and submit_token_max_size, set per user from
  the userdb: a login without '@' files as login@domain and not for
  another domain, a login with '@' stays itself, a login without '@' and
  no domain is refused (logged); a message of exactly the limit is filed,
  one octet more is XSUBMITTOKEN-TOOBIG;
- redirects: a Redirector (307 to another base URL, as a cluster node for
  another node's token) in front of submitd is followed for verify (POST,
  same body) and fetch; a loop stops after submit_token_api_max_redirects,
  0 follows none, a change of scheme is refused (all logged);
- https: a TlsForwarder with a self-signed certificate in front of submitd,
  trusted by Dovecot's ssl_client_ca_file, files; a certificate Dovecot
  does not trust is NO [XSUBMITTOKEN-UNAVAILABLE] with the certificate
  error logged; https to https redirects are followed, https to http not.

Under memcheck (SUBMITD_VALGRIND=1, the memcheck suite) Dovecot runs every
imap process, and so the plugin, under valgrind as well (imap_under_memcheck).

Needs root (Dovecot switches to nobody for mail, see dovecot.py), the
packages dovecot-imapd and dovecot-dev (the plugin is built only with the
latter; meson registers this test only then) and SUBMITD_IMAP_PLUGIN, the
path of the built lib95_imap_submit_token_plugin.so (set by meson).

Run: SUBMITD_BUILD_DIR=build SUBMITD_IMAP_PLUGIN=build/imap/lib95_imap_submit_token_plugin.so \
     python3 -m unittest -v test_imap_plugin
"""

import base64
import datetime
import hashlib
import http.client
import http.server
import imaplib
import json
import os
import re
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from dovecot import MAIL_USER, Dovecot, dovecot_bin, quote
from harness import (MEMCHECK, RawSMTP, Submitd, b64url_decode, check_memcheck, dot_stuff, free_port,
                     memcheck_dir, parse_token_reply, valgrind_argv)

SENDER = "sender@example.org"      # SMTP sender, IMAP user
ALICE = "alice@example.net"        # recipient, IMAP user
BOB = "bob@example.org"            # another IMAP user
CAROL = "carol"                    # a login without '@': submit_token_address_domain example.org
DAVE = "dave"                      # a login without '@' and no domain: cannot use the command
ERIN = "erin@example.org"          # a login with '@' and a domain: the login is the address
SMALL = "small@example.org"        # submit_token_max_size = SMALL_MAX
SMALL_MAX = 400
NOREDIR = "noredirect@example.org"  # submit_token_api_max_redirects = 0
# per-user plugin settings from the userdb (passwd-file extra fields)
USER_FIELDS = {CAROL: "userdb_submit_token_address_domain=example.org",
               ERIN: "userdb_submit_token_address_domain=example.net",
               SMALL: "userdb_submit_token_max_size=%d" % SMALL_MAX,
               NOREDIR: "userdb_submit_token_api_max_redirects=0"}
PASSWORD = "imap pass phrase 3"
# submit_token_api_timeout of the tests, seconds; under memcheck submitd's
# API answers a verification in up to a few seconds
TIMEOUT = 15 if MEMCHECK else 3

SMTPD = None
DOVECOT = None
SECRET = None

imaplib.Commands.setdefault("XSUBMITTOKEN", ("AUTH", "SELECTED"))


def plugin_config(tmp, api_url, secret, extra=""):
    """The Dovecot configuration that loads the plugin from the build;
    extra: more plugin {} lines."""
    plugin = os.environ.get("SUBMITD_IMAP_PLUGIN", "")
    if not os.path.isfile(plugin):
        raise AssertionError("SUBMITD_IMAP_PLUGIN=%r is not the built plugin" % plugin)
    secret_file = os.path.join(tmp, "submit-token-secret")
    with open(secret_file, "w") as f:
        f.write(secret + "\n")
    os.chmod(secret_file, 0o644)      # read by the imap process (user nobody)
    return """mail_plugin_dir = %s
protocol imap {
  mail_plugins = $mail_plugins imap_submit_token
}
plugin {
  submit_token_api_url = %s
  submit_token_api_secret_file = %s
  submit_token_api_timeout = %d
%s}
""" % (os.path.dirname(os.path.abspath(plugin)), api_url, secret_file, TIMEOUT, extra)


def new_dovecot(api_url, secret, users=(SENDER, ALICE, BOB), conf="", plugin_extra=""):
    """A Dovecot with the plugin; conf: more global settings (e.g.
    ssl_client_ca_file), plugin_extra: more plugin {} lines."""
    d = Dovecot({u: PASSWORD for u in users}, user_fields=USER_FIELDS)
    if MEMCHECK:
        conf += imap_under_memcheck()
    # the configuration is written by the constructor: append ours to it
    with open(d.conf, "a") as f:
        f.write(conf + plugin_config(d.tmp, api_url, secret, plugin_extra))
    return d


def imap_under_memcheck():
    """Under memcheck (SUBMITD_VALGRIND=1), Dovecot runs every imap process,
    and so the plugin, under valgrind, logging next to submitd's logs
    (harness.memcheck_dir()): an error or a definite leak in any of them
    fails the file (tearDownModule, and harness's net at exit). Valgrind
    starts as root (Dovecot's imap drops to the mail user itself), so it can
    write there. Dovecot's own pools (data stack, alloconly) hide errors
    inside their blocks; what memcheck sees is the plugin's malloc'd
    buffers and every pool and object as a whole (an HTTP client, a stream,
    a mailbox not freed is a definite leak)."""
    argv = valgrind_argv(os.path.join(memcheck_dir(), "dovecot-imap.%p.log")) + ["--vgdb=no"]
    argv[0] = shutil.which("valgrind")     # Dovecot wants an absolute path
    imap = os.path.join(os.environ.get("SUBMITD_DOVECOT_LIBEXEC") or "/usr/lib/dovecot", "imap")
    return "service imap {\n  executable = %s %s\n}\n" % (" ".join(argv), imap)



def setUpModule():
    global SMTPD, DOVECOT, SECRET
    if os.geteuid() != 0:
        raise AssertionError("test_imap_plugin must run as root: its Dovecot switches to %s" % MAIL_USER)
    if dovecot_bin() is None:
        raise AssertionError("dovecot is not installed (package dovecot-imapd): run scripts/deps test")
    SMTPD = Submitd({"smtp.trusted_networks": "127.0.0.0/8"})
    unittest.addModuleCleanup(SMTPD.cleanup)
    SMTPD.start()
    SECRET = SMTPD.submitctl("service", "add", "dovecot").stdout.strip()
    DOVECOT = new_dovecot("http://127.0.0.1:%d" % SMTPD.http_port, SECRET,
                          users=(SENDER, ALICE, BOB, CAROL, DAVE, ERIN, SMALL))
    unittest.addModuleCleanup(DOVECOT.stop)
    DOVECOT.start()
    for user in (SENDER, ALICE, BOB, CAROL, DAVE, ERIN, SMALL):
        DOVECOT.create_folder(user, "Sent")


def tearDownModule():
    if SMTPD.proc is not None:
        SMTPD.stop()
    if MEMCHECK:
        # every Dovecot of the file has stopped (class and module cleanups
        # ran before): every imap process has written its report
        DOVECOT.stop()
        check_memcheck(os.path.join(memcheck_dir(), "dovecot-imap.*.log"), "Dovecot's imap with the plugin")


# ------------------------------------------------------------------ helpers

def submit(rcpts=(ALICE,), sender=SENDER, size=None):
    """One message over SMTP; (tokens by address, the submitted octets).
    size: pad the body to exactly that many octets."""
    marker = "m" + uuid.uuid4().hex
    body = ("From: <%s>\r\nTo: <%s>\r\nSubject: plugin %s\r\nMessage-ID: <%s@client.test>\r\n\r\n"
            "Body of %s\r\n.a line with a leading dot\r\n8 bit: gr\u00fc\u00dfe\r\n"
            % (sender, rcpts[0], marker, marker, marker)).encode()
    if size is not None:
        if size < len(body) + 2:
            raise AssertionError("size %d: the message has %d octets already" % (size, len(body)))
        body += b"x" * (size - len(body) - 2) + b"\r\n"
    with RawSMTP(SMTPD.port, timeout=60) as c:
        c.ehlo()
        for line, code in (("MAIL FROM:<%s>" % sender, 250),) + tuple(("RCPT TO:<%s>" % a, 250) for a in rcpts) \
                + (("DATA", 354),):
            r = c.cmd(line)
            if r.code != code:
                raise AssertionError("%s: %r" % (line, r))
        c.send(dot_stuff(body))
        lines = parse_token_reply(c.reply())
        c.cmd("QUIT")
    if len(lines) != len(rcpts) + 1:
        raise AssertionError("expected %d tokens: %r" % (len(rcpts) + 1, lines))
    return {a: l.token for l, a in zip(lines, list(rcpts) + [sender])}, body


def verify(token):
    c = http.client.HTTPConnection("127.0.0.1", SMTPD.http_port, timeout=30)
    try:
        c.request("POST", "/v1/verify", body=json.dumps({"token": token}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def internaldate(received_at):
    t = datetime.datetime.strptime(received_at, "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%d-%b-%Y %H:%M:%S +0000")


def xsubmittoken(m, mailbox, token):
    """(status, code or None, text) of one XSUBMITTOKEN."""
    typ, data = m._simple_command("XSUBMITTOKEN", quote(mailbox), quote(token))
    text = data[-1].decode() if data and data[-1] is not None else ""
    mm = re.match(r"^\[([^\]]*)\]\s*(.*)$", text)
    return typ, (mm.group(1) if mm else None), (mm.group(2) if mm else text)


def assert_logged(test, dovecot, regex):
    """Dovecot's log gets a line matching regex. The imap process hands its
    lines to Dovecot's log process, which may write one after the tagged
    answer has reached the test: wait for it a little."""
    deadline = time.monotonic() + 10
    while not re.search(regex, dovecot.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    test.assertRegex(dovecot.log(), regex)


def forge(token):
    """The token with one character of its signature (the end of the
    third part, before the footer) changed."""
    t = token.split(".")
    c = t[2][-20]
    t[2] = t[2][:-20] + ("A" if c != "A" else "B") + t[2][-19:]
    return ".".join(t)


# ------------------------------------------------------------------ real submitd

class PluginTests(unittest.TestCase):
    maxDiff = None

    def session(self, user=SENDER, dovecot=None):
        m = (dovecot or DOVECOT).connect(user, PASSWORD)
        self.addCleanup(lambda: m.logout() if m.state != "LOGOUT" else None)
        return m

    def assertFiledOnce(self, user, body, received_at, folder="Sent"):
        msgs = DOVECOT.folder(user, folder)
        same = [(uid, v) for uid, v in msgs.items() if v[2] == body]
        self.assertEqual(len(same), 1, msgs)
        uid, (flags, idate, _) = same[0]
        self.assertIn("\\Seen", flags)
        self.assertEqual(idate, internaldate(received_at))
        return uid

    def assertRefused(self, m, mailbox, token, code, user=SENDER):
        before = DOVECOT.folder(user, mailbox)
        typ, got, text = xsubmittoken(m, mailbox, token)
        self.assertEqual((typ, got), ("NO", code), text)
        self.assertEqual(DOVECOT.folder(user, mailbox), before)
        self.assertEqual(m.noop()[0], "OK")

    def test_files_sender_copy(self):
        tokens, body = submit()
        st, v = verify(tokens[SENDER])
        self.assertEqual(st, 200, v)
        m = self.session()
        typ, caps = m.capability()
        self.assertIn(b"XSUBMITTOKEN", caps[0].split())
        typ, code, text = xsubmittoken(m, "Sent", tokens[SENDER])
        self.assertEqual(typ, "OK", text)
        mm = re.match(r"^APPENDUID (\d+) (\d+)$", code or "")
        self.assertIsNotNone(mm, code)
        uid = self.assertFiledOnce(SENDER, body, v["message"]["received_at"])
        self.assertEqual(int(mm.group(2)), uid)
        typ, data = m.status("Sent", "(UIDVALIDITY)")
        self.assertIn(b"UIDVALIDITY %s" % mm.group(1).encode(), data[0])

        # idempotent: the same token, in this session and in a new one
        self.assertEqual(xsubmittoken(m, "Sent", tokens[SENDER])[:2], ("OK", code))
        m2 = self.session()
        self.assertEqual(xsubmittoken(m2, "Sent", tokens[SENDER])[:2], ("OK", code))
        self.assertFiledOnce(SENDER, body, v["message"]["received_at"])

        # another mailbox is another filing; a missing one is TRYCREATE
        archive = "Archive " + uuid.uuid4().hex[:6]
        DOVECOT.create_folder(SENDER, archive)
        typ, code2, text = xsubmittoken(m, archive, tokens[SENDER])
        self.assertEqual(typ, "OK", text)
        self.assertRegex(code2, r"^APPENDUID \d+ 1$")
        self.assertFiledOnce(SENDER, body, v["message"]["received_at"], archive)
        self.assertFiledOnce(SENDER, body, v["message"]["received_at"])
        self.assertRefused(m, "No such folder", tokens[SENDER], "TRYCREATE")

    def test_files_into_selected_mailbox(self):
        """The selected mailbox sees the new message (EXISTS) after filing."""
        tokens, body = submit()
        m = self.session()
        name = "Box " + uuid.uuid4().hex[:6]
        m.create(quote(name))
        m.select(quote(name))
        typ, code, text = xsubmittoken(m, name, tokens[SENDER])
        self.assertEqual(typ, "OK", text)
        m.noop()
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        self.assertEqual(data[0][1], body)

    def test_refusals(self):
        tokens, _ = submit(rcpts=(ALICE, BOB))
        m = self.session()
        # the recipient's token, presented by the recipient: wrong role
        self.assertRefused(self.session(ALICE), "Sent", tokens[ALICE], "XSUBMITTOKEN-WRONGROLE", user=ALICE)
        # the sender's token, presented by another user: wrong address
        self.assertRefused(self.session(BOB), "Sent", tokens[SENDER], "XSUBMITTOKEN-WRONGADDRESS", user=BOB)
        # a recipient token presented by the sender: wrong address
        self.assertRefused(m, "Sent", tokens[ALICE], "XSUBMITTOKEN-WRONGADDRESS")
        self.assertRefused(m, "Sent", forge(tokens[SENDER]), "XSUBMITTOKEN-BADSIGNATURE")
        self.assertRefused(m, "Sent", "v4.public.nonsense", "XSUBMITTOKEN-MALFORMED")
        self.assertRefused(m, "Sent", "not a token", "XSUBMITTOKEN-MALFORMED")
        # a key this submitd does not know: the footer names another kid
        t = tokens[SENDER].split(".")
        self.assertEqual(len(t), 4, tokens[SENDER])
        footer = json.loads(b64url_decode(t[3]))
        footer["kid"] = "k4.pid." + "A" * (len(footer["kid"]) - 7)
        other = base64.urlsafe_b64encode(json.dumps(footer, separators=(",", ":")).encode()).rstrip(b"=")
        self.assertRefused(m, "Sent", ".".join(t[:3] + [other.decode()]), "XSUBMITTOKEN-UNKNOWNKEY")
        SMTPD.submitctl("token", "revoke", tokens[SENDER])
        self.assertRefused(m, "Sent", tokens[SENDER], "XSUBMITTOKEN-REVOKED")
        # purged: the token is valid, the stored copy is gone
        tokens, _ = submit()
        _, v = verify(tokens[SENDER])
        SMTPD.sql("DELETE FROM message_bodies WHERE message_id = "
                  "(SELECT message_id FROM messages WHERE public_id = '%s')" % v["message"]["id"])
        self.assertRefused(m, "Sent", tokens[SENDER], "XSUBMITTOKEN-PURGED")
        # bad arguments are BAD, not a refusal
        with self.assertRaises(imaplib.IMAP4.error):
            m._simple_command("XSUBMITTOKEN", "Sent")
        self.assertEqual(m.noop()[0], "OK")

    def test_expired_and_unavailable(self):
        """Restarts submitd with 2-second tokens (same data, same keys), then
        stops it: each refusal has its code, and the session goes on."""
        m = self.session()
        SMTPD.stop()
        SMTPD.options["tokens.lifetime"] = "2"
        try:
            SMTPD.start()
            tokens, body = submit()
            time.sleep(3)
            self.assertRefused(m, "Sent", tokens[SENDER], "XSUBMITTOKEN-EXPIRED")
        finally:
            SMTPD.stop()
            del SMTPD.options["tokens.lifetime"]
        try:
            self.assertRefused(m, "Sent", "v4.public.eyJhIjoiYiJ9", "XSUBMITTOKEN-UNAVAILABLE")
        finally:
            SMTPD.start()
        tokens, body = submit()
        _, v = verify(tokens[SENDER])
        typ, code, text = xsubmittoken(m, "Sent", tokens[SENDER])
        self.assertEqual(typ, "OK", text)
        self.assertFiledOnce(SENDER, body, v["message"]["received_at"])

    def test_address_domain(self):
        """submit_token_address_domain (here from the userdb): a login
        without '@' is login@domain; a login with '@' is itself, whatever
        the domain; without a domain, a login without '@' is refused."""
        tokens, body = submit(sender="carol@example.org")
        _, v = verify(tokens["carol@example.org"])
        m = self.session(CAROL)
        typ, code, text = xsubmittoken(m, "Sent", tokens["carol@example.org"])
        self.assertEqual(typ, "OK", text)
        self.assertFiledOnce(CAROL, body, v["message"]["received_at"])
        # carol of another domain is not this login
        tokens, _ = submit(sender="carol@example.net")
        self.assertRefused(m, "Sent", tokens["carol@example.net"], "XSUBMITTOKEN-WRONGADDRESS", user=CAROL)
        # erin@example.org with domain example.net: her login is her address
        tokens, body = submit(sender=ERIN)
        _, v = verify(tokens[ERIN])
        m = self.session(ERIN)
        self.assertEqual(xsubmittoken(m, "Sent", tokens[ERIN])[0], "OK")
        self.assertFiledOnce(ERIN, body, v["message"]["received_at"])
        tokens, _ = submit(sender="erin@example.net")
        self.assertRefused(m, "Sent", tokens["erin@example.net"], "XSUBMITTOKEN-WRONGADDRESS", user=ERIN)
        # dave has no '@' and no domain: not configured, and logged
        tokens, _ = submit(sender="dave@example.org")
        m = self.session(DAVE)
        self.assertRefused(m, "Sent", tokens["dave@example.org"], "XSUBMITTOKEN-UNAVAILABLE", user=DAVE)
        assert_logged(self, DOVECOT, r"imap\(dave\).*Error: submit_token: .*submit_token_address_domain")

    def test_toobig(self):
        """submit_token_max_size (here SMALL_MAX octets, from the userdb):
        a message of exactly that size is filed, one octet more is
        XSUBMITTOKEN-TOOBIG, nothing filed, and the session goes on."""
        m = self.session(SMALL)
        tokens, body = submit(sender=SMALL, size=SMALL_MAX + 1)
        _, v = verify(tokens[SMALL])
        self.assertEqual(v["message"]["size"], SMALL_MAX + 1)
        self.assertRefused(m, "Sent", tokens[SMALL], "XSUBMITTOKEN-TOOBIG", user=SMALL)
        tokens, body = submit(sender=SMALL, size=SMALL_MAX)
        _, v = verify(tokens[SMALL])
        typ, code, text = xsubmittoken(m, "Sent", tokens[SMALL])
        self.assertEqual(typ, "OK", text)
        self.assertFiledOnce(SMALL, body, v["message"]["received_at"])
        # other users keep the default (64 MiB)
        tokens, body = submit(size=SMALL_MAX + 1)
        self.assertEqual(xsubmittoken(self.session(), "Sent", tokens[SENDER])[0], "OK")


# ------------------------------------------------------------------ fake API

FAKE_BODY = b"From: <sender@example.org>\r\nSubject: fake\r\n\r\nfrom the fake API\r\n"


class FakeApi(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", free_port()), FakeHandler)
        self.mode = "good"
        self.requests = []
        self.lock = threading.Lock()


def good_verify(body=FAKE_BODY, size=None, sha=None, msgid=None):
    return json.dumps({
        "result": "valid", "token_id": "x", "role": "sender", "address": SENDER,
        "message": {"id": msgid or "fake" + uuid.uuid4().hex[:12], "received_at": "2024-02-29T12:34:56.789Z",
                    "envelope_from": SENDER, "size": len(body) if size is None else size,
                    "sha256": sha or hashlib.sha256(body).hexdigest()}}).encode()


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body, ctype="application/json", length=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = self.rfile.read(n)
        srv = self.server
        with srv.lock:
            srv.requests.append((self.command, self.path, dict(self.headers), req))
        mode = srv.mode
        if mode == "garbage":
            self.answer(200, b'{"result":"valid","role":"sender","message":{"size":1,,,}')
        elif mode == "huge":
            self.answer(200, b'{"result":"valid","pad":"' + b"x" * (1 << 20) + b'"}')
        elif mode == "deep":
            self.answer(200, b"[" * 5000 + b"]" * 5000)
        elif mode == "html500":
            self.answer(500, b"<html>oops</html>", "text/html")
        elif mode == "cut":
            self.answer(200, good_verify()[:40], length=400)
            self.close_connection = True
        elif mode == "silent":
            time.sleep(TIMEOUT + 3)
            self.close_connection = True
        elif mode == "badsha":
            self.answer(200, good_verify(sha="0" * 64))
        elif mode == "longer":
            self.answer(200, good_verify(size=len(FAKE_BODY) - 5))
        elif mode == "notyours":
            self.answer(409, b'{"result":"wrong_address","error":"x"}')
        else:
            self.answer(200, good_verify(msgid=srv.mode_msgid))

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append((self.command, self.path, dict(self.headers), b""))
        self.answer(200, FAKE_BODY, "message/rfc822")


class FakeApiTests(unittest.TestCase):
    """A second Dovecot whose plugin talks to FakeApi."""

    def check_concurrency(self):
        """While one XSUBMITTOKEN waits for a silent API, the session answers
        NOOP first; LOGOUT, and a connection dropped while a command
        waits, end cleanly."""
        before = self.dovecot.folder(SENDER, "Sent")
        self.api.mode = "silent"
        for ending in ("logout", "drop"):
            with socket.create_connection(("127.0.0.1", self.dovecot.port), timeout=30) as s:
                f = s.makefile("rb")
                f.readline()
                s.sendall(b'a LOGIN "%s" "%s"\r\n' % (SENDER.encode(), PASSWORD.encode()))
                self.assertTrue(f.readline().startswith(b"a OK"))
                s.sendall(b"b XSUBMITTOKEN Sent v4.public.eyJhIjoiYiJ9\r\nc NOOP\r\n")
                tagged = []
                while not tagged or tagged[-1] != b"c":
                    line = f.readline()
                    self.assertTrue(line, tagged)
                    if not line.startswith(b"*"):
                        tagged.append(line.split(b" ")[0])
                self.assertEqual(tagged, [b"c"])          # NOOP answered, XSUBMITTOKEN still waiting
                if ending == "logout":
                    s.sendall(b"d LOGOUT\r\n")
                    rest = f.read()
                    self.assertIn(b"d OK", rest)
        self.assertEqual(self.dovecot.folder(SENDER, "Sent"), before)

    @classmethod
    def setUpClass(cls):
        cls.api = FakeApi()
        cls.api.mode_msgid = "fake" + uuid.uuid4().hex[:12]
        threading.Thread(target=cls.api.serve_forever, daemon=True).start()
        cls.dovecot = new_dovecot("http://127.0.0.1:%d/" % cls.api.server_address[1], "sd_fake-secret")
        cls.dovecot.start()
        cls.dovecot.create_folder(SENDER, "Sent")

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()
        cls.api.shutdown()
        cls.api.server_close()

    def test_misbehaving_api(self):
        m = self.dovecot.connect(SENDER, PASSWORD)
        try:
            for mode in ("garbage", "huge", "deep", "html500", "cut", "silent", "badsha", "longer"):
                self.api.mode = mode
                typ, code, text = xsubmittoken(m, "Sent", "v4.public.eyJhIjoiYiJ9")
                self.assertEqual((typ, code), ("NO", "XSUBMITTOKEN-UNAVAILABLE"), "%s: %s" % (mode, text))
                self.assertEqual(self.dovecot.folder(SENDER, "Sent"), {}, mode)
                self.assertEqual(m.noop()[0], "OK", mode)
            self.api.mode = "notyours"
            self.assertEqual(xsubmittoken(m, "Sent", "v4.public.eyJhIjoiYiJ9")[:2],
                             ("NO", "XSUBMITTOKEN-WRONGADDRESS"))
            # a well-formed answer is filed: the fake is realistic
            self.api.mode = "good"
            with self.api.lock:
                self.api.requests.clear()
            typ, code, text = xsubmittoken(m, "Sent", "v4.public.eyJhIjoiYiJ9")
            self.assertEqual(typ, "OK", text)
            msgs = self.dovecot.folder(SENDER, "Sent")
            self.assertEqual([v[2] for v in msgs.values()], [FAKE_BODY])
            self.assertEqual([v[1] for v in msgs.values()], ["29-Feb-2024 12:34:56 +0000"])
        finally:
            m.logout()
        with self.api.lock:
            reqs = list(self.api.requests)
        self.assertEqual([(r[0], r[1]) for r in reqs], [("POST", "/v1/verify"), ("GET", "/v1/message")])
        for method, path, headers, body in reqs:
            self.assertEqual(headers.get("Authorization"), "Bearer sd_fake-secret")
        self.assertEqual(json.loads(reqs[0][3]), {"token": "v4.public.eyJhIjoiYiJ9", "address": SENDER})
        self.assertEqual(reqs[1][2].get("Submit-Token"), "v4.public.eyJhIjoiYiJ9")
        self.check_concurrency()
        log = self.dovecot.log()
        self.assertNotRegex(log, r"(?i)panic|fatal|killed with signal|segmentation")


# ------------------------------------------------------------------ https and redirects

def make_cert(directory, name):
    """A self-signed certificate for 127.0.0.1 (IP subjectAltName, as
    Dovecot's lib-ssl-iostream checks it): (cert file, key file)."""
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)            # ssl_client_ca_file is read by the imap process (nobody)
    return cert, key


class TlsForwarder:
    """A TLS terminator in front of a plain HTTP server: each connection is
    decrypted with the certificate `cert` (switchable between connections)
    and forwarded to 127.0.0.1:target_port (switchable too). One thread per
    connection, which alone uses its TLS socket."""

    def __init__(self, cert, target_port):
        self.cert = cert
        self.target_port = target_port
        self.handshake_errors = []
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.forward, args=(conn, self.cert, self.target_port), daemon=True).start()

    def forward(self, conn, cert, target_port):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        conn.settimeout(30)
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as e:
            self.handshake_errors.append(str(e))
            conn.close()
            return
        try:
            with tls, socket.create_connection(("127.0.0.1", target_port), timeout=30) as back:
                while True:
                    ready = [tls] if tls.pending() else select.select([tls, back], [], [], 30)[0]
                    if not ready:
                        return
                    for side, other in ((tls, back), (back, tls)):
                        if side in ready:
                            data = side.recv(65536)
                            if not data:
                                return
                            other.sendall(data)
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.closed = True
        self.sock.close()


class Redirector(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Answers every request 307 with Location = self.base + the request's
    path, as a cluster node does for another node's token, and records
    the requests."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, base=""):
        super().__init__(("127.0.0.1", free_port()), RedirectHandler)
        self.base = base
        self.requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def handle_error(self, request, client_address):
        pass            # lib-http may close once it has the 307's head

    def stop(self):
        self.shutdown()
        self.server_close()


class RedirectHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = self.rfile.read(n) if n else b""
        with self.server.lock:
            self.server.requests.append((self.command, self.path, dict(self.headers), req))
        body = b'{"error":"another node","node":"n2"}'
        self.send_response(307)
        self.send_header("Location", self.server.base + self.path)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = handle_any


class RedirectTests(unittest.TestCase):
    """A Dovecot whose plugin talks to a Redirector, which sends every
    request on to the real submitd (plain HTTP)."""

    @classmethod
    def setUpClass(cls):
        cls.redirector = Redirector()
        cls.dovecot = new_dovecot(cls.redirector.url, SECRET, users=(SENDER, NOREDIR))
        cls.dovecot.start()
        cls.dovecot.create_folder(SENDER, "Sent")
        cls.dovecot.create_folder(NOREDIR, "Sent")

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()
        cls.redirector.stop()

    def setUp(self):
        with self.redirector.lock:
            self.redirector.requests.clear()
        self.m = self.dovecot.connect(SENDER, PASSWORD)
        self.addCleanup(self.m.logout)

    def requests(self):
        with self.redirector.lock:
            return [(r[0], r[1]) for r in self.redirector.requests]

    def test_followed(self):
        """verify (POST, its body again) and fetch (GET, its headers again)
        each follow a 307 to submitd, and the copy is filed."""
        self.redirector.base = "http://127.0.0.1:%d" % SMTPD.http_port
        tokens, body = submit()
        typ, code, text = xsubmittoken(self.m, "Sent", tokens[SENDER])
        self.assertEqual(typ, "OK", text)
        self.assertIn(body, [v[2] for v in self.dovecot.folder(SENDER, "Sent").values()])
        self.assertEqual(self.requests(), [("POST", "/v1/verify"), ("GET", "/v1/message")])

    def test_refused(self):
        """A loop (of relative Locations) ends after submit_token_api_max_redirects
        (3) hops; a redirect from http to https is refused: each NO [XSUBMITTOKEN-
        UNAVAILABLE] with its reason logged, nothing filed."""
        before = self.dovecot.folder(SENDER, "Sent")
        tokens, _ = submit()
        # a relative Location, resolved against the request's URL: a loop
        self.redirector.base = "/next"
        self.assertEqual(xsubmittoken(self.m, "Sent", tokens[SENDER])[:2], ("NO", "XSUBMITTOKEN-UNAVAILABLE"))
        self.assertEqual(self.requests(), [("POST", "/next" * i + "/v1/verify") for i in range(4)])
        assert_logged(self, self.dovecot, r"Warning: submit_token: verify: redirected \(307\) more than "
                         r"submit_token_api_max_redirects=3 times")
        with self.redirector.lock:
            self.redirector.requests.clear()
        self.redirector.base = "https://127.0.0.1:%d" % SMTPD.http_port
        self.assertEqual(xsubmittoken(self.m, "Sent", tokens[SENDER])[:2], ("NO", "XSUBMITTOKEN-UNAVAILABLE"))
        self.assertEqual(self.requests(), [("POST", "/v1/verify")])
        assert_logged(self, self.dovecot, r"Warning: submit_token: verify: redirected \(307\) to "
                         r"https://127\.0\.0\.1:%d/v1/verify, not http as submit_token_api_url: refused"
                         % SMTPD.http_port)
        self.assertEqual(self.dovecot.folder(SENDER, "Sent"), before)
        self.assertEqual(self.m.noop()[0], "OK")
        # submit_token_api_max_redirects = 0: none followed
        with self.redirector.lock:
            self.redirector.requests.clear()
        self.redirector.base = "http://127.0.0.1:%d" % SMTPD.http_port
        tokens, _ = submit(sender=NOREDIR)
        m = self.dovecot.connect(NOREDIR, PASSWORD)
        self.addCleanup(m.logout)
        self.assertEqual(xsubmittoken(m, "Sent", tokens[NOREDIR])[:2], ("NO", "XSUBMITTOKEN-UNAVAILABLE"))
        self.assertEqual(self.requests(), [("POST", "/v1/verify")])
        assert_logged(self, self.dovecot, r"imap\(%s\).*Warning: submit_token: verify: redirected \(307\) "
                         r"more than submit_token_api_max_redirects=0 times" % re.escape(NOREDIR))
        self.assertEqual(self.dovecot.folder(NOREDIR, "Sent"), {})


class TlsTests(unittest.TestCase):
    """submit_token_api_url over https: a Dovecot that trusts one
    self-signed certificate (ssl_client_ca_file), a TlsForwarder in front
    of submitd's API that shows it, or another one."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="submitd-tls-")
        os.chmod(cls.tmp, 0o755)
        cls.trusted = make_cert(cls.tmp, "trusted")
        cls.untrusted = make_cert(cls.tmp, "untrusted")
        cls.tls = TlsForwarder(cls.trusted, SMTPD.http_port)
        cls.redirector = Redirector()
        cls.dovecot = new_dovecot("https://127.0.0.1:%d" % cls.tls.port, SECRET,
                                  conf="ssl_client_ca_file = %s\n" % cls.trusted[0])
        cls.dovecot.start()
        cls.dovecot.create_folder(SENDER, "Sent")

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()
        cls.tls.close()
        cls.redirector.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.tls.cert, self.tls.target_port = self.trusted, SMTPD.http_port
        self.m = self.dovecot.connect(SENDER, PASSWORD)
        self.addCleanup(self.m.logout)

    def file(self):
        tokens, body = submit()
        typ, code, text = xsubmittoken(self.m, "Sent", tokens[SENDER])
        self.assertEqual(typ, "OK", text)
        self.assertIn(body, [v[2] for v in self.dovecot.folder(SENDER, "Sent").values()])

    def test_https(self):
        self.file()

    def test_untrusted_certificate(self):
        """A certificate Dovecot does not trust: NO [XSUBMITTOKEN-
        UNAVAILABLE], the certificate named in the log, nothing filed, the
        session goes on and files once the right certificate is back."""
        before = self.dovecot.folder(SENDER, "Sent")
        tokens, _ = submit()
        self.tls.cert = self.untrusted
        self.assertEqual(xsubmittoken(self.m, "Sent", tokens[SENDER])[:2], ("NO", "XSUBMITTOKEN-UNAVAILABLE"))
        self.assertEqual(self.dovecot.folder(SENDER, "Sent"), before)
        assert_logged(self, self.dovecot, r"Warning: submit_token: verify: SSL handshak(?:ing with|e to) 127\.0\.0\.1:%d "
                         r"failed: .*Received invalid SSL certificate" % self.tls.port)
        self.assertEqual(self.m.noop()[0], "OK")
        self.tls.cert = self.trusted
        self.file()

    def test_redirects(self):
        """https to https is followed (the Redirector behind the
        forwarder sends on to a second forwarder in front of submitd);
        https to http is refused before anything is sent there."""
        second = TlsForwarder(self.trusted, SMTPD.http_port)
        self.addCleanup(second.close)
        self.tls.target_port = self.redirector.server_address[1]
        self.redirector.base = "https://127.0.0.1:%d" % second.port
        self.file()
        self.redirector.base = "http://127.0.0.1:%d" % SMTPD.http_port
        tokens, _ = submit()
        self.assertEqual(xsubmittoken(self.m, "Sent", tokens[SENDER])[:2], ("NO", "XSUBMITTOKEN-UNAVAILABLE"))
        assert_logged(self, self.dovecot, r"redirected \(307\) to http://127\.0\.0\.1:%d/v1/verify, "
                         r"not https as submit_token_api_url: refused" % SMTPD.http_port)


if __name__ == "__main__":
    unittest.main()
