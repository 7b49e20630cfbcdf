"""test_dovecot_auth.py: AUTH through Dovecot's auth service
(auth.backend = dovecot, docs/dovecot.md).

A real submitd (harness.Submitd) checks passwords with a real Dovecot
(tests/integration/dovecot.py: a private instance, passwd-file users, an
auth-client listener, auth_username_format = %Lu so that logins are
rewritten to lower case). swaks logs in with PLAIN and LOGIN over STARTTLS
and submits; a wrong password gets 535; with Dovecot stopped AUTH gets 454
while the server keeps serving, and once Dovecot is back logins work
without a restart of submitd; the login Dovecot returns is the one MAIL
FROM is bound to, with the addresses granted by `submitctl user address
add`; a login disabled with `submitctl user disable` gets 535 with its
right password until it is enabled.

Then a fake auth service (a Python UNIX-socket server in this file) that
answers garbage, a too-long line, an OK for an id never sent, nothing at
all, or closes in the middle of an exchange: submitd never crashes (it answers EHLO
afterwards) and never answers 235.

Dovecot runs as root (see dovecot.py), so this test needs root, as
test_imap does.
Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_dovecot_auth
"""

import base64
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from dovecot import MAIL_USER, Dovecot, dovecot_bin
from harness import Submitd, which

NO_FAILURE_DELAY = """auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}"""
USER = "sender@example.org"
PASSWORD = "dovecot pass phrase 1"
OTHER = "carol@example.org"
RECONNECT_DEADLINE = 60.0

SMTPD = None
DOVECOT = None


def setUpModule():
    global SMTPD, DOVECOT
    if os.geteuid() != 0:
        raise AssertionError("test_dovecot_auth must run as root: its Dovecot switches to %s" % MAIL_USER)
    if dovecot_bin() is None:
        raise AssertionError("dovecot is not installed (package dovecot-imapd): run scripts/deps test")
    if which("swaks") is None:
        raise AssertionError("swaks is not installed: run scripts/deps test")
    # Dovecot delays a failed login (2 s) and, per client address, each
    # further one (anvil's auth penalty: 4, 8, 15 s): the tests check
    # answers, not Dovecot's brute-force brakes, which took 30 s a run.
    DOVECOT = Dovecot({USER: PASSWORD, OTHER: PASSWORD}, auth_socket=True, username_format="%Lu",
                      extra=NO_FAILURE_DELAY)
    unittest.addModuleCleanup(DOVECOT.stop)
    DOVECOT.start()
    SMTPD = Submitd({"auth.backend": "dovecot", "auth.dovecot_socket": DOVECOT.auth_socket_path,
                     "auth.dovecot_timeout": "20"})
    unittest.addModuleCleanup(SMTPD.cleanup)
    SMTPD.start()


def tearDownModule():
    SMTPD.stop()


def swaks(mech, login, password, sender, rcpt="rcpt@example.net"):
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(SMTPD.port), "--tls",
                        "--helo", "dovecot.client.test", "--from", sender, "--to", rcpt,
                        "--auth", mech, "--auth-user", login, "--auth-password", password,
                        "--timeout", "30"], capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


# Replies may wait for Dovecot; the machine may be busy.
REPLY_TIMEOUT = 30.0


def tls_session(smtpd=None):
    c = (smtpd or SMTPD).raw(timeout=REPLY_TIMEOUT)
    c.ehlo()
    c.starttls()
    return c


def plain(login, password):
    return base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()).decode()


def wait_for(pred, deadline, what):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("%s: not within %.0f s\n--- log ---\n%s" % (what, deadline, SMTPD.log()[-4000:]))


class DovecotAuth(unittest.TestCase):
    def test_01_ehlo_lists_dovecots_mechanisms_after_tls(self):
        c = SMTPD.raw(timeout=REPLY_TIMEOUT)
        try:
            r = c.ehlo()
            self.assertNotIn("AUTH", r.text)     # no passwords before TLS
            c.starttls()
            r = c.ehlo()
            self.assertIn("AUTH PLAIN LOGIN", r.text)
        finally:
            c.close()

    def test_02_plain_and_login_with_swaks(self):
        for mech in ("PLAIN", "LOGIN"):
            rc, out = swaks(mech, USER, PASSWORD, USER)
            self.assertEqual(rc, 0, out)
            self.assertIn("235 2.7.0", out)
            self.assertRegex(out, r"250[ -]2\.1\.13")
        self.assertRegex(SMTPD.log(), r"event=auth_ok session=[0-9a-f]{16} user=%s backend=dovecot" % re.escape(USER))
        rows = SMTPD.sql("SELECT count(*) AS n FROM messages WHERE auth_login = '%s'" % USER)
        self.assertGreaterEqual(rows[0]["n"], 2)

    def test_03_wrong_password(self):
        c = tls_session()
        try:
            c.ehlo()
            r = c.cmd("AUTH PLAIN " + plain(USER, "wrong"))
            self.assertEqual(r.code, 535, r)
            self.assertIn("5.7.8", r.text)
            # LOGIN, step by step through Dovecot's challenges
            r = c.cmd("AUTH LOGIN")
            self.assertEqual(r.code, 334, r)
            r = c.cmd(base64.b64encode(USER.encode()).decode())
            self.assertEqual(r.code, 334, r)
            r = c.cmd(base64.b64encode(b"also wrong").decode())
            self.assertEqual(r.code, 535, r)
            # "*" cancels
            r = c.cmd("AUTH LOGIN")
            self.assertEqual(r.code, 334, r)
            r = c.cmd("*")
            self.assertEqual(r.code, 501, r)
            r = c.cmd("AUTH PLAIN " + plain(USER, PASSWORD))
            self.assertEqual(r.code, 235, r)
        finally:
            c.close()

    def test_04_rewritten_login_is_bound(self):
        # auth_username_format = %Lu: Dovecot answers user=sender@example.org
        c = tls_session()
        try:
            c.ehlo()
            r = c.cmd("AUTH PLAIN " + plain("Sender@Example.ORG", PASSWORD))
            self.assertEqual(r.code, 235, r)
            r = c.cmd("MAIL FROM:<%s>" % OTHER)
            self.assertEqual(r.code, 553, r)
            self.assertIn("5.7.1", r.text)
            r = c.cmd("MAIL FROM:<sender@example.org>")
            self.assertEqual(r.code, 250, r)
        finally:
            c.close()
        self.assertIn("user=sender@example.org backend=dovecot", SMTPD.log())

    def test_05_granted_address(self):
        # the same command on the internal backend: a login with no
        # password here is a typing error there, and nothing is granted
        p = SMTPD.submitctl("-o", "auth.backend=internal", "user", "address", "add", USER,
                            "sales@example.org", check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertNotIn("sales@example.org", SMTPD.submitctl("user", "address", "list", USER).stdout)
        SMTPD.submitctl("user", "address", "add", USER, "sales@example.org")
        out = SMTPD.submitctl("user", "address", "list", USER).stdout
        self.assertIn("sales@example.org", out)
        c = tls_session()
        try:
            c.ehlo()
            self.assertEqual(c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)).code, 235)
            r = c.cmd("MAIL FROM:<sales@example.org>")
            self.assertEqual(r.code, 250, r)
        finally:
            c.close()
        c = tls_session()
        try:
            c.ehlo()
            self.assertEqual(c.cmd("AUTH PLAIN " + plain(OTHER, PASSWORD)).code, 235)
            r = c.cmd("MAIL FROM:<sales@example.org>")
            self.assertEqual(r.code, 553, r)
        finally:
            c.close()

    def test_06_dovecot_down_then_back(self):
        DOVECOT.stop(remove=False)
        try:
            c = tls_session()
            try:
                c.ehlo()
                r = c.cmd("AUTH PLAIN " + plain(USER, PASSWORD))
                self.assertEqual(r.code, 454, r)
                self.assertIn("4.7.0", r.text)
                # the session goes on, and so does the server
                self.assertEqual(c.cmd("NOOP").code, 250)
                d = SMTPD.raw(timeout=REPLY_TIMEOUT)
                try:
                    d.ehlo()
                    self.assertEqual(d.cmd("NOOP").code, 250)
                finally:
                    d.close()
            finally:
                c.close()
            self.assertRegex(SMTPD.log(), r"event=auth_tempfail session=[0-9a-f]{16} backend=dovecot reason=")
        finally:
            DOVECOT.start()

        def logs_in():
            c = tls_session()
            try:
                c.ehlo()
                code = c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)).code
                self.assertIn(code, (235, 454))
                return code == 235
            finally:
                c.close()
        wait_for(logs_in, RECONNECT_DEADLINE, "login after Dovecot restarted")
        rc, out = swaks("LOGIN", USER, PASSWORD, USER)
        self.assertEqual(rc, 0, out)

    def test_07_disabled_login(self):
        # submitctl user disable works for a login only Dovecot knows: the
        # right password gets 535 once the server has read the change
        # (limits.reload_interval), and logins work again after enable
        def auth_code():
            c = tls_session()
            try:
                c.ehlo()
                return c.cmd("AUTH PLAIN " + plain(OTHER, PASSWORD)).code
            finally:
                c.close()
        SMTPD.submitctl("user", "disable", OTHER)
        self.addCleanup(SMTPD.submitctl, "user", "enable", OTHER)
        wait_for(lambda: auth_code() == 535, RECONNECT_DEADLINE, "AUTH of a disabled login refused")
        self.assertIn("user=%s reason=login_disabled" % OTHER, SMTPD.log())
        self.assertRegex(SMTPD.submitctl("user", "list").stdout, r"%s\tcreated=-\t.*disabled=yes" % re.escape(OTHER))
        SMTPD.submitctl("user", "enable", OTHER)
        wait_for(lambda: auth_code() == 235, RECONNECT_DEADLINE, "AUTH after enable")


# ---------------------------------------------------------------- fake Dovecot

HANDSHAKE = b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nMECH\tAPOP\tprivate\n" \
            b"SPID\t1\nCUID\t1\nCOOKIE\t0123456789abcdef0123456789abcdef\nDONE\n"


class FakeAuth:
    """A UNIX-socket server that plays Dovecot's auth service badly. behave(conn, lines)
    is called per connection with an iterator of the lines submitd sends."""

    def __init__(self, behave):
        self.dir = tempfile.mkdtemp(prefix="submitd-fakeauth-")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "auth")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(16)
        self.behave = behave
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn):
        def lines():
            buf = b""
            while True:
                while b"\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\n", 1)
                yield line
        try:
            self.behave(conn, lines())
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


def auth_id(lines):
    """Skip to submitd's AUTH line; its id."""
    for line in lines:
        if line.startswith(b"AUTH\t"):
            return line.split(b"\t")[1]
    return None


def hold(conn, lines):
    for _ in lines:
        pass


def silent(conn, lines):
    hold(conn, lines)


def garbage_handshake(conn, lines):
    conn.sendall(b"\x00\x01\xff garbage\tMECH\n" * 3)
    hold(conn, lines)


def garbage_answer(conn, lines):
    conn.sendall(HANDSHAKE)
    if auth_id(lines) is not None:
        conn.sendall(b"OK\tnot-a-number\tuser=evil\n")
    hold(conn, lines)


def long_line(conn, lines):
    conn.sendall(HANDSHAKE)
    if auth_id(lines) is not None:
        conn.sendall(b"CONT\t1\t" + b"A" * 20000 + b"\n")
    hold(conn, lines)


def unknown_id(conn, lines):
    conn.sendall(HANDSHAKE)
    i = auth_id(lines)
    if i is not None:
        conn.sendall(b"OK\t" + str(int(i) + 1000).encode() + b"\tuser=evil@example.org\n")
        conn.sendall(b"OK\t" + i + b"\tuser=evil@example.org\tnologin\n")
    hold(conn, lines)


def close_mid_exchange(conn, lines):
    conn.sendall(HANDSHAKE)
    i = auth_id(lines)
    if i is not None:
        conn.sendall(b"CONT\t" + i + b"\tVXNlcm5hbWU6\n")
        time.sleep(0.5)
    conn.close()


def bad_user(conn, lines):
    conn.sendall(HANDSHAKE)
    i = auth_id(lines)
    if i is not None:
        conn.sendall(b"OK\t" + i + b"\tuser=evil user\x01twith tab\n")
    hold(conn, lines)


class FakeDovecot(unittest.TestCase):
    def run_fake(self, behave, dialogue):
        fake = FakeAuth(behave)
        self.addCleanup(fake.stop)
        smtpd = Submitd({"auth.backend": "dovecot", "auth.dovecot_socket": fake.path,
                         "auth.dovecot_timeout": "20", "smtp.auth_cleartext_loopback": "true"})
        self.addCleanup(smtpd.cleanup)
        smtpd.start()
        try:
            dialogue(smtpd)
            # still serving
            c = smtpd.raw(timeout=REPLY_TIMEOUT)
            try:
                c.ehlo()
                self.assertEqual(c.cmd("NOOP").code, 250)
            finally:
                c.close()
        finally:
            smtpd.stop()
        self.assertNotIn("event=auth_ok", smtpd.log())
        return smtpd

    def auth_refused(self, smtpd, line="AUTH PLAIN " + plain("evil@example.org", "x"), want=(454,)):
        c = smtpd.raw(timeout=REPLY_TIMEOUT)
        try:
            c.ehlo()
            r = c.cmd(line)
            self.assertIn(r.code, want, r)
            return c, r
        except BaseException:
            c.close()
            raise

    def ready(self, smtpd):
        wait_for(lambda: "event=dovecot_connected" in smtpd.log(), 30, "fake handshake")

    def test_garbage_handshake(self):
        def dialogue(smtpd):
            wait_for(lambda: "event=dovecot_bad_line" in smtpd.log(), 30, "garbage noticed")
            c, r = self.auth_refused(smtpd, want=(454,))
            c.close()
        self.run_fake(garbage_handshake, dialogue)

    def test_silent_service(self):
        # accepts, reads, never completes the handshake
        def dialogue(smtpd):
            c, r = self.auth_refused(smtpd, want=(454,))
            c.close()
            self.assertIn("reason=handshake", smtpd.log())
        self.run_fake(silent, dialogue)

    def test_garbage_answer(self):
        def dialogue(smtpd):
            self.ready(smtpd)
            c, r = self.auth_refused(smtpd)
            c.close()
        self.run_fake(garbage_answer, dialogue)

    def test_too_long_line(self):
        def dialogue(smtpd):
            self.ready(smtpd)
            c, r = self.auth_refused(smtpd)
            c.close()
            self.assertIn("reason=line_too_long", smtpd.log())
        self.run_fake(long_line, dialogue)

    def test_ok_for_unknown_id_and_nologin(self):
        def dialogue(smtpd):
            self.ready(smtpd)
            c, r = self.auth_refused(smtpd, want=(535,))
            c.close()
            self.assertIn("event=dovecot_unknown_id", smtpd.log())
        self.run_fake(unknown_id, dialogue)

    def test_bad_user_name(self):
        def dialogue(smtpd):
            self.ready(smtpd)
            c, r = self.auth_refused(smtpd)
            c.close()
        self.run_fake(bad_user, dialogue)

    def test_close_mid_exchange(self):
        def dialogue(smtpd):
            self.ready(smtpd)
            c, r = self.auth_refused(smtpd, line="AUTH LOGIN", want=(334,))
            try:
                # the client's answer meets a lost connection: 454, in turn
                wait_for(lambda: "event=dovecot_down" in smtpd.log(), 30, "fake closed")
                r = c.cmd(base64.b64encode(b"evil").decode())
                self.assertEqual(r.code, 454, r)
                self.assertEqual(c.cmd("NOOP").code, 250)
            finally:
                c.close()
        self.run_fake(close_mid_exchange, dialogue)

    def test_no_socket(self):
        smtpd = Submitd({"auth.backend": "dovecot", "auth.dovecot_socket": "/nonexistent/auth-submitd",
                         "smtp.auth_cleartext_loopback": "true"})
        self.addCleanup(smtpd.cleanup)
        smtpd.start()
        try:
            c = smtpd.raw(timeout=REPLY_TIMEOUT)
            try:
                r = c.ehlo()
                self.assertNotIn("AUTH", r.text)     # mechanisms unknown yet
                r = c.cmd("AUTH PLAIN " + plain(USER, PASSWORD))
                self.assertEqual(r.code, 454, r)
                self.assertEqual(c.cmd("NOOP").code, 250)
            finally:
                c.close()
        finally:
            smtpd.stop()
        self.assertIn("reason=no_socket", smtpd.log())

    def test_check_config(self):
        p = subprocess.run([os.path.join(os.environ.get("SUBMITD_BUILD_DIR", "build"), "submitd"), "-n",
                            "-o", "auth.backend=dovecot"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("auth.backend = dovecot needs auth.dovecot_socket", p.stderr)


if __name__ == "__main__":
    unittest.main()
