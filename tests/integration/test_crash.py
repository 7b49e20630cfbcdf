"""test_crash.py: a 250 means the message is on disk. Clients submit
concurrently while submitd is killed with SIGKILL, again and again; after
each restart every message whose 250 a client received must be there,
byte-exact (SHA-256), with tokens that verify, and the database must pass
PRAGMA integrity_check. Prints acknowledged / present / lost per round.
"""

import hashlib
import os
import signal
import smtplib
import threading
import time
import unittest

from harness import Submitd, TOKEN_RE

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


if __name__ == "__main__":
    unittest.main()
