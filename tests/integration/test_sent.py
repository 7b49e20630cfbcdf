"""test_sent.py: submitd files the sender's copy into a real Dovecot's Sent
mailbox itself (server/sent/, docs/dovecot.md "Filing the Sent copy").

A real Dovecot 2.3 (tests/integration/dovecot.py) with passwd-file users
and a master passdb ("submitd-master"); a real submitd (harness.Submitd)
with sent.imap_host pointing at it, sent.default = on and short retry
settings. The tests check, by reading the mailboxes back with imaplib as
each user:
- after a swaks submission (STARTTLS + AUTH PLAIN) the copy is in Sent
  exactly once, BODY.PEEK[] byte-identical to the stored body, \\Seen, its
  internal date the acceptance time; the job records mailbox, UIDVALIDITY
  and UID; submitctl message show and /metrics show it;
- a login with `submitctl sent disable` gets no job and no copy;
- a user whose \\Sent mailbox is "Sent Messages" gets the copy there;
- with Dovecot stopped the job is retried, and filed once Dovecot is back;
- kill -9 of submitd while 30 messages are being filed, then a restart on
  the same data directory: every message is in Sent exactly once;
- a misbehaving IMAP server (a fake one in this file: garbage greeting,
  garbage or a 100 KB line after AUTHENTICATE, the connection cut inside
  the APPEND literal, silence) never crashes submitd nor gets a job filed:
  it is retried with last_error set; a tagged OK with a malformed
  APPENDUID is filed once, without a UID.

Dovecot runs as root and switches to nobody for mail (see dovecot.py): this
test needs root and the package dovecot-imapd, like test_imap.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_sent
"""

import datetime
import os
import random
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import unittest
import urllib.request
import uuid

from dovecot import MAIL_USER, Dovecot, dovecot_bin
from harness import TIMEOUT_SCALE, Submitd, free_port, share_with_server, which

MASTER, MASTER_PASSWORD = "submitd-master", "master pass phrase 9"
PASSWORD = "user pass phrase 1"
ALICE = "alice@example.org"        # filing on (sent.default)
BOB = "bob@example.org"            # filing switched off with submitctl
CAROL = "carol@example.org"        # her \Sent mailbox is "Sent Messages"
DAVE = "dave@example.org"          # submits while Dovecot is down
ERIN = "erin@example.org"          # the kill -9 run
USERS = (ALICE, BOB, CAROL, DAVE, ERIN)

DEADLINE = 60.0 * TIMEOUT_SCALE

SMTPD = None
DOVECOT = None


def sent_options(pwfile, port):
    return {
        "sent.imap_host": "127.0.0.1",
        "sent.imap_port": str(port),
        "sent.tls": "none",                    # the test Dovecot has no TLS
        "sent.master_user": MASTER,
        "sent.master_password_file": pwfile,
        "sent.default": "on",
        "sent.retry_base": "1",
        "sent.retry_max": "2",
        "sent.poll_interval": "1",
        "sent.timeout": "10",
    }


def write_password_file(directory):
    path = os.path.join(directory, "master-password")
    with open(path, "w") as f:
        f.write(MASTER_PASSWORD + "\n")
    os.chmod(path, 0o600)
    return share_with_server(path)


def folder(user, name="Sent"):
    return DOVECOT.folder(user, name)


def message_ids(messages):
    """Message-ID -> count, over the bodies of folder()'s answer."""
    counts = {}
    for _, _, body in (messages or {}).values():
        m = re.search(rb"^Message-ID: (<[^>]+>)", body, re.M | re.I)
        key = m.group(1).decode() if m else None
        counts[key] = counts.get(key, 0) + 1
    return counts


def wait_for(what, fn, deadline=DEADLINE, server=None):
    end = time.monotonic() + deadline
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s\n--- submitd log ---\n%s\n--- dovecot log ---\n%s"
                                 % (what, (server or SMTPD).log()[-6000:], DOVECOT.log()[-3000:]))
        time.sleep(0.1)


def make_body(sender, marker, msgid=True):
    lines = ["From: <%s>" % sender, "To: <rcpt@example.net>", "Subject: sent %s" % marker]
    if msgid:
        lines.append("Message-ID: <%s@client.test>" % marker)
    lines += ["Date: Mon, 01 Jan 2024 00:00:00 +0000", "MIME-Version: 1.0",
              "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "",
              "Body of %s" % marker, ".a line with a leading dot", "..two", ".",
              "8 bit: gr\u00fc\u00dfe, \u65e5\u672c", "x" * 900, "last line", ""]
    return "\r\n".join(lines).encode("utf-8")


def swaks_submit(sender, body, server=None):
    server = server or SMTPD
    path = os.path.join(server.tmp, "%s.eml" % uuid.uuid4().hex)
    with open(path, "wb") as f:
        f.write(body[:-2])   # swaks adds CRLF "." CRLF
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.port), "--tls",
                        "--helo", "sent.client.test", "--from", sender, "--to", "rcpt@example.net",
                        "--auth", "PLAIN", "--auth-user", sender, "--auth-password", PASSWORD,
                        "--data", "@" + path, "--timeout", "30"], capture_output=True, timeout=120)
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError("swaks failed:\n" + out)
    return out


def job_of(server, message_id):
    rows = server.sql("SELECT * FROM sent_jobs WHERE message_id = %d" % int(message_id))
    return rows[0] if rows else None


def filed(server, message_id):
    j = job_of(server, message_id)
    return j if j and j["state"] == "filed" else None


def acceptance_second(received_at):
    """messages.received_at ("YYYY-MM-DD HH:MM:SS.sss", UTC) as unix seconds."""
    return int(datetime.datetime.strptime(received_at[:19], "%Y-%m-%d %H:%M:%S")
               .replace(tzinfo=datetime.timezone.utc).timestamp())


def internaldate_second(idate):
    return int(datetime.datetime.strptime(idate, "%d-%b-%Y %H:%M:%S %z").timestamp())


# ------------------------------------------------------------------ module

def setUpModule():
    global SMTPD, DOVECOT
    if os.geteuid() != 0:
        raise AssertionError("test_sent must run as root: its Dovecot switches to %s for mail" % MAIL_USER)
    if dovecot_bin() is None:
        raise AssertionError("dovecot is not installed (package dovecot-imapd): run scripts/deps test")
    for tool in ("swaks", "sqlite3"):
        if which(tool) is None:
            raise AssertionError("%s is not installed: run scripts/deps test" % tool)
    DOVECOT = Dovecot({u: PASSWORD for u in USERS}, masters={MASTER: MASTER_PASSWORD})
    unittest.addModuleCleanup(DOVECOT.stop)
    DOVECOT.start()
    SMTPD = Submitd()
    unittest.addModuleCleanup(SMTPD.cleanup)
    SMTPD.options.update(sent_options(write_password_file(SMTPD.tmp), DOVECOT.port))
    SMTPD.start()
    for u in USERS:
        SMTPD.add_user(u, PASSWORD)


def tearDownModule():
    SMTPD.stop()


class Filing(unittest.TestCase):

    def test_1_filed_once_byte_identical(self):
        marker = "alice-" + uuid.uuid4().hex[:12]
        body = make_body(ALICE, marker)
        swaks_submit(ALICE, body)
        msg = SMTPD.message_with_marker(marker)
        job = wait_for("the copy filed", lambda: filed(SMTPD, msg["message_id"]))
        stored = SMTPD.body(msg["message_id"])
        self.assertEqual(stored, body)
        box = folder(ALICE)
        self.assertIsNotNone(box, "no Sent mailbox")
        self.assertEqual(message_ids(box).get("<%s@client.test>" % marker), 1)
        flags, idate, got = box[job["uid"]]
        self.assertEqual(got, stored)
        self.assertIn("\\Seen", flags)
        self.assertEqual(internaldate_second(idate), acceptance_second(msg["received_at"]))
        self.assertEqual(job["mailbox"], "Sent")
        self.assertGreater(job["uidvalidity"], 0)
        self.assertEqual(job["append_sent"], 1)
        self.assertIsNotNone(job["filed_at"])
        show = SMTPD.submitctl("message", "show", msg["public_id"]).stdout
        self.assertRegex(show, r"(?m)^sent=filed\tattempts=1\tmailbox=Sent\tuidvalidity=\d+\tuid=%d\tfiled_at=" % job["uid"])
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % SMTPD.http_port, timeout=30).read().decode()
        self.assertRegex(metrics, r"(?m)^submitd_sent_filed_total [1-9]")
        self.assertRegex(metrics, r"(?m)^submitd_sent_failed_total 0$")

    def test_2_not_filed_when_disabled(self):
        self.assertIn("off", SMTPD.submitctl("sent", "disable", BOB).stdout)
        self.assertRegex(SMTPD.submitctl("sent", "list").stdout, r"(?m)^%s\toff\t" % re.escape(BOB))
        marker = "bob-" + uuid.uuid4().hex[:12]
        swaks_submit(BOB, make_body(BOB, marker))
        msg = SMTPD.message_with_marker(marker)
        # the job would have been written with the message: there is none
        self.assertIsNone(job_of(SMTPD, msg["message_id"]))
        self.assertNotIn("sent=", SMTPD.submitctl("message", "show", msg["public_id"]).stdout)
        # and a later message of a login with filing on is filed first,
        # so nothing of Bob's is merely late
        marker2 = "alice-" + uuid.uuid4().hex[:12]
        swaks_submit(ALICE, make_body(ALICE, marker2))
        wait_for("Alice's copy", lambda: filed(SMTPD, SMTPD.message_with_marker(marker2)["message_id"]))
        self.assertFalse(message_ids(folder(BOB)))
        # back to the default: filed again
        SMTPD.submitctl("sent", "default", BOB)
        marker3 = "bob-" + uuid.uuid4().hex[:12]
        swaks_submit(BOB, make_body(BOB, marker3))
        wait_for("Bob's copy", lambda: filed(SMTPD, SMTPD.message_with_marker(marker3)["message_id"]))
        self.assertEqual(message_ids(folder(BOB)), {"<%s@client.test>" % marker3: 1})

    def test_3_special_use_sent_messages(self):
        DOVECOT.create_folder(CAROL, "Sent Messages")
        marker = "carol-" + uuid.uuid4().hex[:12]
        swaks_submit(CAROL, make_body(CAROL, marker, msgid=False))
        msg = SMTPD.message_with_marker(marker)
        job = wait_for("Carol's copy", lambda: filed(SMTPD, msg["message_id"]))
        self.assertEqual(job["mailbox"], "Sent Messages")
        box = folder(CAROL, "Sent Messages")
        self.assertEqual(len(box), 1)
        self.assertEqual(box[job["uid"]][2], SMTPD.body(msg["message_id"]))
        self.assertIsNone(folder(CAROL, "Sent"))

    def test_4_dovecot_down_then_back(self):
        DOVECOT.stop(remove=False)
        try:
            marker = "dave-" + uuid.uuid4().hex[:12]
            swaks_submit(DAVE, make_body(DAVE, marker))
            msg = SMTPD.message_with_marker(marker)
            job = wait_for("a failed try", lambda: (lambda j: j if j and j["attempts"] >= 2 else None)(
                job_of(SMTPD, msg["message_id"])))
            self.assertEqual(job["state"], "pending")
            self.assertIn("connection", job["last_error"])
        finally:
            DOVECOT.start()
        job = wait_for("Dave's copy once Dovecot is back", lambda: filed(SMTPD, msg["message_id"]))
        self.assertEqual(message_ids(folder(DAVE)), {"<%s@client.test>" % marker: 1})
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % SMTPD.http_port, timeout=30).read().decode()
        self.assertRegex(metrics, r"(?m)^submitd_sent_retried_total [1-9]")

    def test_5_marked_job_found_not_appended_again(self):
        """A crash between the APPEND and its record leaves a job marked
        (append_sent) and not filed. Made by hand here, for a message with
        a Message-ID (found by a search on it) and one without (found by
        size, date and the body's SHA-256): the filer records the copy it
        finds and appends nothing."""
        cases = []
        for user, msgid in ((ALICE, True), (CAROL, False)):
            marker = "again-" + uuid.uuid4().hex[:12]
            swaks_submit(user, make_body(user, marker, msgid=msgid))
            msg = SMTPD.message_with_marker(marker)
            job = wait_for("the first copy", lambda: filed(SMTPD, msg["message_id"]))
            cases.append((user, msg, job))
        before = {u: len(folder(u, j["mailbox"])) for u, _, j in cases}
        seen = len(SMTPD.log())
        SMTPD.sql("UPDATE sent_jobs SET state = 'filing', uid = NULL, uidvalidity = NULL, filed_at = NULL, "
                  "next_attempt_at = '2000-01-01 00:00:00.000' WHERE message_id IN (%d, %d)"
                  % (cases[0][1]["message_id"], cases[1][1]["message_id"]))
        for user, msg, job in cases:
            again = wait_for("the copy found", lambda: filed(SMTPD, msg["message_id"]))
            self.assertEqual((again["mailbox"], again["uid"], again["uidvalidity"]),
                             (job["mailbox"], job["uid"], job["uidvalidity"]))
            self.assertEqual(len(folder(user, job["mailbox"])), before[user])
            self.assertIn("event=sent_found msgid=%s" % msg["public_id"], SMTPD.log()[seen:])


class KillDuringFiling(unittest.TestCase):
    """kill -9 while 30 messages are being filed, restart on the same data
    directory: each one is in Sent exactly once."""

    def test_kill9_under_load(self):
        s = Submitd()
        self.addCleanup(s.cleanup)
        s.options.update(sent_options(write_password_file(s.tmp), DOVECOT.port))
        s.options["sent.connections"] = "4"
        s.start()
        s.add_user(ERIN, PASSWORD)
        run = uuid.uuid4().hex[:8]
        total = 30
        sent_ok = []
        errors = []

        def load():
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            try:
                c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
                c.starttls(context=ctx)
                c.login(ERIN, PASSWORD)
                for i in range(total):
                    c.sendmail(ERIN, ["rcpt@example.net"], make_body(ERIN, "erin-%s-%d" % (run, i)))
                    sent_ok.append(i)
                c.quit()
            except (OSError, smtplib.SMTPException) as e:
                errors.append(e)     # the kill cuts the session: expected

        t = threading.Thread(target=load)
        t.start()
        # a random moment while the filer works: some filed, more to come
        goal = random.randint(3, 20)
        wait_for("%d copies filed" % goal, lambda: s.sql(
            "SELECT count(*) AS n FROM sent_jobs WHERE state = 'filed'")[0]["n"] >= goal, server=s)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s.proc = None
        s.log_file.close()
        t.join(60)
        self.assertFalse(t.is_alive())
        jobs = s.sql("SELECT state, count(*) AS n FROM sent_jobs GROUP BY state")
        s.start()
        if errors:
            # the rest of the 30, now that it is back
            c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c.starttls(context=ctx)
            c.login(ERIN, PASSWORD)
            for i in range(total):
                if not s.sql("SELECT 1 FROM messages m JOIN message_bodies b USING (message_id) WHERE "
                             "instr(b.content, X'%s') > 0" % ("erin-%s-%d@" % (run, i)).encode().hex()):
                    c.sendmail(ERIN, ["rcpt@example.net"], make_body(ERIN, "erin-%s-%d" % (run, i)))
            c.quit()
        self.assertEqual(s.message_count(), total)
        wait_for("every copy filed", lambda: s.sql(
            "SELECT count(*) AS n FROM sent_jobs WHERE state = 'filed'")[0]["n"] == total, server=s)
        counts = message_ids(folder(ERIN))
        expected = {"<erin-%s-%d@client.test>" % (run, i): 1 for i in range(total)}
        self.assertEqual(counts, expected, "states at the kill: %r" % jobs)
        s.stop()



class FakeImap:
    """A misbehaving IMAP server on loopback, for MisbehavingServer. One
    accept thread; each connection is served by its own thread, in the
    behaviour chosen by `mode` when it was accepted. The transcript records
    what the filer sent, so a test can tell what reached the server."""

    GREETING = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] fake ready\r\n"

    def __init__(self):
        self.port = free_port()
        self.mode = "silence"
        self.lock = threading.Lock()
        self.events = []            # ("connect"|"command"|"literal", detail)
        self.stopping = threading.Event()
        self.threads = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.acceptor = threading.Thread(target=self.accept_loop, name="fake-imap")
        self.acceptor.start()

    def stop(self):
        self.stopping.set()
        self.acceptor.join(30)
        for t in list(self.threads):
            t.join(30)
        self.listener.close()

    def note(self, kind, detail):
        with self.lock:
            self.events.append((kind, detail))

    def reset(self, mode):
        with self.lock:
            self.mode = mode
            self.events = []

    def seen(self, kind, prefix=b""):
        with self.lock:
            return [d for k, d in self.events if k == kind and d.startswith(prefix)]

    def accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            t = threading.Thread(target=self.serve, args=(conn, self.mode))
            self.threads = [x for x in self.threads if x.is_alive()] + [t]
            t.start()

    def serve(self, conn, mode):
        self.note("connect", mode)
        conn.settimeout(0.2)
        buf = bytearray()

        def fill():
            """More octets into buf; False at EOF or when the test ends."""
            while not self.stopping.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return False
                if not data:
                    return False
                buf.extend(data)
                return True
            return False

        def line():
            while b"\r\n" not in buf:
                if not fill():
                    return None
            i = buf.index(b"\r\n") + 2
            out = bytes(buf[:i])
            del buf[:i]
            return out

        def literal(n):
            while len(buf) < n:
                if not fill():
                    return None
            out = bytes(buf[:n])
            del buf[:n]
            return out

        try:
            if mode == "silence":
                while fill():       # until the filer gives up and closes
                    pass
                return
            if mode == "garbage-greeting":
                conn.sendall(b"\x16\x03\x01\x00\xff garbage \x00\xfe\r\n")
                while fill():
                    pass
                return
            conn.sendall(self.GREETING)
            while True:
                cmd = line()
                if cmd is None:
                    return
                self.note("command", cmd)
                parts = cmd[:-2].split(b" ")
                tag, verb = parts[0], parts[1].upper() if len(parts) > 1 else b""
                if verb == b"AUTHENTICATE":
                    if mode == "auth-garbage":
                        conn.sendall(b"\x01\x02 not imap at all \xff\xfe\r\n")
                    elif mode == "auth-huge":
                        conn.sendall(b"* " + b"A" * (100 * 1024) + b"\r\n")
                    else:
                        conn.sendall(tag + b" OK logged in\r\n")
                elif verb == b"APPEND":
                    m = re.search(rb"\{(\d+)\}\r\n$", cmd)
                    if m is None:
                        conn.sendall(tag + b" BAD expected a synchronising literal\r\n")
                        continue
                    size = int(m.group(1))
                    conn.sendall(b"+ go ahead\r\n")
                    if mode == "append-cut":
                        part = literal(min(size // 2, 200))
                        self.note("literal-part", part or b"")
                        return          # closed in the middle of the literal
                    body = literal(size + 2)    # and the command's CRLF
                    if body is None:
                        return
                    self.note("literal", body[:-2])
                    conn.sendall(tag + b" OK [APPENDUID not-a-number 1:*] appended\r\n")
                elif verb == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n" + tag + b" OK done\r\n")
                elif verb == b"LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                    return
                else:
                    # EXAMINE (a marked job looks first): no such mailbox
                    conn.sendall(tag + b" NO not here\r\n")
        finally:
            conn.close()


class MisbehavingServer(unittest.TestCase):
    """A hostile or broken IMAP server (FakeImap) never crashes submitd and
    never gets a job recorded as filed when nothing was stored: the job is
    retried with last_error saying what went wrong. One submitd per
    behaviour, so that a job left pending by one does not meet the next."""

    LOGIN = "frank@example.org"

    @classmethod
    def setUpClass(cls):
        cls.imap = FakeImap()
        cls.addClassCleanup(cls.imap.stop)

    def submitd(self):
        s = Submitd()
        self.addCleanup(s.cleanup)
        s.options.update(sent_options(write_password_file(s.tmp), self.imap.port))
        s.options["sent.timeout"] = "2"
        s.start()
        self.addCleanup(s.stop)
        s.add_user(self.LOGIN, PASSWORD)
        return s

    def smtp(self, server):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
        c.starttls(context=ctx)
        return c

    def submit(self, server, marker):
        c = self.smtp(server)
        c.user, c.password = self.LOGIN, PASSWORD
        c.ehlo()
        c.auth("PLAIN", c.auth_plain)
        c.sendmail(self.LOGIN, ["rcpt@example.net"], make_body(self.LOGIN, marker))
        c.quit()
        return server.message_with_marker(marker)

    def wait(self, what, server, fn):
        end = time.monotonic() + DEADLINE
        while True:
            v = fn()
            if v:
                return v
            if time.monotonic() > end:
                raise AssertionError("timed out waiting for %s\n--- submitd log ---\n%s\n--- fake IMAP ---\n%r"
                                     % (what, server.log()[-6000:], self.imap.events[-20:]))
            time.sleep(0.1)

    def still_serving(self, server):
        self.assertIsNone(server.proc.poll(), "submitd exited:\n" + server.log()[-6000:])
        c = self.smtp(server)
        code, _ = c.ehlo()
        self.assertEqual(code, 250)
        c.quit()

    def test_misbehaving_imap_server(self):
        cases = (
            # mode, what last_error says
            ("garbage-greeting", r"^(malformed response|unexpected greeting)"),
            ("auth-garbage", r"^malformed response from the IMAP server"),
            ("auth-huge", r"^response too long from the IMAP server"),
            ("append-cut", r"^connection (closed by the IMAP server|failed: )"),
            ("silence", r"^timeout talking to the IMAP server"),
        )
        for mode, error in cases:
            with self.subTest(mode=mode):
                self.imap.reset(mode)
                s = self.submitd()
                marker = "frank-%s-%s" % (mode, uuid.uuid4().hex[:12])
                msg = self.submit(s, marker)
                job = self.wait("a failed try", s, lambda: (lambda j: j if j and j["attempts"] >= 1 and
                                                            j["last_error"] else None)(job_of(s, msg["message_id"])))
                self.still_serving(s)
                self.assertIn(job["state"], ("pending", "filing"))
                self.assertRegex(job["last_error"], error)
                self.assertIn("(127.0.0.1)", job["last_error"])
                self.assertIsNone(job["uid"])
                self.assertIsNone(job["filed_at"])
                # nothing was ever appended whole
                self.assertEqual(self.imap.seen("literal"), [])
                if mode == "append-cut":
                    self.assertTrue(self.imap.seen("literal-part"), "the APPEND never came")
                    self.assertEqual(job["append_sent"], 1)
                overview = s.sql("SELECT * FROM sent_overview")
                self.assertNotIn("filed", [r.get("state") for r in overview], overview)
                self.assertEqual(s.sql("SELECT count(*) AS n FROM sent_jobs WHERE state = 'filed'")[0]["n"], 0)
                s.stop()

    def test_appenduid_malformed(self):
        """A tagged OK for the APPEND whose [APPENDUID] does not parse.
        The server said the message is stored; APPENDUID (RFC 4315) is
        only information about where. on_tagged() therefore records the
        job as filed, without uidvalidity and uid, and appends nothing
        again: a retry would put a second copy in Sent. So the right
        outcome here is 'filed' once, with NULL uid and uidvalidity, one
        APPEND at the server, and submitd unharmed."""
        self.imap.reset("appenduid-bad")
        s = self.submitd()
        marker = "frank-appenduid-" + uuid.uuid4().hex[:12]
        msg = self.submit(s, marker)
        job = self.wait("the job recorded", s, lambda: filed(s, msg["message_id"]))
        self.still_serving(s)
        self.assertEqual(job["attempts"], 1)
        self.assertIsNone(job["last_error"])
        self.assertIsNone(job["uid"])
        self.assertIsNone(job["uidvalidity"])
        self.assertEqual(job["mailbox"], "Sent")
        appended = self.imap.seen("literal")
        self.assertEqual(appended, [s.body(msg["message_id"])])
        s.stop()


if __name__ == "__main__":
    unittest.main()
