"""Scripted SMTP dialogues against the real server: the replies of the
contract that no well-behaved client provokes (bad sequences, bad syntax,
bare CR/LF, NUL, over-long lines, error limits, idle timeout). Each case
runs on a fresh connection from a trusted network, so no AUTH is needed.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_dialogue
SUBMITD_KEEP=1 keeps each server's temporary directory (its log is submitd.log).
"""

import time
import unittest
import uuid

from harness import HOSTNAME, Submitd, client_tls_context, dot_stuff

SRV = None


def setUpModule():
    global SRV
    SRV = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "smtp.auth_cleartext_loopback": "true",
                   "smtp.max_errors": "5"})
    SRV.__enter__()
    SRV.add_user("dlg@example.org", "dialogue pass")


def tearDownModule():
    SRV.__exit__(None, None, None)


class DialogueTests(unittest.TestCase):
    def conn(self):
        c = SRV.raw()
        self.addCleanup(c.close)
        c.ehlo()
        return c

    def assertReply(self, r, code, esc):
        self.assertEqual(r.code, code, r)
        self.assertTrue(r.text.startswith(esc + " ") or r.text == esc, "want %s, got %r" % (esc, r))

    def test_command_table(self):
        # (what is sent, expected code, expected enhanced status code)
        cases = [
            ("FROBNICATE", 500, "5.5.2"),
            ("RCPT TO:<a@example.net>", 503, "5.5.1"),
            ("DATA", 503, "5.5.1"),
            ("MAIL FROM:<a@example.org> FROB=1", 555, "5.5.4"),
            ("MAIL FROM:<a@example.org> SIZE=lots", 501, "5.5.4"),
            ("NOOP " + "x" * 600, 500, "5.5.6"),
            ("VRFY someone", 252, "2.5.0"),
            ("EXPN list", 502, "5.5.1"),
            ("RSET", 250, "2.0.0"),
            ("NOOP", 250, "2.0.0"),
        ]
        for line, code, esc in cases:
            with self.subTest(line=line[:40]):
                c = self.conn()
                self.assertReply(c.cmd(line), code, esc)
                # the session survives each of these
                self.assertReply(c.cmd("NOOP"), 250, "2.0.0")

    def test_bdat_before_mail(self):
        # The chunk is sent too: the server reads it even when it refuses (RFC 3030).
        c = self.conn()
        c.send(b"BDAT 4 LAST\r\nabcd")
        self.assertReply(c.reply(), 503, "5.5.1")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")

    def test_bare_cr_and_lf_in_commands(self):
        for raw in (b"NOOP\rX\r\n", b"NOOP\nNOOP\r\n"):
            with self.subTest(raw=raw):
                c = self.conn()
                c.send(raw)
                self.assertReply(c.reply(), 500, "5.5.2")

    def test_quit_closes(self):
        c = self.conn()
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0")
        self.assertTrue(c.closed_by_peer(), "connection still open after QUIT")

    def transaction(self, c, body_wire):
        self.assertReply(c.cmd("MAIL FROM:<any@example.com>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<rcpt@example.net>"), 250, "2.1.5")
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(body_wire)
        return c.reply()

    def test_trusted_network_submits_without_auth(self):
        marker = "m" + uuid.uuid4().hex
        body = ("Subject: %s\r\n\r\nhello\r\n" % marker).encode()
        c = self.conn()
        r = self.transaction(c, dot_stuff(body))
        self.assertEqual(r.code, 250, r)
        row = SRV.message_with_marker(marker)
        self.assertIsNone(row["auth_login"])
        self.assertEqual(row["envelope_from"], "any@example.com")
        self.assertEqual(SRV.body(row["message_id"]), body)

    def test_auth_cleartext_loopback(self):
        c = self.conn()
        ehlo = c.cmd("EHLO client.test")
        self.assertTrue(any(l.upper().startswith("AUTH ") for l in ehlo.lines),
                        "AUTH not offered in clear with auth_cleartext_loopback: %r" % ehlo)
        self.assertReply(c.auth_plain("dlg@example.org", "dialogue pass"), 235, "2.7.0")

    def test_bad_bodies_refused_after_end(self):
        head = b"Subject: bad\r\n\r\n"
        cases = [
            (head + b"bare\nLF\r\n", 550, "5.5.2"),
            (head + b"bare\rCR\r\n", 550, "5.5.2"),
            (head + b"nul\x00byte\r\n", 550, "5.6.0"),
            (head + b"z" * 999 + b"\r\n", 550, "5.6.0"),
        ]
        for body, code, esc in cases:
            with self.subTest(body=body[-20:]):
                before = SRV.message_count()
                c = self.conn()
                # written raw: dot_stuff() would not split on a bare CR or LF
                self.assertReply(self.transaction(c, body + b".\r\n"), code, esc)
                self.assertEqual(SRV.message_count(), before, "refused message was stored")
                # the session goes on
                self.assertReply(c.cmd("RSET"), 250, "2.0.0")

    def test_998_octet_line_accepted(self):
        marker = "m" + uuid.uuid4().hex
        body = ("Subject: %s\r\n\r\n" % marker).encode() + b"z" * 998 + b"\r\n"
        c = self.conn()
        self.assertEqual(self.transaction(c, dot_stuff(body)).code, 250)
        self.assertEqual(SRV.body(SRV.message_with_marker(marker)["message_id"]), body)

    def test_too_many_errors(self):
        # smtp.max_errors = 5: the connection ends with 421 4.7.0 once the
        # limit is reached, at the 5th or the 6th bad command.
        c = self.conn()
        c.send(b"".join(b"BAD%d\r\n" % i for i in range(8)))
        replies = []
        while True:
            try:
                replies.append(c.reply())
            except (ConnectionError, OSError):
                break
            if replies[-1].code == 421:
                break
        codes = [r.code for r in replies]
        self.assertIn(421, codes, codes)
        self.assertIn(len(codes), (5, 6), codes)
        self.assertTrue(all(code == 500 for code in codes[:-1]), codes)
        self.assertTrue(replies[-1].text.startswith("4.7.0"), replies[-1])
        self.assertTrue(c.closed_by_peer(), "connection open after 421")

    def test_starttls_discards_pipelined_plaintext(self):
        # RFC 3207 section 4.2: commands sent in the clear after STARTTLS must
        # not be executed inside the TLS session (the CVE-2011-0411 class).
        # An unauthenticated client is disconnected for it
        # (smtp.forbid_unauth_pipelining, test_hardening); a logged-in one
        # (auth_cleartext_loopback) has the plaintext discarded.
        c = SRV.raw()
        self.addCleanup(c.close)
        c.ehlo()
        self.assertEqual(c.auth_plain("dlg@example.org", "dialogue pass").code, 235)
        c.send(b"STARTTLS\r\nNOOP\r\n")
        r = c.reply()
        self.assertEqual(r.code, 220, r)
        c.buf = b""
        c.sock = client_tls_context().wrap_socket(c.sock)
        r = c.cmd("EHLO client.test")
        # Had the NOOP been kept, its "250 2.0.0" would come first.
        self.assertEqual(r.code, 250, r)
        self.assertTrue(r.lines[0].startswith(HOSTNAME), "the injected NOOP was answered inside TLS: %r" % r)

    def test_starttls_injection_unauthenticated_disconnects(self):
        c = SRV.raw()
        self.addCleanup(c.close)
        c.ehlo()
        c.send(b"STARTTLS\r\nNOOP\r\n")
        self.assertEqual(c.reply().code, 220)
        self.assertReply(c.reply(), 554, "5.5.0")
        self.assertTrue(c.closed_by_peer(), "connection open after the 554")


class IdleTimeoutTests(unittest.TestCase):
    def test_idle_timeout(self):
        with Submitd({"smtp.idle_timeout": "1"}, tls_listener=False) as s:
            c = s.raw(timeout=10)
            self.addCleanup(c.close)
            t0 = time.monotonic()
            r = c.reply()
            self.assertEqual(r.code, 421, r)
            self.assertTrue(r.text.startswith("4.4.2"), r)
            self.assertLess(time.monotonic() - t0, 8)
            self.assertTrue(c.closed_by_peer())


if __name__ == "__main__":
    unittest.main(verbosity=2)
