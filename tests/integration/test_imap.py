"""test_imap.py: the sender's copy filed into a real Dovecot's Sent folder.

The whole path of docs/imap.md, with nothing simulated: a real submitd
(harness.Submitd, API on a free loopback port) accepts a message from swaks
over STARTTLS + AUTH PLAIN; the sender token is taken from the last
`250 2.1.13` line of swaks's transcript; contrib/imap-sent.py verifies it,
fetches the copy with a service credential from `submitctl service add`,
and APPENDs it to a real Dovecot (Debian's dovecot-imapd) started in a
temporary directory with its own configuration. Python's imaplib then reads
the message back and the test compares it byte for byte with the row in
message_bodies and with the SHA-256 the API reports, and checks \\Seen and
the internal date. The refusals are checked too: a recipient token (unless
--any-role), a tampered token, a token for another address, a wrong
credential, a wrong IMAP password; each leaves the folder untouched.

Dovecot (tests/integration/dovecot.py) runs as root in the foreground and switches
to `nobody`/`nogroup` for the mail processes, so this test needs root (CI
runs as root) and the package dovecot-imapd (scripts/deps test installs
it; this test installs nothing). Its temporary directory (under $TMPDIR, if set)
must be reachable by those users.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_imap
SUBMITD_KEEP=1 keeps the temporary directories (submitd.log, dovecot.log).
"""

import datetime
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
import unittest
import uuid

from dovecot import MAIL_USER, Dovecot, dovecot_bin
from harness import Submitd, free_port, which

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "..", "..", "contrib", "imap-sent.py")

SENDER = "sender@example.org"          # SMTP login, MAIL FROM and IMAP user
SMTP_PASSWORD = "smtp pass phrase 1"
RCPT = "alice@example.net"             # also an IMAP user, for the recipient-token test
RCPT2 = "bob@example.com"
IMAP_PASSWORD = "imap pass phrase 2 gr\u00fc\u00dfe"   # UTF-8: the client must AUTHENTICATE PLAIN
OTHER = "carol@example.org"            # SMTP and IMAP user with a pre-made "Sent Messages" folder


SMTPD = None      # the submitd
DOVECOT = None    # the Dovecot
SECRET = None     # API service credential for "imap"


def folder_messages(user, folder="Sent"):
    return DOVECOT.folder(user, folder)


def folder_names(user):
    return DOVECOT.folder_names(user)


def create_folder(user, folder):
    DOVECOT.create_folder(user, folder)


# ------------------------------------------------------------------ module

def setUpModule():
    global SMTPD, DOVECOT, SECRET
    if os.geteuid() != 0:
        raise AssertionError("test_imap must run as root: its Dovecot switches to %s for mail" % MAIL_USER)
    if dovecot_bin() is None:
        raise AssertionError("dovecot is not installed (package dovecot-imapd): run scripts/deps test")
    for tool in ("swaks", "sqlite3"):
        if which(tool) is None:
            raise AssertionError("%s is not installed: run scripts/deps test" % tool)
    p = subprocess.run(["swaks", "--support"], capture_output=True, text=True, timeout=60)
    if "TLS supported" not in p.stdout + p.stderr:
        raise AssertionError("swaks has no TLS support: install libnet-ssleay-perl")
    # Module cleanups run even when setUpModule fails half-way or a test
    # fails: neither server outlives the module.
    DOVECOT = Dovecot({SENDER: IMAP_PASSWORD, RCPT: IMAP_PASSWORD, OTHER: IMAP_PASSWORD})
    unittest.addModuleCleanup(DOVECOT.stop)
    DOVECOT.start()
    SMTPD = Submitd({"http.listen": "127.0.0.1:%d" % free_port()})
    unittest.addModuleCleanup(SMTPD.cleanup)
    SMTPD.start()
    SMTPD.add_user(SENDER, SMTP_PASSWORD)
    SMTPD.add_user(OTHER, SMTP_PASSWORD)
    # Fetching needs a credential by default (http.auth_fetch = true).
    SECRET = SMTPD.submitctl("service", "add", "imap").stdout.strip()
    if not re.match(r"^sd_[A-Za-z0-9_-]{43}$", SECRET):
        raise AssertionError("submitctl service add printed %r" % SECRET)


def tearDownModule():
    # stop() requires exit status 0 after SIGTERM: a crash on shutdown fails the module
    SMTPD.stop()


# ------------------------------------------------------------------ helpers

def swaks_submit(rcpts, marker, sender=SENDER):
    """Submit one message with swaks (STARTTLS, AUTH PLAIN as the sender).
    Returns (transcript, body as written to the file + CRLF)."""
    body = ("From: Sender <%s>\r\nTo: <%s>\r\nSubject: imap %s\r\nMessage-ID: <%s@client.test>\r\n"
            "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Body of %s\r\n.a line with a leading dot\r\n..two\r\n.\r\n"
            "8 bit: gr\u00fc\u00dfe, \u65e5\u672c\r\n%s\r\nlast line\r\n"
            % (sender, rcpts[0], marker, marker, marker, "x" * 900)).encode("utf-8")
    # swaks sends the file dot-stuffed and adds CRLF "." CRLF: the file lacks the last CRLF
    path = os.path.join(SMTPD.tmp, marker + ".eml")
    with open(path, "wb") as f:
        f.write(body[:-2])
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(SMTPD.port), "--tls",
                        "--helo", "imap.client.test", "--from", sender, "--to", ",".join(rcpts),
                        "--auth", "PLAIN", "--auth-user", sender, "--auth-password", SMTP_PASSWORD,
                        "--data", "@" + path, "--timeout", "30"], capture_output=True, timeout=120)
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError("swaks failed:\n" + out)
    return out, body


TOKEN_LINE = re.compile(r"^<~ +250([ -])2\.1\.13 (?:<([^<>]*)> )?(v4\.public\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)"
                        r"( Saved)?\s*$", re.M)


def tokens_of(transcript):
    """[(address, token, last)] from the 2.1.13 lines of a swaks transcript."""
    return [(m.group(2), m.group(3), m.group(1) == " ") for m in TOKEN_LINE.finditer(transcript)]


def sender_token(transcript, sender=SENDER):
    """The token on the last `250 2.1.13` line: the sender's copy."""
    lines = tokens_of(transcript)
    last = [l for l in lines if l[2]]
    if len(last) != 1 or lines[-1] is not last[0]:
        raise AssertionError("no single final 250 2.1.13 line in:\n" + transcript)
    addr, token, _ = last[0]
    if addr not in (None, sender):
        raise AssertionError("the last token line is for %r, not the sender" % addr)
    return token


def api_verify(token):
    """POST /v1/verify, as any verifier would: (status, JSON answer)."""
    c = http.client.HTTPConnection("127.0.0.1", SMTPD.http_port, timeout=30)
    try:
        c.request("POST", "/v1/verify", body=json.dumps({"token": token}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def run_client(token, user=SENDER, args=(), secret=True, password=IMAP_PASSWORD, stdin=True):
    """contrib/imap-sent.py against the test's submitd and Dovecot."""
    env = {k: v for k, v in os.environ.items() if k not in ("SUBMITD_API_SECRET", "IMAP_PASSWORD")}
    env["IMAP_PASSWORD"] = password
    if secret is True:
        env["SUBMITD_API_SECRET"] = SECRET
    elif secret:
        env["SUBMITD_API_SECRET"] = secret
    cmd = [sys.executable, CLIENT, "--api-url", "http://127.0.0.1:%d" % SMTPD.http_port,
           "--imap-host", "127.0.0.1", "--imap-port", str(DOVECOT.port), "--imap-tls", "none",
           "--imap-user", user, "--timeout", "30", "-v"] + list(args)
    if not stdin:
        cmd.append(token)
    p = subprocess.run(cmd, input=(token + "\n") if stdin else "", capture_output=True, text=True,
                       env=env, timeout=120)
    return p


def stored(marker):
    """(messages row, the octets in message_bodies) of the message with marker."""
    row = SMTPD.message_with_marker(marker)
    return row, SMTPD.body(row["message_id"])


def internaldate(received_at):
    """received_at (API) as IMAP shows an internal date given in UTC."""
    t = datetime.datetime.strptime(received_at, "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%d-%b-%Y %H:%M:%S +0000")


# ------------------------------------------------------------------ tests

class ImapSentTests(unittest.TestCase):
    maxDiff = None

    def assertClient(self, p, status):
        self.assertEqual(p.returncode, status, "imap-sent.py exited %d, expected %d\nstdout: %s\nstderr: %s"
                         % (p.returncode, status, p.stdout, p.stderr))
        self.assertNotIn("Traceback", p.stderr)

    def assertNoWholeToken(self, p, token):
        self.assertNotIn(token, p.stdout + p.stderr, "the client printed a whole token")

    def test_sender_copy_filed_byte_for_byte(self):
        """The flow of docs/imap.md, end to end, then checked three ways."""
        marker = "m" + uuid.uuid4().hex
        transcript, sent_body = swaks_submit([RCPT, RCPT2], marker)
        self.assertEqual(len(tokens_of(transcript)), 3, transcript)
        token = sender_token(transcript)
        row, body = stored(marker)
        self.assertEqual(body, sent_body, "submitd stored what swaks sent")
        status, v = api_verify(token)
        self.assertEqual(status, 200, v)
        self.assertEqual((v["result"], v["role"], v["address"]), ("valid", "sender", SENDER))
        before = folder_messages(SENDER) or {}

        p = run_client(token, args=["--address", SENDER])
        self.assertClient(p, 0)
        self.assertNoWholeToken(p, token)
        uid = int(p.stdout.strip())            # APPENDUID: Dovecot has UIDPLUS

        after = folder_messages(SENDER)
        self.assertIsNotNone(after, "no Sent folder after the client ran")
        self.assertEqual(sorted(set(after) - set(before)), [uid], "exactly one new message, the printed UID")
        flags, idate, got = after[uid]
        # byte for byte: the stored row, and the SHA-256 and size the API reports
        self.assertEqual(got, body, "IMAP copy differs from message_bodies")
        self.assertEqual(hashlib.sha256(got).hexdigest(), v["message"]["sha256"])
        self.assertEqual(hashlib.sha256(got).hexdigest(), row["sha256"])
        self.assertEqual(len(got), v["message"]["size"])
        self.assertIn("\\Seen", flags)
        self.assertEqual(idate, internaldate(v["message"]["received_at"]))
        self.assertIn("Sent", folder_names(SENDER))

        # Idempotence: the same token again files nothing new, prints the same UID.
        p = run_client(token, args=["--address", SENDER])
        self.assertClient(p, 0)
        self.assertEqual(int(p.stdout.strip()), uid)
        self.assertIn("already in Sent", p.stderr)
        self.assertEqual(folder_messages(SENDER), after)

        # The fetches were made as the service "imap" (audit trail).
        # The writer thread inserts audit rows in batches: wait for them.
        q = ("SELECT result, service FROM audit_log WHERE action = 'fetch' AND token_id = '%s'"
             % v["token_id"])
        deadline = time.monotonic() + 10
        while len(SMTPD.sql(q)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(SMTPD.sql(q), [{"result": "served", "service": "imap"}] * 2)

    def test_token_as_argument_and_secret_file(self):
        marker = "m" + uuid.uuid4().hex
        transcript, _ = swaks_submit([RCPT], marker)
        token = sender_token(transcript)
        _, body = stored(marker)
        path = os.path.join(SMTPD.tmp, "api-secret")
        with open(path, "w") as f:
            f.write(SECRET + "\n")
        p = run_client(token, stdin=False, secret=None, args=["--api-secret-file", path])
        self.assertClient(p, 0)
        self.assertEqual(folder_messages(SENDER)[int(p.stdout)][2], body)

    def test_recipient_token_needs_any_role(self):
        marker = "m" + uuid.uuid4().hex
        transcript, _ = swaks_submit([RCPT], marker)
        lines = tokens_of(transcript)
        self.assertEqual(lines[0][0], RCPT)
        rtoken = lines[0][1]
        _, body = stored(marker)
        before = folder_messages(RCPT)

        p = run_client(rtoken, user=RCPT, args=["--address", RCPT])
        self.assertClient(p, 2)
        self.assertIn("result=wrong_role", p.stderr)
        self.assertNoWholeToken(p, rtoken)
        self.assertEqual(folder_messages(RCPT), before, "a refused token changed Sent")

        p = run_client(rtoken, user=RCPT, args=["--address", RCPT, "--any-role"])
        self.assertClient(p, 0)
        got = folder_messages(RCPT)
        self.assertEqual(got[int(p.stdout)][2], body)
        self.assertEqual(len(got), len(before or {}) + 1)

    def test_tampered_token_refused_nothing_appended(self):
        marker = "m" + uuid.uuid4().hex
        transcript, _ = swaks_submit([RCPT], marker)
        token = sender_token(transcript)
        # one character in the middle of the signed part changed: the signature breaks
        body_part = token[len("v4.public."):token.rindex(".")]
        i = len("v4.public.") + len(body_part) - 30
        bad = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        before = folder_messages(SENDER)
        p = run_client(bad, args=["--address", SENDER])
        self.assertClient(p, 2)
        self.assertIn("result=bad_signature", p.stderr)
        self.assertNoWholeToken(p, bad)
        self.assertEqual(folder_messages(SENDER), before)

        p = run_client("v4.public.nonsense")
        self.assertClient(p, 2)
        self.assertIn("result=malformed", p.stderr)
        p = run_client("")
        self.assertClient(p, 2)
        self.assertIn("result=missing_token", p.stderr)
        self.assertEqual(folder_messages(SENDER), before)

    def test_wrong_address_refused(self):
        """Another user's sender token is refused: by default the token must be
        bound to the IMAP user; --address names another address."""
        marker = "m" + uuid.uuid4().hex
        transcript, body = swaks_submit([RCPT], marker)
        token = sender_token(transcript)
        before = folder_messages(OTHER)
        p = run_client(token, user=OTHER)
        self.assertClient(p, 2)
        self.assertIn("result=wrong_address", p.stderr)
        p = run_client(token, args=["--address", "Sender@example.org"])  # local parts are exact
        self.assertClient(p, 2)
        self.assertIn("result=wrong_address", p.stderr)
        self.assertEqual(folder_messages(OTHER), before)
        # the domain is not case-sensitive (docs/tokens.md section 4)
        p = run_client(token, args=["--address", "sender@EXAMPLE.org"])
        self.assertClient(p, 0)
        # --any-address: the caller checked the binding itself (here: nobody did)
        before = folder_messages(RCPT) or {}
        p = run_client(token, user=RCPT, args=["--any-address"])
        self.assertClient(p, 0)
        after = folder_messages(RCPT)
        self.assertEqual(set(after) - set(before), {int(p.stdout)})
        self.assertEqual(after[int(p.stdout)][2], body)
        # an IMAP login that is not an address needs --address or --any-address
        p = run_client(token, user="sender")
        self.assertClient(p, 64)
        self.assertIn("--address", p.stderr)

    def test_credential_problems_exit_3(self):
        marker = "m" + uuid.uuid4().hex
        transcript, _ = swaks_submit([RCPT], marker)
        token = sender_token(transcript)
        before = folder_messages(SENDER)
        p = run_client(token, secret=None)              # fetch needs a credential
        self.assertClient(p, 3)
        self.assertIn("result=unauthorized", p.stderr)
        p = run_client(token, secret="sd_" + "A" * 43)  # unknown secret
        self.assertClient(p, 3)
        self.assertIn("result=unauthorized", p.stderr)
        self.assertEqual(folder_messages(SENDER), before)

    def test_imap_problems_exit_4(self):
        marker = "m" + uuid.uuid4().hex
        transcript, _ = swaks_submit([RCPT], marker)
        token = sender_token(transcript)
        before = folder_messages(SENDER)
        p = run_client(token, password="not the password")
        self.assertClient(p, 4)
        self.assertIn("login as %s refused" % SENDER, p.stderr)
        # this Dovecot has no TLS: STARTTLS (the client's default) fails cleanly
        p = run_client(token, args=["--imap-tls", "starttls"])
        self.assertClient(p, 4)
        self.assertIn("TLS", p.stderr)
        p = run_client(token, args=["--imap-port", str(free_port())])
        self.assertClient(p, 4)
        self.assertEqual(folder_messages(SENDER), before)

    def test_api_unreachable_exit_3(self):
        marker = "m" + uuid.uuid4().hex
        transcript, _ = swaks_submit([RCPT], marker)
        token = sender_token(transcript)
        p = run_client(token, args=["--api-url", "http://127.0.0.1:%d" % free_port()])
        self.assertClient(p, 3)
        self.assertIn("API POST", p.stderr)

    def test_special_use_folder_preferred(self):
        """A folder the server flags \\Sent is used, whatever its name."""
        create_folder(OTHER, "Sent Messages")
        self.assertNotIn("Sent", folder_names(OTHER))
        marker = "m" + uuid.uuid4().hex
        transcript, _ = swaks_submit([RCPT], marker, sender=OTHER)
        token = sender_token(transcript, sender=OTHER)
        _, body = stored(marker)
        p = run_client(token, user=OTHER)
        self.assertClient(p, 0)
        self.assertIn("folder Sent Messages", p.stderr)
        self.assertEqual(folder_messages(OTHER, "Sent Messages")[int(p.stdout)][2], body)
        self.assertNotIn("Sent", folder_names(OTHER), "a second Sent folder was created")


if __name__ == "__main__":
    unittest.main()
