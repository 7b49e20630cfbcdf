"""test_dedup.py: each message stored and sent once (docs/smtp.md
"Resubmitted messages", docs/schema.md "bodies").

A client whose connection broke after the end of data but before the 250
sends the message again. A real submitd relays to the scripted next hop of
nexthop.py (which records every transaction) and files the sender's copy
into a real Dovecot's Sent (dovecot.py, root only: CI runs as root). The
tests check:
- the same bytes and envelope twice, with smtplib and with swaks: two 250
  replies whose tokens verify and fetch the same copy; one messages row,
  one relay at the next hop, one Sent filing; an event=duplicate log line
  naming the original's public id; submitd_duplicates_total counts it;
- stored again: a new Message-ID, the same Message-ID with another body,
  other or reordered recipients, another login, no Message-ID at all;
- two copies whose ends of data arrive together (likely one batch of the
  writer): one row, two 250s;
- submit.dedup_window=0: stored again; a 1 s window that has passed:
  stored again;
- the sending limits do not count a duplicate;
- single-instance bodies: two messages with the same body and different
  envelopes share one bodies row (2 references); `submitctl message purge`
  of one leaves the body to the other; purging the other deletes it.

"One relay" is asserted without timing: there is one row to relay, and
after the duplicate a sentinel message is submitted and waited for at the
next hop and in Sent, by when the relay's and the filer's scans (in order
of storage) have taken everything stored before it.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_dedup
"""

import hashlib
import json
import os
import re
import smtplib
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid

from dovecot import MAIL_USER, Dovecot, dovecot_bin
from harness import TIMEOUT_SCALE, RawSMTP, Submitd, dot_stuff, share_with_server, which
from nexthop import ScriptedHop

ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORD = "dedup pass phrase 7"
MASTER, MASTER_PASSWORD = "submitd-master", "master pass phrase 9"
RCPTS = ["carol@example.net", "dan@example.com"]
DEADLINE = 60.0 * TIMEOUT_SCALE
TOKEN_RE = re.compile(r"v4\.public\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?")

SMTPD = None
HOP = None
DOVECOT = None
SECRET = None


def make_body(marker, msgid=True, extra=""):
    lines = ["From: <%s>" % ALICE, "To: <%s>" % RCPTS[0], "Subject: dedup %s" % marker]
    if msgid:
        lines.append("Message-ID: <%s@client.test>" % marker)
    lines += ["Date: Mon, 01 Jan 2024 00:00:00 +0000", "", "Body of %s" % marker, extra, ""]
    return "\r\n".join(lines).encode()


def wait_for(what, fn, server=None):
    end = time.monotonic() + DEADLINE
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s\n--- submitd log ---\n%s"
                                 % (what, (server or SMTPD).log()[-6000:]))
        time.sleep(0.1)


def rows_with(server, marker):
    """messages rows whose stored body has marker (through the body they point at)."""
    return server.sql("SELECT m.* FROM messages m JOIN bodies b USING (body_id) WHERE instr(b.content, X'%s') > 0 "
                      "ORDER BY m.message_id" % marker.encode().hex())


def rows_of_msgid(server, marker):
    return server.sql("SELECT * FROM messages WHERE header_message_id = '%s@client.test' ORDER BY message_id"
                      % marker)


def smtplib_submit(server, body, rcpts=RCPTS, login=ALICE, sender=ALICE):
    """One transaction with smtplib's own commands: (code, the reply's text)."""
    s = smtplib.SMTP("127.0.0.1", server.port, local_hostname="dedup.client.test", timeout=30)
    try:
        s.login(login, PASSWORD)
        code, msg = s.mail(sender)
        assert code == 250, (code, msg)
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, (code, msg)
        code, msg = s.data(body)
        s.quit()
    finally:
        s.close()
    return code, msg.decode()


def swaks_submit(server, body, rcpts=RCPTS):
    path = os.path.join(server.tmp, "%s.eml" % uuid.uuid4().hex)
    with open(path, "wb") as f:
        f.write(body[:-2])   # swaks adds CRLF "." CRLF
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.port),
                        "--helo", "dedup.client.test", "--from", ALICE, "--to", ",".join(rcpts),
                        "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", PASSWORD,
                        "--data", "@" + path, "--timeout", "30"], capture_output=True, timeout=120)
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError("swaks failed:\n" + out)
    return out


def api(server, path, token):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (server.http_port, path),
                                 headers={"Submit-Token": token, "Authorization": "Bearer " + SECRET})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric(server, name):
    status, body = api(server, "/metrics", "x")
    assert status == 200, (status, body)
    m = re.search(r"^%s (\S+)$" % re.escape(name), body.decode(), re.M)
    return float(m.group(1)) if m else None


def hop_count(marker):
    return sum(1 for t in HOP.messages() if marker.encode() in t.data)


def sent_copies(marker):
    box = DOVECOT.folder(ALICE) or {}
    return sum(1 for _, _, body in box.values() if marker.encode() in body)


def sentinel():
    """A new message, waited for at the next hop and in Sent: everything
    stored before it has been relayed and filed by then."""
    marker = "sentinel-" + uuid.uuid4().hex[:12]
    code, _ = smtplib_submit(SMTPD, make_body(marker))
    assert code == 250
    wait_for("the sentinel relayed", lambda: hop_count(marker) == 1)
    wait_for("the sentinel filed", lambda: sent_copies(marker) == 1)


def setUpModule():
    global SMTPD, HOP, DOVECOT, SECRET
    if os.geteuid() != 0:
        raise AssertionError("test_dedup must run as root: its Dovecot switches to %s for mail" % MAIL_USER)
    if dovecot_bin() is None:
        raise AssertionError("dovecot is not installed (package dovecot-imapd): run scripts/deps test")
    for tool in ("swaks", "sqlite3"):
        if which(tool) is None:
            raise AssertionError("%s is not installed: run scripts/deps test" % tool)
    HOP = ScriptedHop().start()
    unittest.addModuleCleanup(HOP.stop)
    DOVECOT = Dovecot({ALICE: PASSWORD, BOB: PASSWORD}, masters={MASTER: MASTER_PASSWORD})
    unittest.addModuleCleanup(DOVECOT.stop)
    DOVECOT.start()
    SMTPD = Submitd()
    unittest.addModuleCleanup(SMTPD.cleanup)
    pwfile = os.path.join(SMTPD.tmp, "master-password")
    with open(pwfile, "w") as f:
        f.write(MASTER_PASSWORD + "\n")
    os.chmod(pwfile, 0o600)
    SMTPD.options.update({
        "smtp.auth_cleartext_loopback": "true",
        "relay.host": "127.0.0.1", "relay.port": str(HOP.port), "relay.tls": "none",
        "relay.retry_base": "1", "relay.retry_max": "2", "relay.poll_interval": "1",
        "sent.imap_host": "127.0.0.1", "sent.imap_port": str(DOVECOT.port), "sent.tls": "none",
        "sent.master_user": MASTER, "sent.master_password_file": share_with_server(pwfile),
        "sent.default": "on", "sent.retry_base": "1", "sent.retry_max": "2", "sent.poll_interval": "1",
    })
    SMTPD.start()
    SMTPD.add_user(ALICE, PASSWORD)
    SMTPD.add_user(BOB, PASSWORD)
    SECRET = SMTPD.submitctl("service", "add", "dedup-test").stdout.strip()


def tearDownModule():
    SMTPD.stop()


class Resubmission(unittest.TestCase):

    def check_duplicate_answer(self, marker, body, first, second):
        """Both answers carry valid tokens for the one stored message, and
        fetch its bytes."""
        rows = rows_of_msgid(SMTPD, marker)
        self.assertEqual(len(rows), 1, rows)
        row = rows[0]
        self.assertEqual(row["sha256"], hashlib.sha256(body).hexdigest())
        t1, t2 = TOKEN_RE.findall(first), TOKEN_RE.findall(second)
        self.assertEqual(len(t1), len(RCPTS) + 1, first)
        self.assertEqual(len(t2), len(RCPTS) + 1, second)
        self.assertEqual(set(t1) & set(t2), set(), "a duplicate gets tokens of its own")
        for t in t1 + t2:
            status, got = api(SMTPD, "/v1/verify", t)
            self.assertEqual(status, 200, got)
            j = json.loads(got)
            self.assertEqual(j["result"], "valid", j)
            self.assertEqual(j["message"]["id"], row["public_id"], j)
        for t in (t1[0], t2[0]):
            status, got = api(SMTPD, "/v1/message", t)
            self.assertEqual(status, 200, got)
            self.assertEqual(got, body)
        # new token rows, for the stored message and its recipients
        self.assertEqual(SMTPD.sql("SELECT count(*) AS n FROM tokens WHERE message_id = %d"
                                   % row["message_id"])[0]["n"], 2 * (len(RCPTS) + 1))
        self.assertEqual(SMTPD.sql("SELECT count(DISTINCT recipient_id) AS n FROM tokens WHERE message_id = %d "
                                   "AND role = 'recipient'" % row["message_id"])[0]["n"], len(RCPTS))
        log = SMTPD.log()
        self.assertRegex(log, r"event=duplicate session=\S+ msgid=\S+ original=%s user=%s"
                         % (row["public_id"], re.escape(ALICE)))
        return row

    def check_sent_once(self, marker):
        sentinel()
        self.assertEqual(hop_count(marker), 1, "relayed more than once")
        self.assertEqual(sent_copies(marker), 1, "filed more than once")
        self.assertEqual(len(rows_with(SMTPD, marker)), 1)

    def test_smtplib_twice(self):
        before = metric(SMTPD, "submitd_duplicates_total")
        marker = "py-" + uuid.uuid4().hex[:12]
        body = make_body(marker)
        code1, first = smtplib_submit(SMTPD, body)
        code2, second = smtplib_submit(SMTPD, body)
        self.assertEqual((code1, code2), (250, 250), (first, second))
        self.check_duplicate_answer(marker, body, first, second)
        self.check_sent_once(marker)
        self.assertEqual(metric(SMTPD, "submitd_duplicates_total"), before + 1)

    def test_swaks_twice(self):
        marker = "swaks-" + uuid.uuid4().hex[:12]
        body = make_body(marker)
        first = swaks_submit(SMTPD, body)
        second = swaks_submit(SMTPD, body)
        # swaks prints the server's lines as "<~  250-2.1.13 ..."
        self.check_duplicate_answer(marker, body, first, second)
        self.check_sent_once(marker)

    def test_same_batch(self):
        """Two copies whose final dots are sent back to back: whether the
        writer takes them in one batch or two, one row and two 250s."""
        marker = "batch-" + uuid.uuid4().hex[:12]
        body = make_body(marker)
        conns = []
        for _ in range(2):
            c = RawSMTP(SMTPD.port, timeout=30)
            self.addCleanup(c.close)
            c.ehlo("batch.client.test")
            self.assertEqual(c.auth_plain(ALICE, PASSWORD).code, 235)
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % ALICE).code, 250)
            for r in RCPTS:
                self.assertEqual(c.cmd("RCPT TO:<%s>" % r).code, 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(dot_stuff(body)[:-3])     # all but ".\r\n"
            conns.append(c)
        for c in conns:
            c.send(b".\r\n")
        replies = [c.reply() for c in conns]
        self.assertEqual([r.code for r in replies], [250, 250], replies)
        self.assertEqual(len(rows_of_msgid(SMTPD, marker)), 1)
        self.check_sent_once(marker)

    def stored_twice(self, marker, first, second, rcpts2=RCPTS, login2=ALICE, sender2=ALICE):
        self.assertEqual(smtplib_submit(SMTPD, first)[0], 250)
        self.assertEqual(smtplib_submit(SMTPD, second, rcpts=rcpts2, login=login2, sender=sender2)[0], 250)
        return rows_with(SMTPD, marker)

    def test_new_message_id_stored_again(self):
        marker = "new-" + uuid.uuid4().hex[:12]
        rows = self.stored_twice(marker, make_body(marker),
                                 make_body(marker).replace(b"@client.test>", b"@client.test.2>"))
        self.assertEqual(len(rows), 2)

    def test_other_body_stored_again(self):
        marker = "body-" + uuid.uuid4().hex[:12]
        rows = self.stored_twice(marker, make_body(marker), make_body(marker, extra="edited"))
        self.assertEqual(len(rows), 2)
        self.assertEqual(len(rows_of_msgid(SMTPD, marker)), 2)

    def test_other_envelope_stored_again(self):
        marker = "env-" + uuid.uuid4().hex[:12]
        body = make_body(marker)
        self.assertEqual(smtplib_submit(SMTPD, body)[0], 250)
        for rcpts in (RCPTS[:1], RCPTS + ["erin@example.net"], list(reversed(RCPTS))):
            self.assertEqual(smtplib_submit(SMTPD, body, rcpts=rcpts)[0], 250)
        self.assertEqual(smtplib_submit(SMTPD, body, login=BOB, sender=BOB)[0], 250)
        rows = rows_of_msgid(SMTPD, marker)
        self.assertEqual(len(rows), 5, rows)
        # one body for the five
        self.assertEqual(len({r["body_id"] for r in rows}), 1)
        self.assertEqual(SMTPD.sql("SELECT refs FROM body_overview WHERE body_id = %d" % rows[0]["body_id"])[0]["refs"], 5)

    def test_no_message_id_stored_again(self):
        marker = "noid-" + uuid.uuid4().hex[:12]
        body = make_body(marker, msgid=False)
        rows = self.stored_twice(marker, body, body)
        self.assertEqual(len(rows), 2)
        self.assertEqual([r["header_message_id"] for r in rows], [None, None])


class Windows(unittest.TestCase):

    def server(self, window):
        s = Submitd({"smtp.auth_cleartext_loopback": "true", "submit.dedup_window": str(window)})
        s.start()
        self.addCleanup(s.cleanup)
        self.addCleanup(s.stop, False)
        s.add_user(ALICE, PASSWORD)
        return s

    def test_window_off(self):
        s = self.server(0)
        marker = "off-" + uuid.uuid4().hex[:12]
        body = make_body(marker)
        self.assertEqual(smtplib_submit(s, body)[0], 250)
        self.assertEqual(smtplib_submit(s, body)[0], 250)
        self.assertEqual(len(rows_with(s, marker)), 2)
        self.assertNotIn("event=duplicate", s.log())

    def test_window_passed(self):
        s = self.server(1)
        marker = "late-" + uuid.uuid4().hex[:12]
        body = make_body(marker)
        self.assertEqual(smtplib_submit(s, body)[0], 250)
        time.sleep(2.2)
        self.assertEqual(smtplib_submit(s, body)[0], 250)
        self.assertEqual(len(rows_with(s, marker)), 2)
        self.assertNotIn("event=duplicate", s.log())


class Limits(unittest.TestCase):

    def test_duplicate_not_counted(self):
        """Two messages an hour: the original, its duplicate and a second
        message all pass (a counted duplicate would refuse the second at
        MAIL); a third is refused."""
        s = Submitd({"smtp.auth_cleartext_loopback": "true", "limits.user_messages_per_hour": "2"})
        s.start()
        self.addCleanup(s.cleanup)
        self.addCleanup(s.stop, False)
        s.add_user(ALICE, PASSWORD)
        marker = "limit-" + uuid.uuid4().hex[:12]
        body = make_body(marker)
        self.assertEqual(smtplib_submit(s, body)[0], 250)
        self.assertEqual(smtplib_submit(s, body)[0], 250)
        self.assertIn("event=duplicate", s.log())
        self.assertEqual(smtplib_submit(s, make_body(marker + "-2"))[0], 250)
        with self.assertRaises(AssertionError) as e:
            smtplib_submit(s, make_body(marker + "-3"))
        self.assertIn("450", str(e.exception))
        self.assertEqual(len(rows_with(s, marker)), 2)


class SingleInstance(unittest.TestCase):

    def test_shared_body_purged_with_its_last_message(self):
        marker = "shared-" + uuid.uuid4().hex[:12]
        body = make_body(marker)
        self.assertEqual(smtplib_submit(SMTPD, body, rcpts=["one@example.net"])[0], 250)
        self.assertEqual(smtplib_submit(SMTPD, body, rcpts=["two@example.net"])[0], 250)
        rows = rows_with(SMTPD, marker)
        self.assertEqual(len(rows), 2)
        body_id = rows[0]["body_id"]
        self.assertEqual(rows[1]["body_id"], body_id)
        bodies = SMTPD.sql("SELECT refs, size FROM body_overview WHERE sha256 = '%s'"
                           % hashlib.sha256(body).hexdigest())
        self.assertEqual(bodies, [{"refs": 2, "size": len(body)}])
        for r in rows:
            wait_for("delivered", lambda: SMTPD.sql(
                "SELECT 1 FROM recipients WHERE message_id = %d AND state = 'delivered'" % r["message_id"]))
        SMTPD.submitctl("message", "purge", rows[0]["public_id"])
        self.assertEqual(SMTPD.sql("SELECT refs FROM body_overview WHERE body_id = %d" % body_id), [{"refs": 1}])
        over = {o["public_id"]: o["has_body"] for o in SMTPD.sql(
            "SELECT public_id, has_body FROM message_overview WHERE public_id IN ('%s', '%s')"
            % (rows[0]["public_id"], rows[1]["public_id"]))}
        self.assertEqual(over, {rows[0]["public_id"]: 0, rows[1]["public_id"]: 1})
        self.assertEqual(SMTPD.body(rows[1]["message_id"]), body)
        # purged twice: nothing left to purge
        p = SMTPD.submitctl("message", "purge", rows[0]["public_id"], check=False)
        self.assertEqual(p.returncode, 1, p)
        SMTPD.submitctl("message", "purge", rows[1]["public_id"])
        self.assertEqual(SMTPD.sql("SELECT count(*) AS n FROM bodies WHERE body_id = %d" % body_id), [{"n": 0}])
        self.assertEqual(SMTPD.sql("SELECT count(*) AS n FROM messages WHERE body_id = %d" % body_id), [{"n": 0}])

    def test_purge_refused_while_queued(self):
        s = Submitd({"smtp.auth_cleartext_loopback": "true"})   # no relay.host: stays queued
        s.start()
        self.addCleanup(s.cleanup)
        self.addCleanup(s.stop, False)
        s.add_user(ALICE, PASSWORD)
        marker = "queued-" + uuid.uuid4().hex[:12]
        self.assertEqual(smtplib_submit(s, make_body(marker))[0], 250)
        row = rows_with(s, marker)[0]
        p = s.submitctl("message", "purge", row["public_id"], check=False)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("queue drop", p.stderr)
        s.submitctl("queue", "drop", row["public_id"])
        s.submitctl("message", "purge", row["public_id"])
        self.assertEqual(s.sql("SELECT count(*) AS n FROM bodies"), [{"n": 0}])


if __name__ == "__main__":
    unittest.main()
