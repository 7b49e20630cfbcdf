"""test_dbfaults.py: storage and certificate faults of a running server.

* Another process holds the database's write lock (an sqlite3 shell left
  inside a transaction, a backup tool): clients get 451 4.3.0 within a
  bound, never a 250 and never an endless wait, even while API calls keep
  the writer busy; the server keeps serving (AUTH, STARTTLS, the API); once
  the lock is gone messages are accepted again and every 250 is stored. A
  short lock is simply waited for.
* The data directory's file system turns read-only under the server (ext4
  with errors=remount-ro, an error triggered through sysfs): 451, no crash,
  the API keeps verifying, a restart refuses to start, and after a repair
  every acknowledged message is there. Starting on read-only or immutable
  storage fails with a clear error and exit status 1.
* The TLS certificate vanishes or becomes unreadable before SIGHUP: a clear
  log line, the old certificate kept, live sessions and STARTTLS go on.

The read-only cases need root (mount, loop device, chattr) and are skipped
otherwise, with the reason.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from harness import TOKEN_RE, RawSMTP, Submitd, client_tls_context, dot_stuff, run_program
from nexthop import ScriptedHop

USER = "fault@example.org"
PASSWORD = "fault tolerant pass"
LOCK_WAIT = 10.0        # STORE_BUSY_TIMEOUT_MS in db/store.h
REPLY_BOUND = 20.0      # a refused message is answered well within this
ESC_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")


def is_root():
    return os.geteuid() == 0


def body_for(marker, lines=3):
    return ("Subject: %s\r\n\r\n" % marker).encode() + ("line of %s\r\n" % marker).encode() * lines


def transaction(c, body, sender="a@example.org"):
    """MAIL, RCPT, DATA on an open session; returns (final reply, seconds
    from the end of data to the reply)."""
    r = c.cmd("MAIL FROM:<%s>" % sender)
    if r.code != 250:
        raise AssertionError("MAIL refused: %r" % r)
    r = c.cmd("RCPT TO:<b@example.net>")
    if r.code != 250:
        raise AssertionError("RCPT refused: %r" % r)
    r = c.cmd("DATA")
    if r.code != 354:
        raise AssertionError("DATA refused: %r" % r)
    t0 = time.monotonic()
    c.send(dot_stuff(body))
    r = c.reply()
    return r, time.monotonic() - t0


def http_get(srv, path, headers=None, timeout=10):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (srv.http_port, path), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def stored_hashes(srv):
    return {r["sha256"] for r in srv.sql(
        "SELECT m.sha256 FROM messages m JOIN message_bodies b USING (message_id)")}


def wait_log(srv, needle, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in srv.log():
            return True
        time.sleep(0.05)
    return False


class LockHolder:
    """Another process that holds the database's write lock: Python's
    sqlite3 with BEGIN EXCLUSIVE (in WAL mode: the write lock; readers go
    on). It lets go when told, or by itself after max_hold seconds, so that
    a failing test never leaves it behind."""

    SCRIPT = r"""
import select, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))
db.execute("ROLLBACK")
db.close()
print("released", flush=True)
"""

    def __init__(self, db_path, max_hold=90.0):
        self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, db_path, str(max_hold)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the lock holder did not get the lock: %r" % line)
        self.locked_at = time.monotonic()

    def release(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        return time.monotonic() - self.locked_at


class DatabaseLocked(unittest.TestCase):
    def setUp(self):
        self.s = Submitd({"smtp.trusted_networks": "127.0.0.0/8"})
        self.s.start()
        self.addCleanup(self.s.cleanup)
        self.s.add_user(USER, PASSWORD)

    def tearDown(self):
        self.s.stop()

    def send_ok(self, marker):
        with self.s.raw() as c:
            c.ehlo("lock.test")
            body = body_for(marker)
            r, _ = transaction(c, body)
            self.assertEqual(r.code, 250, r)
            return hashlib.sha256(body).hexdigest(), TOKEN_RE.findall(r.text)[0]

    def test_long_lock_gives_451_in_bounded_time_then_accepts(self):
        s = self.s
        acked = {}
        for i in range(3):
            h, token = self.send_ok("before%d" % i)
            acked["before%d" % i] = h

        holder = LockHolder(s.db_path)
        self.addCleanup(holder.release)
        results = []            # (marker, code, enhanced, seconds, noop code)
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        # API calls with a forged token: each refusal is an audit row for the
        # writer, a steady stream of work that must not starve the messages
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        api_calls = [0]

        def hammer():
            while not stop.is_set():
                try:
                    http_get(s, "/v1/verify", {"Submit-Token": forged})
                    api_calls[0] += 1
                except OSError:
                    pass
                time.sleep(0.1)

        def client(n):
            try:
                with s.raw(timeout=60) as c:
                    c.ehlo("client%d.test" % n)
                    for k in range(2):
                        marker = "locked-c%dm%d" % (n, k)
                        body = body_for(marker)
                        r, secs = transaction(c, body)
                        noop = c.cmd("NOOP").code
                        with lock:
                            results.append((marker, r.code, r.lines[-1], secs, noop))
                            if r.code == 250:
                                acked[marker] = hashlib.sha256(body).hexdigest()
                        time.sleep(0.5)
            except Exception as e:      # reported below, with the rest
                errors.append("client %d: %r" % (n, e))

        ham = threading.Thread(target=hammer)
        ham.start()
        threads = []
        for n in range(3):
            threads.append(threading.Thread(target=client, args=(n,)))
            threads[-1].start()
            time.sleep(1.5)

        # meanwhile the server serves everything that only reads
        t0 = time.monotonic()
        with s.raw() as c:
            self.assertEqual(c.greeting.code, 220)
            r = c.login_session(USER, PASSWORD, "reader.test")   # STARTTLS + AUTH: a read in an auth worker
            self.assertEqual(r.code, 235)
            self.assertEqual(c.cmd("QUIT").code, 221)
        status, data = http_get(s, "/v1/verify", {"Submit-Token": token})
        self.assertEqual(status, 200, data)
        self.assertEqual(json.loads(data)["result"], "valid")
        status, _ = http_get(s, "/healthz")
        self.assertEqual(status, 200)
        read_secs = time.monotonic() - t0
        self.assertLess(read_secs, 5.0, "reads were held up by the write lock")

        for t in threads:
            t.join(120)
        stop.set()
        ham.join(30)
        held = holder.release()
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 6, results)
        for marker, code, last, secs, noop in results:
            # never a 250 while the lock is held: nothing can be committed
            self.assertEqual(code, 451, (marker, code, last))
            self.assertTrue(ESC_RE.match(last) and last.startswith("4.3.0"), (marker, last))
            self.assertLess(secs, REPLY_BOUND, "%s waited %.1f s for its 451" % (marker, secs))
            self.assertEqual(noop, 250, "the session did not survive the 451")
        self.assertIsNone(s.proc.poll(), "submitd died")

        # the lock is gone: accepted again, at once
        t0 = time.monotonic()
        h, _ = self.send_ok("after")
        after_secs = time.monotonic() - t0
        acked["after"] = h
        self.assertLess(after_secs, 5.0)
        present = stored_hashes(s)
        lost = [m for m, h in acked.items() if h not in present]
        self.assertEqual(lost, [], "acknowledged messages missing")
        for marker, *_ in results:
            self.assertEqual(s.sql("SELECT count(*) AS n FROM message_bodies WHERE instr(content, X'%s') > 0"
                                   % marker.encode().hex())[0]["n"], 0, "%s refused but stored" % marker)
        self.assertEqual(s.sql("PRAGMA integrity_check"), [{"integrity_check": "ok"}])
        # the refused API calls' audit rows were kept while the lock was
        # held and are written now: one per call (no verification passed)
        deadline = time.monotonic() + 15
        while True:
            audited = s.sql("SELECT count(*) AS n FROM audit_log WHERE action = 'verify'")[0]["n"]
            if audited >= api_calls[0] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertGreaterEqual(audited, api_calls[0], "audit rows lost during the lock")
        log = s.log()
        self.assertIn("event=audit_write_deferred", log)
        self.assertIn("event=audit_write_resumed", log)
        self.assertRegex(log, r"event=store_locked what=\w+ waited_ms=\d+ error=\"database is locked\"")
        self.assertRegex(log, r"event=store_unlocked locked_ms=\d+ refused=\d+")
        self.assertIn("reason=storage storage=locked", log)
        waits = sorted(r[3] for r in results)
        print("\nlock held %.1f s: %d messages refused 451 4.3.0, waits %.1f-%.1f s (bound %.0f s), "
              "%d API calls meanwhile (%d audit rows), reads answered in %.2f s; accepted %.2f s after "
              "release; %d acknowledged, 0 lost" % (held, len(results), waits[0], waits[-1], REPLY_BOUND,
                                                    api_calls[0], audited, read_secs, after_secs, len(acked)))

    def test_sigterm_while_locked_stops_in_time(self):
        # systemd allows 60 s (TimeoutStopSec) before SIGKILL: a message
        # waiting for the lock gets its 451, then the 421 of the shutdown
        s = self.s
        holder = LockHolder(s.db_path)
        self.addCleanup(holder.release)
        with s.raw(timeout=60) as c:
            c.ehlo("term.test")
            for line, code in (("MAIL FROM:<a@example.org>", 250), ("RCPT TO:<b@example.net>", 250),
                               ("DATA", 354)):
                self.assertEqual(c.cmd(line).code, code)
            c.send(dot_stuff(body_for("sigterm")))
            time.sleep(1.0)             # the writer waits for the lock by now
            t0 = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            r = c.reply()
            self.assertEqual(r.code, 451, r)
            self.assertTrue(r.lines[-1].startswith("4.3.0 "), r)
            r = c.reply()
            self.assertEqual((r.code, r.lines[-1][:5]), (421, "4.3.2"), r)
            rc = s.proc.wait(LOCK_WAIT + 10)
            secs = time.monotonic() - t0
        self.assertEqual(s.stop(), 0)
        self.assertLess(secs, LOCK_WAIT + 5)
        print("\nSIGTERM while locked: 451, 421, exit status %d after %.1f s" % (rc, secs))

    def test_short_lock_is_waited_for(self):
        s = self.s
        holder = LockHolder(s.db_path)
        self.addCleanup(holder.release)
        releaser = threading.Timer(2.0, holder.release)
        releaser.start()
        try:
            with s.raw(timeout=30) as c:
                c.ehlo("short.test")
                body = body_for("short-lock")
                r, secs = transaction(c, body)
        finally:
            releaser.join()
        self.assertEqual(r.code, 250, r)
        self.assertGreater(secs, 1.0, "the message did not wait for the lock at all?")
        self.assertLess(secs, LOCK_WAIT)
        self.assertIn(hashlib.sha256(body).hexdigest(), stored_hashes(s))
        self.assertNotIn("event=store_locked", s.log())
        print("\nlock held 2 s: message waited %.2f s, then 250" % secs)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def start_fails(srv, expect):
    """submitd with srv's options must refuse to start: exit status 1 and a
    startup_failed line naming the cause. Returns that line."""
    p = run_program("submitd", srv.option_args(), capture_output=True, text=True, timeout=60,
                    stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    if p.returncode == 0 or "event=ready" in out:
        raise AssertionError("submitd started on storage it cannot write (exit %d)\n%s" % (p.returncode, out))
    lines = [l for l in out.splitlines() if "event=startup_failed" in l]
    if p.returncode != 1 or not lines or expect not in lines[0]:
        raise AssertionError("want exit 1 and startup_failed with %r, got exit %d:\n%s"
                             % (expect, p.returncode, out))
    return lines[0]


@unittest.skipUnless(is_root(), "needs root: mounts a loop-device ext4 and a tmpfs, uses chattr")
class RelayResultWhileLocked(unittest.TestCase):
    """A delivery result that cannot be committed (another process holds
    the write lock past the busy timeout) is kept and tried again; the
    message is not picked again meanwhile, so the next hop gets it once."""

    def test_result_waits_for_the_lock_and_the_message_goes_once(self):
        hop = ScriptedHop(eod_delay=2.0)
        hop.start()
        self.addCleanup(hop.stop)
        s = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "relay.host": "127.0.0.1",
                     "relay.port": str(hop.port), "relay.tls": "none", "relay.retry_base": "1",
                     "relay.retry_max": "2", "relay.poll_interval": "1"})
        s.start()
        self.addCleanup(s.cleanup)
        with s.raw() as c:
            c.ehlo("relay.test")
            r, _ = transaction(c, body_for("relayed once"))
            self.assertEqual(r.code, 250, r)
        # the relay is sending it; the hop holds its answer for 2 s
        deadline = time.monotonic() + 10
        while not hop.all_sessions() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(hop.all_sessions(), "the relay did not connect")
        time.sleep(0.5)
        holder = LockHolder(s.db_path)
        self.addCleanup(holder.release)
        # the answer comes, its commit waits the busy timeout (10 s) and fails
        self.assertTrue(wait_log(s, "event=relay_record_failed", timeout=30), s.log()[-2000:])
        # a message whose result was dropped would be picked and sent again
        # within the next poll (1 s) and reach the hop 2 s later
        time.sleep(4.0)
        self.assertEqual(s.sql("SELECT state FROM recipients"), [{"state": "queued"}])
        held = holder.release()
        self.assertTrue(wait_log(s, "event=relay_record_retried", timeout=30), s.log()[-2000:])
        self.assertEqual(s.sql("SELECT state, attempts FROM recipients"),
                         [{"state": "delivered", "attempts": 1}])
        time.sleep(3.0)     # the scans after the record find nothing to send
        self.assertEqual(len(hop.messages()), 1, [m.data[:60] for m in hop.messages()])
        self.assertIn("Subject: relayed once", hop.messages()[0].data.decode())
        self.assertIsNone(s.proc.poll(), "submitd died")
        s.stop()
        print("\nlock held %.1f s over a delivery result: recorded after it, delivered once" % held)


class ReadOnlyStorage(unittest.TestCase):
    def mount_ext4(self):
        """A small ext4 on a loop device that turns read-only on an error,
        as a real disk's file system does."""
        for tool in ("mkfs.ext4", "losetup", "e2fsck"):
            if not shutil.which(tool):
                self.skipTest("%s not installed" % tool)
        self.tmp = tempfile.mkdtemp(prefix="submitd-ro-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        os.chmod(self.tmp, 0o755)       # the server's user (server.user) must reach its data
        self.img = os.path.join(self.tmp, "fs.img")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        with open(self.img, "wb") as f:
            f.truncate(48 * 1024 * 1024)
        r = run(["mkfs.ext4", "-q", "-F", self.img])
        if r.returncode != 0:
            self.skipTest("mkfs.ext4 failed: %s" % r.stderr.strip())
        self.remount_ext4()
        self.addCleanup(self.unmount)

    def remount_ext4(self):
        r = run(["mount", "-o", "loop,errors=remount-ro", self.img, self.mnt])
        if r.returncode != 0:
            self.skipTest("cannot mount a loop-device ext4 here: %s" % r.stderr.strip())
        os.chmod(self.mnt, 0o755)
        dev = run(["findmnt", "-n", "-o", "SOURCE", self.mnt]).stdout.strip()
        self.trigger = "/sys/fs/ext4/%s/trigger_fs_error" % os.path.basename(dev)

    def unmount(self):
        if os.path.ismount(self.mnt):
            if run(["umount", self.mnt]).returncode != 0:
                run(["umount", "-l", self.mnt])

    def send(self, s, marker, big=False):
        body = body_for(marker, lines=3000 if big else 3)   # 3000 lines: past body_memory, spooled
        with s.raw(timeout=30) as c:
            c.ehlo("ro.test")
            r, secs = transaction(c, body)
            noop = c.cmd("NOOP").code
        return body, r, secs, noop

    def test_file_system_turns_read_only(self):
        self.mount_ext4()
        if not os.path.exists(self.trigger):
            self.skipTest("this kernel has no %s" % self.trigger)
        data = os.path.join(self.mnt, "var")
        s = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "server.data_dir": data,
                     "smtp.body_memory": "4096"})
        s.data_dir = data
        self.addCleanup(s.cleanup)
        s.start()
        acked, tokens = {}, []
        for i in range(4):
            body, r, _, _ = self.send(s, "rw%d" % i, big=(i % 2 == 1))
            self.assertEqual(r.code, 250, r)
            acked["rw%d" % i] = hashlib.sha256(body).hexdigest()
            tokens.append(TOKEN_RE.findall(r.text)[0])

        # the file system fails and goes read-only under the running server
        with open(self.trigger, "w") as f:
            f.write("submitd test\n")
        # (ext4 calls this state emergency_ro: the mount still says rw)
        with self.assertRaises(OSError, msg="the file system did not turn read-only") as cm:
            open(os.path.join(self.mnt, "probe"), "w").close()
        self.assertEqual(cm.exception.errno, errno.EROFS)

        refused = []
        for i in range(4):
            body, r, secs, noop = self.send(s, "ro%d" % i, big=(i % 2 == 1))
            refused.append(("ro%d" % i, r, secs))
            self.assertEqual(r.code, 451, r)
            self.assertTrue(r.lines[-1].startswith("4.3.0 "), r)
            self.assertLess(secs, 5.0)
            self.assertEqual(noop, 250, "the session did not survive the 451")
        # still serving: TLS, and the API reads what was stored before
        with s.raw(tls=True) as c:
            c.ehlo()
            self.assertEqual(c.cmd("NOOP").code, 250)
        status, data = http_get(s, "/v1/verify", {"Submit-Token": tokens[0]})
        self.assertEqual((status, json.loads(data)["result"]), (200, "valid"), data)
        status, _ = http_get(s, "/healthz")
        self.assertEqual(status, 200)
        log = s.log()
        self.assertIn('cause="data directory: Read-only file system"', log)   # the small ones
        self.assertIn('event=spool_failed', log)                            # the spooled ones
        self.assertIn('error="Read-only file system"', log)
        self.assertIn("reason=storage storage=error", log)
        self.assertIsNone(s.proc.poll(), "submitd died")
        s.stop()            # exit status 0: no crash on the way out either

        # a restart on the read-only file system refuses to start
        line = start_fails(s, "Read-only file system")

        # repair as an operator would (unmount, fsck, mount), and check
        self.unmount()
        r = run(["e2fsck", "-fy", self.img])
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)     # 1: errors corrected
        self.remount_ext4()
        present = stored_hashes(s)
        lost = [m for m, h in acked.items() if h not in present]
        self.assertEqual(lost, [], "acknowledged messages lost")
        self.assertEqual(s.sql("PRAGMA integrity_check"), [{"integrity_check": "ok"}])
        self.assertEqual(s.message_count(), len(acked), "a refused message was stored")
        s.start()
        body, r, _, _ = self.send(s, "repaired")
        self.assertEqual(r.code, 250, r)
        s.stop()
        print("\nread-only file system: %d acknowledged before, %d refused 451 4.3.0 after (max %.2f s), "
              "API still verified, 0 lost after repair; restart refused: %s"
              % (len(acked), len(refused), max(x[2] for x in refused), line.split("event=", 1)[1]))

    def test_start_on_unwritable_storage_fails(self):
        mnt = tempfile.mkdtemp(prefix="submitd-rofs-")
        self.addCleanup(os.rmdir, mnt)
        r = run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", mnt])
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())
        self.addCleanup(run, ["umount", "-l", mnt])
        data = os.path.join(mnt, "var")
        s = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "server.data_dir": data})
        s.data_dir = data
        self.addCleanup(s.cleanup)
        s.start()
        with s.raw() as c:
            c.ehlo()
            r, _ = transaction(c, body_for("first"))
            self.assertEqual(r.code, 250, r)
        s.stop()
        lines = []

        # a read-only file system, with the database on it and without
        subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
        lines.append(start_fails(s, "Read-only file system"))
        fresh = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "server.data_dir": os.path.join(mnt, "new")})
        self.addCleanup(fresh.cleanup)
        lines.append(start_fails(fresh, "Read-only file system"))
        subprocess.run(["mount", "-o", "remount,rw", mnt], check=True)

        # an immutable database file, then an immutable data directory
        # (chattr +i stops root too, where chmod would not)
        for path, expect in ((s.db_path, "database not writable"), (data, "directory not writable")):
            r = run(["chattr", "+i", path])
            if r.returncode != 0:
                self.skipTest("chattr +i does not work here: %s" % r.stderr.strip())
            try:
                lines.append(start_fails(s, expect))
            finally:
                run(["chattr", "-i", path])

        # writable again: it starts, and the first message is still there
        s.start()
        self.assertEqual(s.message_count(), 1)
        s.stop()
        print("\n" + "\n".join("refused to start: " + l.split("event=", 1)[1] for l in lines))


def server_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])     # effective
    raise AssertionError("no Uid line for pid %d" % pid)


def peer_cert(port):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_tls_context().wrap_socket(raw) as t:
            return t.getpeercert(binary_form=True)


class CertificateVanishes(unittest.TestCase):
    def setUp(self):
        self.s = Submitd()
        self.s.start()
        self.addCleanup(self.s.cleanup)
        self.s.add_user(USER, PASSWORD)
        self.cert = os.path.join(self.s.data_dir, "tls", "cert.pem")
        self.key = os.path.join(self.s.data_dir, "tls", "key.pem")
        self.before = peer_cert(self.s.tls_port)

    def tearDown(self):
        self.s.stop()

    def sighup_fails(self, expect):
        n = self.s.log().count("event=reload_failed")
        self.s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.s.log().count("event=reload_failed") == n and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [l for l in self.s.log().splitlines() if "event=reload_failed" in l]
        self.assertEqual(len(lines), n + 1, "no reload_failed line after SIGHUP")
        self.assertIn("what=tls", lines[-1])
        self.assertIn(expect, lines[-1])
        self.assertIn("keeping=old_certificate", lines[-1])
        return lines[-1]

    def assertStillServing(self, live):
        s = self.s
        self.assertIsNone(s.proc.poll(), "submitd died")
        # the sessions opened before go on
        for c in live:
            self.assertEqual(c.cmd("NOOP").code, 250)
        # implicit TLS and STARTTLS still handshake, with the old certificate
        self.assertEqual(peer_cert(s.tls_port), self.before)
        with s.raw() as c:
            c.login_session(USER, PASSWORD, "after.test")
            self.assertEqual(c.sock.getpeercert(binary_form=True), self.before)
            r, _ = transaction(c, body_for("after-reload-%d" % len(s.log())), sender=USER)
            self.assertEqual(r.code, 250, r)

    def live_sessions(self):
        a = self.s.raw(tls=True)
        a.ehlo()
        b = self.s.raw()
        b.login_session(USER, PASSWORD, "live.test")
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return [a, b]

    def test_deleted_certificate_keeps_old_then_recovers(self):
        live = self.live_sessions()
        os.unlink(self.cert)
        line = self.sighup_fails("cert.pem: cannot open: No such file or directory")
        self.assertStillServing(live)
        # a renewal that finally lands is picked up by the next SIGHUP
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2",
                        "-subj", "/CN=renewed.test"], check=True, capture_output=True)
        self.s.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_log(self.s, "event=reloaded what=tls"))
        self.assertNotEqual(peer_cert(self.s.tls_port), self.before)
        for c in live:
            self.assertEqual(c.cmd("NOOP").code, 250)
        print("\n" + line.split("event=", 1)[1])

    def test_unreadable_certificate_or_key_keeps_old(self):
        live = self.live_sessions()
        lines = []
        # a directory where the certificate was (root reads any file, so
        # this is the unreadable case that holds for root too)
        saved = self.cert + ".saved"
        os.rename(self.cert, saved)
        os.mkdir(self.cert)
        lines.append(self.sighup_fails("cert.pem: not a regular file"))
        self.assertStillServing(live)
        os.rmdir(self.cert)
        os.rename(saved, self.cert)
        if server_uid(self.s.proc.pid) != 0:     # root would read it anyway
            os.chmod(self.cert, 0)
            lines.append(self.sighup_fails("cert.pem: cannot open: Permission denied"))
            os.chmod(self.cert, 0o600)
        # the key vanished, the certificate is there
        os.rename(self.key, self.key + ".saved")
        lines.append(self.sighup_fails("key.pem: cannot open: No such file or directory"))
        self.assertStillServing(live)
        os.rename(self.key + ".saved", self.key)
        print("\n" + "\n".join(l.split("event=", 1)[1] for l in lines))


if __name__ == "__main__":
    unittest.main()
