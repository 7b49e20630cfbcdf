"""test_limits.py: sending limits, disabled logins and unrouted mail
(docs/config.md#limits, docs/operations.md), end to end against a real
submitd: messages per login and per client address are refused at MAIL
and recipients per login at RCPT with 450 4.7.1 naming the limit, a new
window lets them through again (windows of a few seconds set through
limits.*_window), counts survive a restart, per-login overrides and
disable/enable through submitctl take effect in the running server, a
disabled login's queued mail is held (not delivered to the test next hop)
until enabled, `queue drop --login` drops it, and mail accepted without
relay.host is not sent when relay.host is set later, only after
`submitctl queue release`. Every wait polls with a deadline.
Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_limits
"""

import json
import time
import unittest
import urllib.request
import uuid

from harness import TIMEOUT_SCALE, RawSMTP, Submitd, dot_stuff, free_port, parse_token_reply
from nexthop import ScriptedHop

ALICE, BOB = "alice@example.org", "bob@example.org"
PASSWORD = "limits test password"
WAIT = 30.0 * TIMEOUT_SCALE
# no limit unless a test sets one; policies read again every second
BASE = {
    "smtp.auth_cleartext_loopback": "true",
    "limits.user_messages_per_hour": "0",
    "limits.user_recipients_per_day": "0",
    "limits.ip_messages_per_hour": "0",
    "limits.reload_interval": "1",
}
FAST_RELAY = {"relay.retry_base": "1", "relay.retry_max": "2", "relay.poll_interval": "1", "relay.tls": "none"}


def body(marker):
    return ("From: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nhello\r\n"
            % (ALICE, marker, marker)).encode()


class LimitsCase(unittest.TestCase):
    def setUp(self):
        self.tokens = {}

    def server(self, options=None, users=(ALICE, BOB)):
        opts = dict(BASE)
        opts.update(options or {})
        s = Submitd(opts)
        s.start()
        self.addCleanup(self._finish, s)
        for u in users:
            s.add_user(u, PASSWORD)
        return s

    @staticmethod
    def _finish(s):
        try:
            s.stop(check=False)
        finally:
            s.cleanup()

    def session(self, s, login=ALICE):
        c = RawSMTP(s.port, timeout=30)
        self.addCleanup(c.close)
        c.ehlo()
        r = c.auth_plain(login, PASSWORD)
        self.assertEqual(r.code, 235, r)
        return c

    def send(self, c, rcpts=("rcpt@example.net",), login=ALICE):
        """One whole transaction on c; asserts each step. Returns the marker."""
        marker = "m" + uuid.uuid4().hex
        r = c.cmd("MAIL FROM:<%s>" % login)
        self.assertEqual(r.code, 250, r)
        for a in rcpts:
            r = c.cmd("RCPT TO:<%s>" % a)
            self.assertEqual(r.code, 250, r)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(dot_stuff(body(marker)))
        r = c.reply()
        self.assertEqual(r.code, 250, r)
        self.tokens[marker] = parse_token_reply(r)[-1].token    # the sender's
        return marker

    def status(self, s, marker):
        """The recipients' states GET /v1/status reports for the sender's token."""
        req = urllib.request.Request("http://127.0.0.1:%d/v1/status" % s.http_port,
                                     headers={"Submit-Token": self.tokens[marker]})
        with urllib.request.urlopen(req, timeout=10) as f:
            return [r["state"] for r in json.loads(f.read())["recipients"]]

    def assert_limited(self, r, name):
        self.assertEqual(r.code, 450, r)
        self.assertIn("4.7.1", r.text)
        self.assertIn("limits." + name, r.text)

    def wait_for(self, what, cond, dump=lambda: "", timeout=WAIT, interval=0.2):
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("%s: not within %.0f s\n%s" % (what, timeout, dump()))
            time.sleep(interval)

    def mail_accepted(self, c, login=ALICE):
        """MAIL on c: True when 250 (then RSET), False on the limit's 450."""
        r = c.cmd("MAIL FROM:<%s>" % login)
        if r.code == 250:
            self.assertEqual(c.cmd("RSET").code, 250)
            return True
        self.assertEqual(r.code, 450, r)
        return False

    def metrics(self, s):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % s.http_port, timeout=10) as f:
            return f.read().decode()

    def metric(self, s, line_start):
        for line in self.metrics(s).splitlines():
            if line.startswith(line_start + " "):
                return int(line.split()[-1])
        self.fail("no metric %s" % line_start)


class Limits(LimitsCase):
    def test_user_messages_refused_at_mail_then_new_window(self):
        s = self.server({"limits.user_messages_per_hour": "3", "limits.user_messages_window": "3"})
        c = self.session(s)
        for _ in range(3):
            self.send(c)
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        self.assert_limited(r, "user_messages_per_hour")
        self.assertIn("event=limit_reached", s.log())
        self.assertEqual(self.metric(s, 'submitd_limit_refused_total{limit="user_messages_per_hour"}'), 1)
        # another login is not affected
        self.send(self.session(s, BOB), login=BOB)
        # the window rolls on: alice may send again
        self.wait_for("a new window", lambda: self.mail_accepted(c), lambda: s.log()[-2000:])
        self.send(c)

    def test_user_recipients_refused_at_rcpt(self):
        s = self.server({"limits.user_recipients_per_day": "3", "limits.user_recipients_window": "3"})
        c = self.session(s)
        self.send(c, rcpts=("a@example.net", "b@example.net"))
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % ALICE).code, 250)
        self.assertEqual(c.cmd("RCPT TO:<c@example.net>").code, 250)
        r = c.cmd("RCPT TO:<d@example.net>")
        self.assert_limited(r, "user_recipients_per_day")
        # the recipients accepted so far still make a message
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(dot_stuff(body("x" + uuid.uuid4().hex)))
        self.assertEqual(c.reply().code, 250)
        self.assertEqual(self.metric(s, 'submitd_limit_refused_total{limit="user_recipients_per_day"}'), 1)

        def rcpt_ok():
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % ALICE).code, 250)
            code = c.cmd("RCPT TO:<e@example.net>").code
            self.assertIn(code, (250, 450))
            self.assertEqual(c.cmd("RSET").code, 250)
            return code == 250
        self.wait_for("a new recipients window", rcpt_ok)

    def test_ip_messages_refused_at_mail(self):
        s = self.server({"limits.ip_messages_per_hour": "2", "limits.ip_messages_window": "3"})
        self.send(self.session(s, ALICE), login=ALICE)
        c = self.session(s, BOB)
        self.send(c, login=BOB)
        r = c.cmd("MAIL FROM:<%s>" % BOB)
        self.assert_limited(r, "ip_messages_per_hour")
        self.assertEqual(self.metric(s, 'submitd_limit_refused_total{limit="ip_messages_per_hour"}'), 1)
        self.wait_for("a new address window", lambda: self.mail_accepted(c, BOB))

    def test_counts_survive_a_restart(self):
        s = self.server({"limits.user_messages_per_hour": "2", "limits.user_recipients_per_day": "3"})
        c = self.session(s)
        self.send(c, rcpts=("a@example.net",))
        self.send(c, rcpts=("b@example.net", "c@example.net"))
        c.close()
        s.stop()
        s.start()
        c = self.session(s)
        self.assert_limited(c.cmd("MAIL FROM:<%s>" % ALICE), "user_messages_per_hour")
        self.assertIn("event=limits_loaded logins=1", s.log())
        # the recipients were counted again too: the fourth is refused
        s.submitctl("user", "limit", ALICE, "user_messages_per_hour", "0")
        self.wait_for("the override", lambda: self.mail_accepted(c))
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % ALICE).code, 250)
        self.assert_limited(c.cmd("RCPT TO:<d@example.net>"), "user_recipients_per_day")
        s.submitctl("user", "limit", ALICE, "user_messages_per_hour", "default")
        out = s.submitctl("user", "list").stdout
        self.assertRegex(out, r"alice@example.org\t.*disabled=no\tmessages=2/2\trecipients=3/3")

    def test_override_through_submitctl(self):
        s = self.server({"limits.user_messages_per_hour": "1"})
        c = self.session(s)
        self.send(c)
        self.assert_limited(c.cmd("MAIL FROM:<%s>" % ALICE), "user_messages_per_hour")
        p = s.submitctl("user", "limit", ALICE, "user_messages_per_hour", "3")
        self.assertIn("= 3", p.stdout)
        self.assertRegex(s.submitctl("user", "list").stdout, r"alice@example.org\t.*messages=1/3\(own\)")
        # taken up by the running server within limits.reload_interval
        self.wait_for("the override", lambda: self.mail_accepted(c))
        self.send(c)
        self.send(c)
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        self.assert_limited(r, "user_messages_per_hour")
        self.assertIn("set for this login", r.text)
        # bob keeps the configured limit
        b = self.session(s, BOB)
        self.send(b, login=BOB)
        self.assert_limited(b.cmd("MAIL FROM:<%s>" % BOB), "user_messages_per_hour")
        # back to the configured value; bad keys and values are refused
        s.submitctl("user", "limit", ALICE, "limits.user_messages_per_hour", "default")
        self.assertEqual(s.submitctl("user", "limit", ALICE, "bogus", "3", check=False).returncode, 1)
        self.assertEqual(s.submitctl("user", "limit", ALICE, "user_messages_per_hour", "-1", check=False).returncode, 1)


class Disable(LimitsCase):
    def auth_code(self, s, login):
        with RawSMTP(s.port, timeout=30) as c:
            c.ehlo()
            return c.auth_plain(login, PASSWORD).code

    def state(self, s, marker):
        rows = s.sql("SELECT r.state FROM recipients r JOIN messages m USING (message_id) "
                     "JOIN message_bodies b USING (message_id) WHERE instr(b.content, X'%s') > 0"
                     % marker.encode().hex())
        return rows[0]["state"] if rows else None

    def test_disabled_login_refused_and_its_queue_held(self):
        hop_port = free_port()   # nothing listens yet: alice's message waits, deferred
        opts = {"relay.host": "127.0.0.1", "relay.port": str(hop_port)}
        opts.update(FAST_RELAY)
        s = self.server(opts)
        c = self.session(s)
        held = self.send(c)
        self.wait_for("a first failed try", lambda: self.state(s, held) == "deferred")
        s.submitctl("user", "disable", ALICE)
        self.wait_for("AUTH refused", lambda: self.auth_code(s, ALICE) == 535, lambda: s.log()[-2000:])
        self.assertIn("reason=login_disabled", s.log())
        self.assertGreaterEqual(self.metric(s, "submitd_auth_disabled_total"), 1)
        # a session that logged in before: MAIL is refused too
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        self.assertEqual(r.code, 554, r)
        self.assertRegex(s.submitctl("user", "list").stdout, r"alice@example.org\t.*disabled=yes")
        self.assertIn("held:login_disabled", s.submitctl("queue", "list").stdout)
        self.assertEqual(self.status(s, held), ["held"])

        hop = ScriptedHop(port=hop_port).start()
        self.addCleanup(hop.stop)
        # wait until alice's message is due again, then let bob's go
        # through the same relay: a scan that takes bob's passes alice's
        self.wait_for("alice's retry time", lambda: s.sql(
            "SELECT count(*) AS n FROM recipients WHERE state = 'deferred' AND next_attempt_at > "
            "strftime('%Y-%m-%d %H:%M:%f', 'now')")[0]["n"] == 0)
        sent = self.send(self.session(s, BOB), login=BOB)
        self.wait_for("bob's message relayed", lambda: self.state(s, sent) == "delivered")
        self.assertEqual([m for m in hop.messages() if held.encode() in m.data], [])
        self.assertEqual(self.state(s, held), "deferred")

        s.submitctl("user", "enable", ALICE)
        self.wait_for("alice's message relayed", lambda: self.state(s, held) == "delivered")
        self.assertEqual(len([m for m in hop.messages() if held.encode() in m.data]), 1)
        self.wait_for("AUTH accepted", lambda: self.auth_code(s, ALICE) == 235)

    def test_queue_drop_login(self):
        opts = {"relay.host": "127.0.0.1", "relay.port": str(free_port())}
        opts.update(FAST_RELAY)
        s = self.server(opts)
        held = self.send(self.session(s))
        s.submitctl("user", "disable", ALICE)
        p = s.submitctl("queue", "drop", "--login", ALICE)
        self.assertIn("1 recipients dropped", p.stdout)
        self.assertEqual(self.state(s, held), "failed")
        self.assertNotIn(ALICE, s.submitctl("queue", "list").stdout)


class Unrouted(LimitsCase):
    def test_mail_accepted_without_next_hop_waits_for_release(self):
        s = self.server()
        c = self.session(s)
        first, second = self.send(c), self.send(c)
        rows = s.sql("SELECT m.received_at, r.unrouted FROM messages m JOIN recipients r USING (message_id) "
                     "ORDER BY m.message_id")
        self.assertEqual([r["unrouted"] for r in rows], [1, 1])
        self.assertEqual(self.status(s, first), ["not_relayed"])
        c.close()
        s.stop()

        hop = ScriptedHop().start()
        self.addCleanup(hop.stop)
        s.options.update({"relay.host": "127.0.0.1", "relay.port": str(hop.port)})
        s.options.update(FAST_RELAY)
        s.start()
        self.assertEqual(s.submitctl("queue", "list").stdout.count("held:no_next_hop"), 2)
        self.assertEqual(self.status(s, first), ["held"])
        # a message accepted now is relayed; the two before are not
        third = self.send(self.session(s))
        self.wait_for("the new message relayed", lambda: any(third.encode() in m.data for m in hop.messages()))
        self.assertFalse(any(first.encode() in m.data or second.encode() in m.data for m in hop.messages()))

        # release the first only (its acceptance time, to the millisecond)
        t = rows[0]["received_at"]
        p = s.submitctl("queue", "release", "--since", t, "--until", t)
        self.assertIn("1 recipients released", p.stdout)
        self.wait_for("the released message relayed",
                      lambda: any(first.encode() in m.data for m in hop.messages()))
        self.assertFalse(any(second.encode() in m.data for m in hop.messages()))
        self.assertEqual(s.submitctl("queue", "list").stdout.count("held:no_next_hop"), 1)
        self.wait_for("the released message's status", lambda: self.status(s, first) == ["delivered"])
        self.assertEqual(self.status(s, second), ["held"])
        # then everything up to now
        self.assertIn("1 recipients released", s.submitctl("queue", "release").stdout)
        self.wait_for("the rest relayed", lambda: any(second.encode() in m.data for m in hop.messages()))
        self.assertEqual(s.submitctl("queue", "release", "--since", "bad", check=False).returncode, 1)


if __name__ == "__main__":
    unittest.main()
