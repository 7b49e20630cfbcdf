"""test_relay.py: delivery to the next hop, retries, bounces, retention and
backup (docs/relay.md), end to end: a real submitd relays to a real next hop
on loopback, Postfix's smtp-sink where it will do, else the scripted
server of nexthop.py (per-recipient 5xx, 4xx at end of data, CHUNKING,
STARTTLS, AUTH, exact wire bytes). Results are read back from the
recipients table with the sqlite3 CLI; every wait is bounded and fails
with the table and the server's log.

Retries are made fast (relay.retry_base=1, relay.retry_max=2,
relay.poll_interval=1) so that the file runs in about a minute.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_relay
Needs /usr/sbin/smtp-sink (Debian package postfix: scripts/deps test).
"""

import calendar
import email
import email.utils
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from harness import (TIMEOUT_SCALE, RawSMTP, Submitd, dot_stuff, parse_token_reply, run_program,
                     share_with_server)
from nexthop import ScriptedHop, SmtpSink, crlf_only, free_port, self_signed_context

SENDER = "alice@example.org"
PASSWORD = "relay test password"
HELO = "laptop.client.test"
WAIT = 30.0
FAST = {"relay.retry_base": "1", "relay.retry_max": "2", "relay.poll_interval": "1"}


def relay_options(port, extra=None):
    opts = {"relay.host": "127.0.0.1", "relay.port": str(port), "relay.tls": "none",
            "smtp.auth_cleartext_loopback": "true"}
    opts.update(FAST)
    opts.update(extra or {})
    return opts


def default_body(marker, extra=b""):
    return (b"From: Alice <alice@example.org>\r\n"
            b"To: undisclosed-recipients:;\r\n"
            b"Subject: " + marker.encode() + b"\r\n"
            b"Message-ID: <" + marker.encode() + b"@example.org>\r\n"
            b"\r\n"
            b"Hello,\r\n"
            b"\r\n"
            b"a line.\r\n" + extra)


def split_received(data):
    """(the first header field, folded lines and CRLF included; the rest)."""
    m = re.match(rb"^Received:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", data)
    if not m:
        raise AssertionError("relayed data does not start with a Received header: %r" % data[:200])
    return data[:m.end()], data[m.end():]


def db_time(s):
    """'YYYY-MM-DD HH:MM:SS[.sss]' (UTC) -> Unix time."""
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%d %H:%M:%S")) + float("0" + s[19:])


class Submitted:
    def __init__(self, marker, body, tokens, row, rcpts):
        self.marker = marker
        self.body = body
        self.tokens = tokens
        self.row = row
        self.rcpts = rcpts
        self.message_id = row["message_id"]
        self.public_id = row["public_id"]


class RelayCase(unittest.TestCase):
    """Helpers shared by the tests: servers, submission, bounded waits."""

    def server(self, port, extra=None, user=True):
        s = Submitd(relay_options(port, extra))
        s.start()
        self.addCleanup(self._finish, s)
        if user:
            s.add_user(SENDER, PASSWORD)
        return s

    @staticmethod
    def _finish(s):
        try:
            s.stop(check=False)
        finally:
            s.cleanup()

    def hop(self, **kw):
        h = ScriptedHop(**kw).start()
        self.addCleanup(h.stop)
        return h

    def sink(self, **kw):
        k = SmtpSink(**kw).start()
        self.addCleanup(k.cleanup)
        return k

    def submit(self, s, rcpts, body=None, marker=None, auth=True, sender=SENDER, mail_params=""):
        """Submit one message over a raw dialogue (AUTH PLAIN in clear on
        loopback unless auth=False) and return what was stored."""
        if body is None:
            marker = "m" + uuid.uuid4().hex
            body = default_body(marker)
        assert marker is not None and marker.encode() in body
        with RawSMTP(s.port, timeout=30) as c:
            c.ehlo(HELO)
            if auth:
                r = c.auth_plain(SENDER, PASSWORD)
                self.assertEqual(r.code, 235, r)
            r = c.cmd("MAIL FROM:<%s>%s" % (sender, mail_params))
            self.assertEqual(r.code, 250, r)
            for a in rcpts:
                r = c.cmd("RCPT TO:<%s>" % a)
                self.assertEqual(r.code, 250, r)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(dot_stuff(body))
            tokens = parse_token_reply(c.reply())
        # (a bounce quotes the headers, marker included: it may exist already)
        row = s.sql("SELECT m.* FROM messages m JOIN message_bodies b USING (message_id) "
                    "WHERE instr(b.content, X'%s') > 0 AND m.envelope_from <> ''" % marker.encode().hex())
        self.assertEqual(len(row), 1, "message %s not stored once: %r" % (marker, row))
        return Submitted(marker, body, tokens, row[0], list(rcpts))

    def rows(self, s, message_id):
        return s.sql("SELECT position, address, state, attempts, next_attempt_at, last_reply, updated_at FROM recipients "
                     "WHERE message_id = %d ORDER BY position" % int(message_id))

    def table(self, s):
        rows = s.sql("SELECT m.public_id, m.envelope_from, r.position, r.address, r.state, r.attempts, "
                     "r.next_attempt_at, r.last_reply FROM recipients r JOIN messages m USING (message_id) "
                     "ORDER BY r.recipient_id")
        log = s.log().splitlines()
        return ("--- recipients ---\n" + "\n".join(repr(r) for r in rows) +
                "\n--- last lines of the log ---\n" + "\n".join(log[-40:]))

    def wait_for(self, what, cond, dump, timeout=WAIT, interval=0.2):
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("%s: not within %.0f s\n%s" % (what, timeout, dump()))
            time.sleep(interval)

    def wait_states(self, s, message_id, state, timeout=WAIT):
        """Every recipient of the message in state (a string, or a set of
        acceptable states). Returns the rows."""
        states = {state} if isinstance(state, str) else set(state)

        def done():
            rows = self.rows(s, message_id)
            return rows if rows and all(r["state"] in states for r in rows) else None
        return self.wait_for("message %s: recipients %s" % (message_id, "/".join(sorted(states))), done,
                             lambda: self.table(s), timeout)

    def assert_received(self, field, s, sub, auth=True, client=False):
        """The Received header of a relayed copy: RFC 5321 4.4 shape, from
        the client's HELO, by our host name, id = the public id, no 'for'
        clause, no recipient, the client's address only when configured."""
        self.assertTrue(crlf_only(field), field)
        for line in field.split(b"\r\n")[:-1]:
            self.assertLessEqual(len(line), 998, field)
        text = re.sub(rb"\r\n(?=[ \t])", b"", field)[:-2].decode("ascii")
        norm = " ".join(text.split())
        m = re.match(r"^Received: from (?P<helo>\S+)(?: \((?P<info>[^()]*)\))? by (?P<by>\S+) \(submitd\) "
                     r"with (?P<proto>\S+) id (?P<id>[A-Za-z0-9_-]+); (?P<date>.+)$", norm)
        self.assertIsNotNone(m, "Received header of unexpected shape: %r" % field)
        self.assertEqual(m.group("helo"), sub.row["helo"])
        self.assertEqual(m.group("helo"), HELO)
        self.assertEqual(m.group("by"), s.hostname)
        self.assertEqual(m.group("proto"), "ESMTPA" if auth else "ESMTP")
        self.assertEqual(m.group("id"), sub.public_id)
        when = email.utils.parsedate_to_datetime(m.group("date")).timestamp()
        self.assertLess(abs(when - time.time()), 3600, m.group("date"))
        self.assertNotRegex(norm, r"(?i)\bfor\b", "a 'for' clause names a recipient (Bcc leak)")
        for a in sub.rcpts:
            self.assertNotIn(a.lower(), norm.lower(), "the Received header names a recipient")
        if client:
            self.assertIsNotNone(m.group("info"), "relay.show_client_address=true: no client part: %r" % norm)
            self.assertRegex(m.group("info"), r"^(?:\S+ )?\[127\.0\.0\.1\]$")
        else:
            self.assertIsNone(m.group("info"), "client part present by default: %r" % norm)
            self.assertNotIn("127.0.0.1", norm)

    def assert_relayed_copy(self, data, s, sub, auth=True, client=False):
        """data = one Received header + the stored body, byte for byte."""
        field, rest = split_received(data)
        self.assert_received(field, s, sub, auth=auth, client=client)
        stored = s.body(sub.message_id)
        self.assertEqual(stored, sub.body)
        self.assertEqual(rest, stored, "relayed data after the Received header differs from the stored body")

    @staticmethod
    def with_marker(messages, marker):
        return [m for m in messages if marker.encode() in m.data]

    def bounces(self, s):
        return s.sql("SELECT * FROM messages WHERE envelope_from = '' ORDER BY message_id")


# ------------------------------------------------------------------ delivery

class Delivery(RelayCase):
    """Postfix's smtp-sink as the next hop."""

    def test_one_recipient(self):
        sink = self.sink()
        s = self.server(sink.port)
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_states(s, sub.message_id, "delivered")
        self.assertEqual(rows[0]["attempts"], 1, rows)
        self.assertRegex(rows[0]["last_reply"], r"^250\b", rows)
        got = self.with_marker(sink.messages(), sub.marker)
        self.assertEqual(len(got), 1, sink.messages())
        m = got[0]
        self.assertEqual(m.sender, SENDER)
        self.assertEqual(m.recipients, ["bob@example.net"])
        self.assertEqual(m.helo, s.hostname)   # relay EHLO name = server.hostname
        # (smtp-sink's dump has LF line ends: a bare CR or LF on the wire
        # shows as a difference from the stored body; Wire checks octets)
        self.assert_relayed_copy(m.data, s, sub)

    def test_five_recipients(self):
        sink = self.sink()
        s = self.server(sink.port)
        rcpts = ["r%d@example.net" % i for i in range(1, 6)]
        sub = self.submit(s, rcpts)
        rows = self.wait_states(s, sub.message_id, "delivered")
        self.assertEqual([r["address"] for r in rows], rcpts)
        self.assertTrue(all(r["attempts"] == 1 for r in rows), rows)
        got = self.with_marker(sink.messages(), sub.marker)
        # one transaction, every recipient once, in order
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0].recipients, rcpts)
        self.assertEqual(got[0].sender, SENDER)
        self.assert_relayed_copy(got[0].data, s, sub)

    def test_show_client_address(self):
        sink = self.sink()
        s = self.server(sink.port, {"relay.show_client_address": "true"})
        sub = self.submit(s, ["bob@example.net", "carol@example.net"])
        self.wait_states(s, sub.message_id, "delivered")
        got = self.with_marker(sink.messages(), sub.marker)
        self.assertEqual(len(got), 1, got)
        self.assert_relayed_copy(got[0].data, s, sub, client=True)

    def test_no_bounce_for_a_bounce(self):
        # Every RCPT is refused: the message fails, its bounce is relayed to
        # the same hop and fails too, and the null sender gets nothing.
        sink = self.sink(hard=["RCPT"], hard_reply="550 5.1.1 mailbox unavailable")
        s = self.server(sink.port)
        sub = self.submit(s, ["nobody@example.net"])
        rows = self.wait_states(s, sub.message_id, "failed")
        self.assertIn("5.1.1 mailbox unavailable", rows[0]["last_reply"])
        bounce = self.wait_for("bounce queued", lambda: self.bounces(s), lambda: self.table(s))
        self.assertEqual(len(bounce), 1, bounce)
        brows = self.wait_states(s, bounce[0]["message_id"], "failed")
        self.assertEqual([r["address"] for r in brows], [SENDER])
        time.sleep(3)   # three scans: no bounce of the bounce appears
        self.assertEqual(s.message_count(), 2, self.table(s))
        self.assertEqual(sink.messages(), [])


# ------------------------------------------------------------------ the wire

class Wire(RelayCase):
    """The scripted next hop records the exact octets."""

    KW = ("PIPELINING", "8BITMIME", "SIZE", "ENHANCEDSTATUSCODES")

    def test_exact_bytes_crlf_only(self):
        hop = self.hop(keywords=self.KW)
        s = self.server(hop.port)
        for rcpts in (["bob@example.net"], ["r%d@example.net" % i for i in range(1, 6)]):
            with self.subTest(recipients=len(rcpts)):
                sub = self.submit(s, rcpts, body=None)
                self.wait_states(s, sub.message_id, "delivered")
                got = self.with_marker(hop.messages(), sub.marker)
                self.assertEqual(len(got), 1, got)
                t = got[0]
                self.assertEqual(t.method, "DATA")
                self.assertEqual(t.recipients, rcpts)
                self.assertTrue(crlf_only(t.wire), "bare CR or LF on the wire: %r" % t.wire)
                self.assertEqual(t.wire, dot_stuff(t.data))
                self.assert_relayed_copy(t.data, s, sub)
                # SIZE offered: the declared size covers what was sent
                m = re.search(r"(?i)\bSIZE=(\d+)\b", t.mail_params)
                self.assertIsNotNone(m, t.mail_params)
                self.assertGreaterEqual(int(m.group(1)), len(t.data))
                self.assertNotIn("BODY=", t.mail_params.upper())

    def dotted_body(self, marker):
        return default_body(marker, b".leading dot\r\n..two dots\r\n.\r\n. space\r\nlast line\r\n")

    def test_bdat_when_chunking_offered(self):
        hop = self.hop(keywords=self.KW + ("CHUNKING",))
        s = self.server(hop.port)
        marker = "m" + uuid.uuid4().hex
        sub = self.submit(s, ["bob@example.net"], body=self.dotted_body(marker), marker=marker)
        self.wait_states(s, sub.message_id, "delivered")
        got = self.with_marker(hop.messages(), marker)
        self.assertEqual(len(got), 1, got)
        t = got[0]
        self.assertEqual(t.method, "BDAT")
        self.assertEqual(t.chunks, [len(t.data)], "one chunk, LAST")
        self.assertEqual(t.wire, t.data, "BDAT data is not dot-stuffed")
        self.assertTrue(crlf_only(t.wire))
        self.assert_relayed_copy(t.data, s, sub)

    def test_data_without_chunking_dot_stuffed(self):
        hop = self.hop(keywords=self.KW)
        s = self.server(hop.port, {"smtp.trusted_networks": "127.0.0.0/8"})
        marker = "m" + uuid.uuid4().hex
        # not authenticated this time (trusted network): "with ESMTP"
        sub = self.submit(s, ["bob@example.net"], body=self.dotted_body(marker), marker=marker, auth=False)
        self.wait_states(s, sub.message_id, "delivered")
        got = self.with_marker(hop.messages(), marker)
        self.assertEqual(len(got), 1, got)
        t = got[0]
        self.assertEqual(t.method, "DATA")
        self.assertEqual(t.wire, dot_stuff(t.data), "dot-stuffing on the wire is wrong")
        self.assertIn(b"\r\n..leading dot\r\n...two dots\r\n..\r\n.. space\r\n", t.wire)
        self.assert_relayed_copy(t.data, s, sub, auth=False)

    def test_dot_stuffing_across_read_boundaries(self):
        # Lines that start with a dot at every offset around 64 KiB
        # multiples, where a reader of the stored body is likely to cut:
        # a dot right after a boundary, and a CRLF split by one.
        marker = "m" + uuid.uuid4().hex
        body = bytearray(default_body(marker))
        targets = sorted({k * 65536 + d for k in (1, 2, 3) for d in (-2, -1, 0, 1, 2, 3)})
        for i, off in enumerate(targets):
            # filler lines (each starting with a dot) so that a line starts at off
            while off - len(body) > 902:
                body += b"." + b"f" * 899 + b"\r\n"
            need = off - len(body)
            if need >= 3:
                body += b"." + b"g" * (need - 3) + b"\r\n"
            elif need != 0:
                continue   # too close to the previous target: skip it
            body += b".d%d\r\n" % i
        body += b"end\r\n"
        body = bytes(body)
        hop = self.hop(keywords=self.KW)
        s = self.server(hop.port)
        sub = self.submit(s, ["bob@example.net"], body=body, marker=marker)
        self.wait_states(s, sub.message_id, "delivered")
        got = self.with_marker(hop.messages(), marker)
        self.assertEqual(len(got), 1, got)
        t = got[0]
        self.assertEqual(t.method, "DATA")
        self.assertTrue(crlf_only(t.wire))
        self.assertEqual(t.wire, dot_stuff(t.data))
        self.assert_relayed_copy(t.data, s, sub)

    def test_smtputf8(self):
        rcpt = "jos\u00e9@example.net"
        for keywords, delivered in ((self.KW + ("SMTPUTF8",), True), (self.KW, False)):
            with self.subTest(smtputf8_offered=delivered):
                hop = ScriptedHop(keywords=keywords).start()
                try:
                    s = self.server(hop.port)
                    sub = self.submit(s, [rcpt], mail_params=" SMTPUTF8")
                    self.assertEqual(sub.row["smtputf8"], 1)
                    if delivered:
                        self.wait_states(s, sub.message_id, "delivered")
                        t = self.with_marker(hop.messages(), sub.marker)[0]
                        self.assertIn("SMTPUTF8", t.mail_params.upper().split())
                        self.assertEqual(t.recipients, [rcpt])
                    else:
                        rows = self.wait_states(s, sub.message_id, "failed")
                        self.assertIn("5.6.7", rows[0]["last_reply"])
                        # the original never reached the hop (its bounce, from <>,
                        # quotes the original headers and may carry the marker)
                        originals = [m for m in self.with_marker(hop.messages(accepted_only=False), sub.marker)
                                     if m.sender != ""]
                        self.assertEqual(originals, [])
                        self.wait_for("bounce queued", lambda: self.bounces(s), lambda: self.table(s))
                finally:
                    hop.stop()

    def test_extensions_only_when_offered(self):
        # RFC 5321 2.2.1: no SIZE= or BODY= to a hop that did not offer
        # them; without PIPELINING every command waits for its reply.
        marker = "m" + uuid.uuid4().hex
        body = default_body(marker, "caf\u00e9 cr\u00e8me\r\n".encode())
        for keywords in ((), ("PIPELINING", "8BITMIME", "SIZE")):
            with self.subTest(keywords=keywords):
                hop = ScriptedHop(keywords=keywords).start()
                try:
                    s = self.server(hop.port)
                    sub = self.submit(s, ["bob@example.net", "carol@example.net"], body=body, marker=marker,
                                      mail_params=" BODY=8BITMIME")
                    self.assertEqual(sub.row["body_type"], "8BITMIME")
                    self.wait_states(s, sub.message_id, "delivered")
                    got = self.with_marker(hop.messages(), marker)
                    self.assertEqual(len(got), 1, got)
                    params = got[0].mail_params.upper()
                    with self.subTest(keywords=keywords, parameter="SIZE"):
                        if "SIZE" in keywords:
                            self.assertRegex(params, r"\bSIZE=\d+")
                        else:
                            self.assertNotIn("SIZE=", params)
                    with self.subTest(keywords=keywords, parameter="BODY"):
                        if "8BITMIME" in keywords:
                            self.assertIn("BODY=8BITMIME", params)
                        else:
                            self.assertNotIn("BODY=", params)
                    self.assert_relayed_copy(got[0].data, s, sub)
                    for sess in hop.all_sessions():
                        early = sess.early if "PIPELINING" not in keywords else \
                            [c for c in sess.early if c.split()[0].upper() in ("EHLO", "DATA", "QUIT", "NOOP")]
                        self.assertEqual(early, [], "commands sent before the reply to the previous one")
                finally:
                    hop.stop()


# ------------------------------------------------------------------ replies

class Replies(RelayCase):
    def test_4xx_twice_then_delivered(self):
        hop = self.hop(eod_replies=["451 4.3.0 try again later"] * 2)
        s = self.server(hop.port)
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_states(s, sub.message_id, "delivered")
        self.assertEqual(rows[0]["attempts"], 3, rows)
        self.assertRegex(rows[0]["last_reply"], r"^250\b")
        seen = self.with_marker(hop.messages(accepted_only=False), sub.marker)
        self.assertEqual([t.code for t in seen], [451, 451, 250], seen)
        self.assertEqual(len(self.with_marker(hop.messages(), sub.marker)), 1)
        # and after a few more scans nothing is sent again
        time.sleep(2.5)
        self.assertEqual(len(self.with_marker(hop.messages(accepted_only=False), sub.marker)), 3)

    def test_4xx_records_deferred_with_reply(self):
        hop = self.hop(eod_replies=["452 4.2.2 mailbox full"] * 100)
        s = self.server(hop.port, {"relay.retry_base": "60", "relay.retry_max": "60"})
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_states(s, sub.message_id, "deferred")
        r = rows[0]
        self.assertEqual(r["attempts"], 1)
        self.assertIn("452 4.2.2 mailbox full", r["last_reply"])
        # equal jitter: between delay/2 and delay after the attempt
        delay = db_time(r["next_attempt_at"]) - db_time(r["updated_at"])
        self.assertGreaterEqual(delay, 29, r)
        self.assertLessEqual(delay, 61, r)

    def test_partial_4xx_retries_only_pending(self):
        # RCPT answered 4xx for one recipient: the others are delivered once,
        # and later attempts name only the one still pending.
        later = "later@example.net"
        hop = self.hop(rcpt_replies={later: "451 4.2.1 mailbox busy"})
        s = self.server(hop.port)
        sub = self.submit(s, ["bob@example.net", later, "carol@example.net"])
        self.wait_for("a retry for the pending recipient", lambda: any(
            r["address"] == later and r["attempts"] >= 2 for r in self.rows(s, sub.message_id)),
            lambda: self.table(s))
        states = {r["address"]: r["state"] for r in self.rows(s, sub.message_id)}
        self.assertEqual(states, {"bob@example.net": "delivered", later: "deferred", "carol@example.net": "delivered"})
        rcpt_cmds = [c for ss in hop.all_sessions() for c in ss.commands if c.upper().startswith("RCPT")]
        for a in ("bob@example.net", "carol@example.net"):
            self.assertEqual(sum(1 for c in rcpt_cmds if "<%s>" % a in c), 1, rcpt_cmds)
        self.assertGreaterEqual(sum(1 for c in rcpt_cmds if "<%s>" % later in c), 2, rcpt_cmds)
        got = [t for t in self.with_marker(hop.messages(), sub.marker) if t.sender == SENDER]
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0].recipients, ["bob@example.net", "carol@example.net"])
        self.assertEqual(self.bounces(s), [])

    def test_command_timeout_applies_after_connect(self):
        # relay.connect_timeout bounds the connection set-up only; a next
        # hop that takes longer than that (but less than
        # relay.command_timeout) to answer the end of data is waited for.
        hop = self.hop(eod_delay=3.0)
        s = self.server(hop.port, {"relay.connect_timeout": "1", "relay.command_timeout": "20"})
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_for("first attempt recorded", lambda: [r for r in self.rows(s, sub.message_id)
                                                                if r["attempts"] >= 1], lambda: self.table(s))
        self.assertEqual((rows[0]["state"], rows[0]["attempts"]), ("delivered", 1),
                         "the first attempt was not waited for:\n" + self.table(s))
        self.assertEqual(len(self.with_marker(hop.messages(), sub.marker)), 1)

    def test_larger_than_next_hop_size_limit(self):
        hop = self.hop(keywords=("PIPELINING", "SIZE 1000"))
        s = self.server(hop.port)
        sub = self.submit(s, ["bob@example.net"], body=None)
        marker = "m" + uuid.uuid4().hex
        big = self.submit(s, ["bob@example.net"], body=default_body(marker, b"y" * 900 + b"\r\n" * 2),
                          marker=marker)
        self.wait_states(s, sub.message_id, "delivered")
        rows = self.wait_states(s, big.message_id, "failed")
        self.assertRegex(rows[0]["last_reply"], r"^552\b")
        self.assertEqual(self.with_marker(hop.messages(accepted_only=False), marker), [])
        bounces = self.wait_for("bounce queued", lambda: self.bounces(s), lambda: self.table(s))
        self.assertEqual(len(bounces), 1)

    def test_one_recipient_5xx_bounce(self):
        bad = "gone@example.net"
        hop = self.hop(rcpt_replies={bad: "550 5.1.1 <gone@example.net>: user unknown"})
        s = self.server(hop.port)
        rcpts = ["bob@example.net", bad, "carol@example.net"]
        sub = self.submit(s, rcpts)
        rows = self.wait_states(s, sub.message_id, {"delivered", "failed"})
        states = {r["address"]: r["state"] for r in rows}
        self.assertEqual(states, {"bob@example.net": "delivered", bad: "failed", "carol@example.net": "delivered"})
        failed = [r for r in rows if r["address"] == bad][0]
        self.assertIn("550 5.1.1 <gone@example.net>: user unknown", failed["last_reply"])
        # (the bounce quotes the original headers: look at the sender's copy only)
        got = [t for t in self.with_marker(hop.messages(), sub.marker) if t.sender == SENDER]
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0].recipients, ["bob@example.net", "carol@example.net"])

        # the bounce: queued from <> to the sender, relayed like any message
        bounces = self.wait_for("bounce queued", lambda: self.bounces(s), lambda: self.table(s))
        self.assertEqual(len(bounces), 1, bounces)
        b = bounces[0]
        self.assertEqual(s.recipients(b["message_id"]), [SENDER])
        self.assertEqual(s.sql("SELECT count(*) AS n FROM tokens WHERE message_id = %d" % b["message_id"])[0]["n"], 0)
        self.wait_states(s, b["message_id"], "delivered")
        relayed = [t for t in hop.messages() if t.sender == "" and sub.public_id.encode() in t.data]
        self.assertEqual(len(relayed), 1, hop.messages())
        self.assertEqual(relayed[0].recipients, [SENDER])
        stored = s.body(b["message_id"])
        field, rest = split_received(relayed[0].data)
        self.assertEqual(rest, stored)
        self.assertTrue(crlf_only(relayed[0].wire))

        dsn = email.message_from_bytes(stored)
        self.assertEqual(dsn.get_content_type(), "multipart/report")
        self.assertEqual(dsn.get_param("report-type"), "delivery-status")
        self.assertIn(SENDER, dsn["To"])
        parts = dsn.get_payload()
        types = [p.get_content_type() for p in parts]
        self.assertEqual(types[1:], ["message/delivery-status", "text/rfc822-headers"], types)
        self.assertEqual(types[0].split("/")[0], "text")
        blocks = parts[1].get_payload()
        self.assertTrue(blocks[0]["Reporting-MTA"], blocks[0].items())
        self.assertTrue(blocks[0]["Arrival-Date"], blocks[0].items())
        per_rcpt = blocks[1:]
        self.assertEqual(len(per_rcpt), 1, [b.items() for b in per_rcpt])
        r = per_rcpt[0]
        self.assertRegex(r["Final-Recipient"], r"(?i)^rfc822;\s*gone@example\.net$")
        self.assertEqual(r["Action"].strip().lower(), "failed")
        self.assertRegex(r["Status"].strip(), r"^5\.\d{1,3}\.\d{1,3}$")
        self.assertIn("user unknown", r["Diagnostic-Code"])
        headers = parts[2].get_payload()
        if isinstance(headers, list):   # some parsers read it as a message
            headers = headers[0].as_string()
        self.assertIn("Subject: " + sub.marker, headers)
        self.assertNotIn("a line.", headers, "the original body is in the bounce")
        for ok in ("bob@example.net", "carol@example.net"):
            self.assertNotIn(ok, parts[1].as_string(), "a delivered recipient is in the report")


# ------------------------------------------------------------------ outages

class Outage(RelayCase):
    def test_next_hop_down_then_up(self):
        port = free_port()
        s = self.server(port)
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_states(s, sub.message_id, "deferred")
        self.assertGreaterEqual(rows[0]["attempts"], 1)
        self.assertRegex(rows[0]["last_reply"], r"(?i)connect")
        self.assertIsNotNone(rows[0]["next_attempt_at"])
        sink = self.sink(port=port)
        rows = self.wait_states(s, sub.message_id, "delivered")
        self.assertGreaterEqual(rows[0]["attempts"], 2)
        got = self.with_marker(sink.messages(), sub.marker)
        self.assertEqual(len(got), 1, got)
        self.assert_relayed_copy(got[0].data, s, sub)

    def test_lifetime_exceeded_fails_and_bounces(self):
        port = free_port()
        s = self.server(port, {"relay.max_lifetime": "3"})
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_states(s, sub.message_id, "failed")
        self.assertIn("lifetime", rows[0]["last_reply"])
        self.assertGreaterEqual(rows[0]["attempts"], 1)
        bounces = self.wait_for("bounce queued", lambda: self.bounces(s), lambda: self.table(s))
        self.assertEqual(len(bounces), 1)
        self.assertEqual(s.recipients(bounces[0]["message_id"]), [SENDER])
        dsn = email.message_from_bytes(s.body(bounces[0]["message_id"]))
        self.assertEqual(dsn.get_content_type(), "multipart/report")
        r = dsn.get_payload()[1].get_payload()[1]
        self.assertRegex(r["Final-Recipient"], r"(?i)bob@example\.net")
        self.assertEqual(r["Action"].strip().lower(), "failed")
        # the bounce cannot be delivered either; it fails without a bounce
        self.wait_states(s, bounces[0]["message_id"], "failed")
        time.sleep(2.5)
        self.assertEqual(s.message_count(), 2, self.table(s))

    def test_restart_resumes_without_duplicates(self):
        port = free_port()
        s = self.server(port, {"relay.connections": "1"})
        subs = [self.submit(s, ["bob@example.net", "carol@example.net"]) for _ in range(5)]
        for sub in subs:
            rows = self.wait_states(s, sub.message_id, "deferred")
            self.assertTrue(all(r["attempts"] >= 1 for r in rows), rows)
        s.stop()   # SIGTERM, exit status 0
        sink = self.sink(port=port)
        # all due before the restart, so that the first scan takes them all
        self.wait_for("all retries due", lambda: all(
            db_time(r["next_attempt_at"]) < time.time() - 0.5
            for r in s.sql("SELECT next_attempt_at FROM recipients")), lambda: self.table(s), timeout=10)
        s.start()
        for sub in subs:
            self.wait_states(s, sub.message_id, "delivered")
        got = sink.messages()
        for sub in subs:
            mine = self.with_marker(got, sub.marker)
            self.assertEqual(len(mine), 1, "message %s received %d times" % (sub.public_id, len(mine)))
            self.assertEqual(mine[0].recipients, ["bob@example.net", "carol@example.net"])
        self.assertEqual(len(got), 5)
        s.stop()
        # several messages over one connection (relay.connections = 1)
        c = sink.counters()
        self.assertEqual((c.get("sess"), c.get("mesg")), (1, 5), sink.output())

    def test_sigterm_during_deliveries_no_duplicates(self):
        hop = self.hop(eod_delay=0.5)
        s = self.server(hop.port, {"relay.connections": "2"})
        subs = [self.submit(s, ["bob@example.net"]) for _ in range(8)]
        self.wait_for("first deliveries", lambda: len(hop.messages()) >= 1, lambda: self.table(s))
        s.stop()   # SIGTERM with deliveries in flight; exit status 0
        accepted_before = {t.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for t in hop.messages()}
        # every message the hop took before the stop is recorded as delivered
        for sub in subs:
            st = [r["state"] for r in self.rows(s, sub.message_id)]
            if sub.marker in accepted_before:
                self.assertEqual(st, ["delivered"], "accepted by the hop but not recorded: %s" % sub.public_id)
            else:
                self.assertIn(st[0], ("queued", "deferred"), self.table(s))
        s.start()
        for sub in subs:
            self.wait_states(s, sub.message_id, "delivered")
        for sub in subs:
            n = len(self.with_marker(hop.messages(), sub.marker))
            self.assertEqual(n, 1, "message %s accepted %d times after a clean stop" % (sub.public_id, n))

    def test_kill9_at_least_once(self):
        hop = self.hop(eod_delay=0.3)
        s = self.server(hop.port)
        subs = [self.submit(s, ["bob@example.net"]) for _ in range(20)]
        self.wait_for("some deliveries", lambda: len(hop.messages()) >= 3, lambda: self.table(s))
        s.proc.kill()   # SIGKILL while deliveries are in flight
        s.proc.wait()
        s.proc = None
        s.log_file.close()
        recorded = {r["message_id"] for r in s.sql("SELECT message_id FROM recipients WHERE state = 'delivered'")}
        s.start()
        for sub in subs:
            self.wait_states(s, sub.message_id, "delivered", timeout=60)
        counts = [len(self.with_marker(hop.messages(), sub.marker)) for sub in subs]
        print("\nkill -9: %d messages, %d delivered before the kill were recorded, %d received twice or more, "
              "%d copies in all" % (len(subs), len(recorded), sum(1 for n in counts if n > 1), sum(counts)))
        for sub, n in zip(subs, counts):
            self.assertGreaterEqual(n, 1, "message %s lost" % sub.public_id)


# ------------------------------------------------------------------ admin

class Admin(RelayCase):
    def queue_list(self, s, *args):
        p = s.submitctl("queue", *(args or ("list",)))
        lines = p.stdout.rstrip("\n").split("\n")
        self.assertEqual(lines[0].split("\t"), ["public_id", "position", "address", "state", "attempts",
                                                "next_attempt_at", "last_reply"], p.stdout)
        return [dict(zip(lines[0].split("\t"), l.split("\t"))) for l in lines[1:] if l]

    def test_queue_commands(self):
        sink = self.sink(soft=["."], soft_reply="451 4.7.1 greylisted, come back later")
        s = self.server(sink.port, {"relay.retry_base": "60", "relay.retry_max": "60"})
        a = self.submit(s, ["a1@example.net", "a2@example.net"])
        b = self.submit(s, ["b1@example.net"])
        for sub in (a, b):
            rows = self.wait_states(s, sub.message_id, "deferred")
            self.assertTrue(all(r["attempts"] == 1 for r in rows), rows)

        listed = self.queue_list(s)
        self.assertEqual(sorted((r["public_id"], r["address"]) for r in listed),
                         sorted([(a.public_id, "a1@example.net"), (a.public_id, "a2@example.net"),
                                 (b.public_id, "b1@example.net")]), listed)
        table = {(r["public_id"], r["address"]): r for r in
                 s.sql("SELECT public_id, address, next_attempt_at, updated_at FROM recipients "
                       "JOIN messages USING (message_id)")}
        for r in listed:
            self.assertEqual((r["state"], r["attempts"]), ("deferred", "1"), r)
            self.assertIn("greylisted, come back later", r["last_reply"])
            t = table[(r["public_id"], r["address"])]
            self.assertEqual(r["next_attempt_at"], t["next_attempt_at"])
            self.assertGreaterEqual(db_time(t["next_attempt_at"]) - db_time(t["updated_at"]), 29, t)
        shown = self.queue_list(s, "show", b.public_id)
        self.assertEqual([(r["public_id"], r["address"]) for r in shown], [(b.public_id, "b1@example.net")])
        view = s.sql("SELECT * FROM queue_overview")
        self.assertEqual(sorted((r["public_id"], r["address"], r["state"]) for r in view),
                         sorted((r["public_id"], r["address"], "deferred") for r in listed))

        # retry: A is due now and tried again; B waits for its time
        s.submitctl("queue", "retry", a.public_id)
        self.wait_for("A retried", lambda: all(r["attempts"] == 2 and r["state"] == "deferred"
                                               for r in self.rows(s, a.message_id)), lambda: self.table(s))
        self.assertEqual([r["attempts"] for r in self.rows(s, b.message_id)], [1], self.table(s))

        # drop: B fails, without a bounce
        s.submitctl("queue", "drop", b.public_id)
        rows = self.rows(s, b.message_id)
        self.assertEqual([r["state"] for r in rows], ["failed"], rows)
        time.sleep(2.5)   # scans and writer jobs would have made a bounce by now
        self.assertEqual(self.bounces(s), [], self.table(s))
        self.assertEqual(s.message_count(), 2)
        listed = self.queue_list(s)
        self.assertEqual({r["public_id"] for r in listed}, {a.public_id})
        self.assertEqual({r["public_id"] for r in s.sql("SELECT public_id FROM queue_overview")}, {a.public_id})
        # smtp-sink dumps every transaction that reached its end of data,
        # refused or not: A was tried twice, B once
        self.assertEqual(len(self.with_marker(sink.messages(), a.marker)), 2)
        self.assertEqual(len(self.with_marker(sink.messages(), b.marker)), 1)

    def test_drop_while_delivery_in_flight(self):
        # The administrator drops a message while the relay is sending it
        # and the next hop then answers 4xx: the drop must stand (failed,
        # not deferred again, no further attempt).
        hop = self.hop(eod_delay=2.0, eod_replies=["451 4.3.0 busy"] * 100)
        s = self.server(hop.port)
        sub = self.submit(s, ["bob@example.net"])
        self.wait_for("delivery in flight", lambda: any(
            c.upper() in ("DATA",) or c.upper().startswith("BDAT") for ss in hop.all_sessions() for c in ss.commands),
            lambda: self.table(s))
        p = s.submitctl("queue", "drop", sub.public_id)
        self.assertIn("1 recipient(s)", p.stdout)
        # the end-of-data answer comes 2 s later; then give the relay
        # three scans to try again
        self.wait_for("attempt answered", lambda: hop.messages(accepted_only=False), lambda: self.table(s))
        time.sleep(3.5)
        rows = self.rows(s, sub.message_id)
        self.assertEqual([r["state"] for r in rows], ["failed"], "drop undone by the delivery in flight:\n"
                         + self.table(s))
        self.assertEqual(len(hop.messages(accepted_only=False)), 1, "a dropped message was tried again")
        self.assertEqual(self.bounces(s), [])

    def big_body(self, marker, size):
        line = b"x" * 76 + b"\r\n"
        return default_body(marker, line * (size // len(line)))

    def pragma(self, s, name):
        return s.sql("PRAGMA %s" % name)[0][name]

    def fetch_status(self, s, token, address):
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        try:
            c.request("GET", "/v1/message", headers={"Submit-Token": token, "Submit-Address": address})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def test_retention_purges_and_reclaims_space(self):
        later = "later@example.net"
        hop = self.hop(rcpt_replies={later: "450 4.2.0 mailbox busy"})
        s = self.server(hop.port, {"retention.keep": "2", "retention.interval": "1",
                                   "http.auth_fetch": "false",
                                   "relay.retry_base": "60", "relay.retry_max": "60"})
        self.assertEqual(self.pragma(s, "auto_vacuum"), 2, "new databases use auto_vacuum=INCREMENTAL")
        # a message that stays pending: retention must keep it
        pending = self.submit(s, [later])
        self.wait_states(s, pending.message_id, "deferred")

        for round_ in range(2):
            with self.subTest(round=round_ + 1):
                pages_before = self.pragma(s, "page_count")
                marker = "m" + uuid.uuid4().hex
                sub = self.submit(s, ["bob@example.net"], body=self.big_body(marker, 2 * 1024 * 1024),
                                  marker=marker)
                self.wait_states(s, sub.message_id, "delivered")
                self.wait_for("body and tokens purged", lambda: not s.sql(
                    "SELECT 1 FROM message_bodies WHERE message_id = %d UNION ALL "
                    "SELECT 1 FROM tokens WHERE message_id = %d" % (sub.message_id, sub.message_id)),
                    lambda: self.table(s))
                # history stays
                self.assertEqual(len(s.sql("SELECT 1 FROM messages WHERE message_id = %d" % sub.message_id)), 1)
                self.assertEqual(self.rows(s, sub.message_id)[0]["state"], "delivered")
                # the pending message is untouched
                self.assertEqual(s.body(pending.message_id), pending.body)
                self.assertEqual(s.sql("SELECT count(*) AS n FROM tokens WHERE message_id = %d"
                                       % pending.message_id)[0]["n"], 2)
                # a purged token answers "expired", on the command line and over HTTP
                tok = sub.tokens[0]
                p = s.submitctl("token", "verify", tok.token, "--address", "bob@example.net", check=False)
                self.assertIn("result=expired", p.stdout + p.stderr)
                self.assertNotEqual(p.returncode, 0)
                status, text = self.fetch_status(s, tok.token, "bob@example.net")
                self.assertEqual(status, 410, text)
                # space: the 2 MB went back to the file system (incremental
                # vacuum), not merely to the free list
                freelist = self.pragma(s, "freelist_count")
                pages_after = self.pragma(s, "page_count")
                self.assertLess(freelist, 64, "freelist_count %d after the purge" % freelist)
                self.assertLessEqual(pages_after, pages_before + 16,
                                     "page_count %d before the message, %d after its purge"
                                     % (pages_before, pages_after))

    def test_retention_without_relay_then_relay(self):
        # No relay: recipients stay queued and the age alone counts. A relay
        # configured later sends nothing of it until the operator releases
        # it (queue release); then it cannot send what was purged: the
        # recipient fails (554 5.3.0) and the sender gets a bounce; nothing
        # reaches the hop.
        s = Submitd({"relay.host": "", "smtp.auth_cleartext_loopback": "true",
                     "retention.keep": "1", "retention.interval": "1"})
        s.start()
        self.addCleanup(self._finish, s)
        s.add_user(SENDER, PASSWORD)
        sub = self.submit(s, ["bob@example.net"])
        self.wait_for("body purged without a relay", lambda: not s.sql(
            "SELECT 1 FROM message_bodies WHERE message_id = %d" % sub.message_id), lambda: self.table(s))
        self.assertEqual([r["state"] for r in self.rows(s, sub.message_id)], ["queued"])
        s.stop()
        hop = self.hop()
        s.options.update(relay_options(hop.port, {"retention.keep": "3600"}))
        s.start()
        self.assertIn("1 recipients released", s.submitctl("queue", "release").stdout)
        rows = self.wait_states(s, sub.message_id, "failed")
        self.assertIn("5.3.0", rows[0]["last_reply"])
        bounces = self.wait_for("bounce queued", lambda: self.bounces(s), lambda: self.table(s))
        self.wait_states(s, bounces[0]["message_id"], "delivered")
        self.assertEqual([t.sender for t in hop.messages()], [""], "only the bounce reaches the next hop")

    def test_backup_online_and_restore(self):
        sink = self.sink()
        s = self.server(sink.port)
        before = [self.submit(s, ["bob@example.net"], body=None) for _ in range(3)]
        big = []
        for _ in range(8):
            marker = "m" + uuid.uuid4().hex
            big.append(self.submit(s, ["carol@example.net"], body=self.big_body(marker, 600 * 1024),
                                   marker=marker))
        before += big

        stop = threading.Event()
        during, errors = [], []

        def traffic():
            while not stop.is_set():
                try:
                    during.append(self.submit(s, ["dave@example.net"]))
                except Exception as e:   # reported below, in the main thread
                    errors.append(repr(e))
                    return
        t = threading.Thread(target=traffic)
        t.start()
        try:
            self.wait_for("traffic flowing", lambda: len(during) >= 1, lambda: repr(errors))
            backup = os.path.join(s.tmp, "backup.db")
            n_during = len(during)
            p = s.submitctl("backup", backup)
            self.wait_for("traffic after the backup", lambda: len(during) > n_during + 1 or errors,
                          lambda: repr(errors))
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(errors, [], "the server refused mail while the backup ran")
        print("\nbackup: %d messages before, %d submitted while the backup ran (%s)"
              % (len(before), len(during), p.stdout.strip()))

        def bsql(q):
            out = subprocess.run(["sqlite3", "-json", backup, q], capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            return json.loads(out.stdout) if out.stdout.strip() else []
        self.assertEqual(bsql("PRAGMA integrity_check"), [{"integrity_check": "ok"}])
        self.assertEqual(bsql("PRAGMA user_version"), s.sql("PRAGMA user_version"))
        ids = {r["public_id"]: r for r in bsql("SELECT public_id, message_id, sha256 FROM messages")}
        for sub in before:
            self.assertIn(sub.public_id, ids, "message committed before the backup is missing")
        # consistent: every message in the copy is whole
        self.assertEqual(bsql("SELECT count(*) AS n FROM messages m WHERE NOT EXISTS (SELECT 1 FROM message_bodies b "
                              "WHERE b.message_id = m.message_id) OR NOT EXISTS (SELECT 1 FROM recipients r "
                              "WHERE r.message_id = m.message_id)"), [{"n": 0}])
        for sub in big[:2]:
            h = bsql("SELECT hex(content) AS h FROM message_bodies WHERE message_id = %d" % sub.message_id)[0]["h"]
            self.assertEqual(hashlib.sha256(bytes.fromhex(h)).hexdigest(), sub.row["sha256"])

        # restore: stop, copy over, remove -wal and -shm, start
        s.stop()
        shutil.copyfile(backup, s.db_path)
        for ext in ("-wal", "-shm"):
            try:
                os.unlink(s.db_path + ext)
            except FileNotFoundError:
                pass
        s.start()
        self.assertEqual(s.message_count(), len(ids))
        p = s.submitctl("token", "verify", before[0].tokens[0].token, "--address", "bob@example.net", check=False)
        self.assertIn("result=valid", p.stdout)
        self.assertEqual(s.body(big[-1].message_id), big[-1].body)

    def test_backup_terminates_under_steady_traffic(self):
        # A 40 MB database and a commit every few milliseconds: the backup
        # must still finish. (An online backup copied in small steps starts
        # over whenever another process commits between two steps; on a big
        # database even a trickle of mail keeps it from ever ending. The
        # bound below is for termination, not speed: one pass over 40 MB
        # takes a fraction of a second.)
        sink = self.sink()
        s = self.server(sink.port, {"smtp.trusted_networks": "127.0.0.0/8"})
        line = b"z" * 76 + b"\r\n"
        big = b"Subject: filler\r\n\r\n" + line * (4 * 1024 * 1024 // len(line))
        with RawSMTP(s.port, timeout=60) as c:
            c.ehlo(HELO)
            for _ in range(10):
                self.assertEqual(c.cmd("MAIL FROM:<%s>" % SENDER).code, 250)
                self.assertEqual(c.cmd("RCPT TO:<bob@example.net>").code, 250)
                self.assertEqual(c.cmd("DATA").code, 354)
                c.send(dot_stuff(big))
                self.assertEqual(c.reply().code, 250)
        stop = threading.Event()
        sent = [0]

        def traffic():
            with RawSMTP(s.port, timeout=30) as c:
                c.ehlo(HELO)
                while not stop.is_set():
                    c.cmd("MAIL FROM:<%s>" % SENDER)
                    c.cmd("RCPT TO:<bob@example.net>")
                    c.cmd("DATA")
                    c.send(b"Subject: small\r\n\r\nsmall\r\n.\r\n")
                    if c.reply().code == 250:
                        sent[0] += 1
        t = threading.Thread(target=traffic)
        t.start()
        backup = os.path.join(s.tmp, "busy-backup.db")
        try:
            self.wait_for("traffic flowing", lambda: sent[0] >= 5, lambda: self.table(s))
            before, t0 = sent[0], time.monotonic()
            try:
                p = run_program("submitctl", s.option_args() + ["backup", backup],
                                capture_output=True, text=True, timeout=60)
                print("\nbusy backup: %d pages, %d messages committed during the %.1f s it took"
                      % (self.pragma(s, "page_count"), sent[0] - before, time.monotonic() - t0))
            except subprocess.TimeoutExpired:
                self.fail("submitctl backup of a %d-page database had not finished after %d s while %d "
                          "messages were committed (one pass takes well under a second; likely it starts "
                          "over after each commit of the server)"
                          % (self.pragma(s, "page_count"), 60 * TIMEOUT_SCALE, sent[0]))
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = subprocess.run(["sqlite3", backup, "PRAGMA integrity_check"], capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "ok")


# ------------------------------------------------------------------ TLS and AUTH

class Security(RelayCase):
    def test_tls_required_but_not_offered(self):
        hop = self.hop()
        s = self.server(hop.port, {"relay.tls": "required"})
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_states(s, sub.message_id, "deferred")
        self.assertIn("STARTTLS", rows[0]["last_reply"])
        self.assertFalse(any(c.upper().startswith("MAIL") for ss in hop.all_sessions() for c in ss.commands))

    def tls_hop(self, **kw):
        d = tempfile.mkdtemp(prefix="hop-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        ctx, cert = self_signed_context(d)
        return self.hop(tls_context=ctx, **kw), cert

    def test_tls_required_no_verify(self):
        hop, _ = self.tls_hop()
        s = self.server(hop.port, {"relay.tls": "required", "relay.tls_verify": "false"})
        sub = self.submit(s, ["bob@example.net"])
        self.wait_states(s, sub.message_id, "delivered")
        got = self.with_marker(hop.messages(), sub.marker)
        self.assertEqual(len(got), 1)
        self.assertTrue(got[0].session.tls)
        self.assert_relayed_copy(got[0].data, s, sub)

    def test_tls_verify_refuses_unknown_certificate(self):
        hop, _ = self.tls_hop()
        s = self.server(hop.port, {"relay.tls": "required", "relay.tls_verify": "true"})
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_states(s, sub.message_id, "deferred")
        self.assertRegex(rows[0]["last_reply"], r"(?i)tls|certificate|verify")
        self.assertEqual(hop.messages(accepted_only=False), [])

    def test_tls_verify_with_ca_file(self):
        hop, cert = self.tls_hop()
        s = self.server(hop.port, {"relay.tls": "required", "relay.tls_verify": "true",
                                   "relay.tls_ca_file": share_with_server(cert)})
        sub = self.submit(s, ["bob@example.net"])
        self.wait_states(s, sub.message_id, "delivered")
        self.assertTrue(self.with_marker(hop.messages(), sub.marker)[0].session.tls)

    def test_tls_opportunistic(self):
        plain = self.hop()
        s = self.server(plain.port, {"relay.tls": "opportunistic"})
        sub = self.submit(s, ["bob@example.net"])
        self.wait_states(s, sub.message_id, "delivered")
        self.assertFalse(self.with_marker(plain.messages(), sub.marker)[0].session.tls)
        hop, _ = self.tls_hop()
        s2 = self.server(hop.port, {"relay.tls": "opportunistic"})
        sub2 = self.submit(s2, ["bob@example.net"])
        self.wait_states(s2, sub2.message_id, "delivered")
        self.assertTrue(self.with_marker(hop.messages(), sub2.marker)[0].session.tls)

    def password_file(self, password):
        d = tempfile.mkdtemp(prefix="relay-pw-")
        self.addCleanup(shutil.rmtree, d, True)
        p = os.path.join(d, "password")
        with open(p, "w") as f:
            f.write(password + "\n")
        return share_with_server(p)

    def test_auth_plain_to_next_hop(self):
        secret = "hop secret 42"
        hop = self.hop(auth={"relayuser": secret}, require_auth=True)
        s = self.server(hop.port, {"relay.auth_user": "relayuser",
                                   "relay.auth_password_file": self.password_file(secret)})
        sub = self.submit(s, ["bob@example.net"])
        self.wait_states(s, sub.message_id, "delivered")
        t = self.with_marker(hop.messages(), sub.marker)[0]
        self.assertEqual((t.session.auth_user, t.session.auth_password), ("relayuser", secret))
        self.assertNotIn(secret, s.log())

    def test_no_credentials_in_clear_unless_tls_none(self):
        secret = "hop secret 43"
        hop = self.hop(auth={"relayuser": secret}, require_auth=True)
        s = self.server(hop.port, {"relay.tls": "opportunistic", "relay.auth_user": "relayuser",
                                   "relay.auth_password_file": self.password_file(secret)})
        sub = self.submit(s, ["bob@example.net"])
        rows = self.wait_states(s, sub.message_id, "deferred")
        self.assertRegex(rows[0]["last_reply"], r"(?i)credentials|tls")
        self.assertFalse(any(c.upper().startswith("AUTH") for ss in hop.all_sessions() for c in ss.commands))


if __name__ == "__main__":
    unittest.main()
