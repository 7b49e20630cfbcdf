"""test_crash.py: a 250 means the message is on disk. Clients submit
concurrently while submitd is killed with SIGKILL, again and again; after
each restart every message whose 250 a client received must be there,
byte-exact (SHA-256), with tokens that verify, and the database must pass
PRAGMA integrity_check. Prints acknowledged / present / lost per round.

A killed process loses nothing the kernel already has, so SIGKILL cannot
tell written from flushed. FlushBeforeReply checks that at the level of
system calls instead: under strace, each 250 at the end of DATA goes out
only after an fdatasync of the WAL that began once the message's frames
were written.
"""

import hashlib
import os
import re
import signal
import smtplib
import subprocess
import threading
import time
import unittest

from harness import Submitd, TOKEN_RE, which

ROUNDS = 4
CLIENTS = 8


class CrashSafety(unittest.TestCase):
    def test_kill_9_loses_no_acknowledged_message(self):
        # small checkpoints, so that kills also land in the middle of the
        # checkpoint thread's and the writer's checkpoints
        s = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "store.checkpoint_pages": "20"},
                    keep=True)
        acked = {}          # marker -> (sha256, sender token)
        lock = threading.Lock()
        totals = {"acked": 0, "present": 0, "lost": 0}
        try:
            for rnd in range(ROUNDS):
                s.start()
                stop = threading.Event()

                def client(n):
                    i = 0
                    while not stop.is_set():
                        marker = "r%dc%dm%d" % (rnd, n, i)
                        i += 1
                        body = ("Subject: %s\r\n\r\n%s\r\n" % (marker, ("line %s " % marker) * 40)).encode()
                        try:
                            c = smtplib.SMTP("127.0.0.1", s.port, timeout=5)
                            c.ehlo("crash.test")
                            c.mail("a@example.org")
                            c.rcpt("b@example.net")
                            code, msg = c.data(body)
                        except (OSError, smtplib.SMTPException):
                            continue        # killed mid-way: not acknowledged
                        if code == 250:
                            tokens = TOKEN_RE.findall(msg.decode())
                            with lock:
                                acked[marker] = (hashlib.sha256(body).hexdigest(), tokens[-1])
                        try:
                            c.quit()
                        except (OSError, smtplib.SMTPException):
                            pass

                threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
                for t in threads:
                    t.start()
                time.sleep(1.0 + 0.3 * rnd)
                os.kill(s.proc.pid, signal.SIGKILL)
                s.proc.wait()
                s.proc = None
                s.log_file.close()
                stop.set()
                for t in threads:
                    t.join()

                # everything acknowledged so far, in this and earlier rounds
                self.assertEqual(s.sql("PRAGMA integrity_check"), [{"integrity_check": "ok"}])
                present = {r["sha256"] for r in s.sql(
                    "SELECT m.sha256 FROM messages m JOIN message_bodies b USING (message_id)")}
                lost = [m for m, (h, _) in acked.items() if h not in present]
                print("\nround %d: acknowledged %d, present %d, lost %d"
                      % (rnd + 1, len(acked), len(acked) - len(lost), len(lost)))
                self.assertEqual(lost, [], "acknowledged messages missing after kill -9")
            totals["acked"] = len(acked)
            self.assertGreater(len(acked), 0, "no message was acknowledged at all")
            # stored bytes hash as recorded, and the sender tokens verify
            s.start()
            rows = s.sql("SELECT sha256, hex(content) AS h FROM messages JOIN message_bodies USING (message_id)")
            for r in rows:
                self.assertEqual(hashlib.sha256(bytes.fromhex(r["h"])).hexdigest(), r["sha256"])
            for marker, (h, token) in list(acked.items())[:20]:
                p = s.submitctl("token", "verify", token, "--address", "a@example.org", check=False)
                self.assertIn("result=valid", p.stdout, marker)
            s.stop()
            print("total: acknowledged %d, lost 0 over %d kill -9 rounds" % (totals["acked"], ROUNDS))
        finally:
            s.keep = False
            s.cleanup()


_STRACE_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+) (.*)$")
_STRACE_END = re.compile(r"\) += (-?\d+|\?)(?: [^<]*)? <(\d+\.\d+)>$")


def strace_calls(path):
    """The finished system calls of an `strace -f -ttt -T -y` log, by start
    time: dicts of start, end, tid, call, fd (the path -y printed for the
    first argument), text and ret. A call another thread interrupted in the
    log ("<unfinished ...>" ... "<... resumed>") is joined into one."""
    pending, calls = {}, []
    with open(path, errors="replace") as f:
        for line in f:
            m = _STRACE_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            tid, t, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            if rest.endswith("<unfinished ...>"):
                pending[tid] = (t, rest[:-len("<unfinished ...>")])
                continue
            r = re.match(r"<\.\.\. \w+ resumed>(.*)$", rest)
            if r:
                if tid not in pending:
                    continue
                start, head = pending.pop(tid)
                rest = head + r.group(1)
            else:
                start = t
            e = _STRACE_END.search(rest)
            c = re.match(r"(\w+)\((?:\d+<([^>]*)>)?", rest)
            if not e or not c:
                continue        # signals, exits
            calls.append({"start": start, "end": start + float(e.group(2)), "tid": tid,
                          "call": c.group(1), "fd": c.group(2) or "", "text": rest, "ret": e.group(1)})
    calls.sort(key=lambda x: x["start"])
    return calls


class FlushBeforeReply(unittest.TestCase):
    MESSAGES = 8

    def setUp(self):
        if not which("strace"):
            self.skipTest("strace is not installed (scripts/deps test installs it)")
        p = subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest("strace cannot trace here: %s" % p.stderr.strip())

    def test_250_only_after_the_wal_is_flushed(self):
        s = Submitd({"smtp.trusted_networks": "127.0.0.0/8"})
        trace = os.path.join(s.tmp, "strace.log")
        # LeakSanitizer cannot run under ptrace; the other tests check leaks
        asan = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
        s.wrapper = ["env", "ASAN_OPTIONS=" + asan,
                     "strace", "-f", "-qq", "-ttt", "-T", "-y", "-s", "200", "-o", trace,
                     "-e", "trace=pwrite64,pwritev,write,writev,fdatasync,fsync,sendto,sendmsg"]
        server_pid = None
        try:
            s.start()
            # s.proc is strace (env execs it); submitd is its child
            with open("/proc/%d/task/%d/children" % (s.proc.pid, s.proc.pid)) as f:
                server_pid = int(f.read().split()[0])
            # one message at a time, so that the writes before each reply are its own
            for i in range(self.MESSAGES):
                c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
                c.ehlo("flush.test")
                c.sendmail("a@example.org", ["b@example.net"],
                           "Subject: flush %d\r\n\r\nbody %d\r\n" % (i, i))
                c.quit()
            os.kill(server_pid, signal.SIGTERM)
            s.proc.wait(60)
            server_pid = None
            s.stop()

            calls = strace_calls(trace)
            replies = [c for c in calls if c["call"] in ("sendto", "sendmsg", "write", "writev")
                       and c["fd"].startswith("socket:") and '"250-2.1.13 ' in c["text"]]
            self.assertEqual(len(replies), self.MESSAGES, "final replies found in the trace")
            wal = lambda c: c["fd"].endswith("/submitd.db-wal")
            since = 0.0
            for n, r in enumerate(replies):
                writes = [c for c in calls if c["call"] in ("pwrite64", "pwritev", "write", "writev")
                          and wal(c) and since < c["start"] < r["start"]]
                self.assertTrue(writes, "message %d: no write to the WAL before its 250" % n)
                written = max(c["end"] for c in writes)
                flushes = [c for c in calls if c["call"] in ("fdatasync", "fsync") and wal(c)
                           and c["ret"] == "0" and c["start"] >= written and c["end"] <= r["start"]]
                self.assertTrue(flushes, "message %d: its 250 went out at %.6f, but no fdatasync of the "
                                "WAL began after its last write (%.6f) and ended before"
                                % (n, r["start"], written))
                since = r["start"]
            print("\n%d messages: each 250 came after an fdatasync of the WAL that followed its writes"
                  % len(replies))
        finally:
            if server_pid is not None:      # a failure before the stop: no orphan
                try:
                    os.kill(server_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
