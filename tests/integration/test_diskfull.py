"""test_diskfull.py: the database's filesystem fills up. Clients get
452 4.3.1 (never a 250 for a message that is not stored), the server keeps
serving, and once space is back it accepts again, with an intact database.
Needs root (a small tmpfs is mounted as the data directory), as in CI.
"""

import hashlib
import os
import smtplib
import subprocess
import tempfile
import unittest

from harness import Submitd


def can_mount():
    return os.geteuid() == 0


@unittest.skipUnless(can_mount(), "needs root to mount a small tmpfs")
class DiskFull(unittest.TestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="submitd-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())

    def tearDown(self):
        subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        os.rmdir(self.mnt)

    def send(self, s, body):
        c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
        try:
            c.ehlo("full.test")
            c.mail("a@example.org")
            c.rcpt("b@example.net")
            code, msg = c.data(body)
            # the session survives a refused message
            self.assertEqual(c.noop()[0], 250)
            return code, msg
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error
        finally:
            c.quit()

    def test_full_then_free(self):
        data = os.path.join(self.mnt, "var")
        s = Submitd({"smtp.trusted_networks": "127.0.0.0/8", "server.data_dir": data,
                     "smtp.body_memory": "4096"})
        s.data_dir = data      # the harness reads the database from here
        with s:
            accepted, codes = [], []
            for i in range(40):
                body = ("Subject: fill %d\r\n\r\n" % i).encode() + ((b"%08d" % i) * 100 + b"\r\n") * 250
                code, msg = self.send(s, body)
                codes.append(code)
                if code == 250:
                    accepted.append(hashlib.sha256(body).hexdigest())
                if code == 452:
                    self.assertIn(b"4.3.1", msg)
                    break
                self.assertEqual(code, 250, "unexpected reply %d %r" % (code, msg))
            self.assertEqual(codes[-1], 452, "the filesystem never filled: %r" % codes)
            # still serving: another attempt is refused cleanly, not dropped
            code, _ = self.send(s, b"Subject: small\r\n\r\nsmall\r\n")
            self.assertIn(code, (250, 452))
            # space comes back
            subprocess.run(["mount", "-o", "remount,size=64m", self.mnt], check=True)
            body = b"Subject: after\r\n\r\nback to normal\r\n"
            code, _ = self.send(s, body)
            self.assertEqual(code, 250)
            accepted.append(hashlib.sha256(body).hexdigest())
            stored = {r["sha256"] for r in s.sql("SELECT sha256 FROM messages")}
            for h in accepted:
                self.assertIn(h, stored)
            self.assertEqual(s.sql("PRAGMA integrity_check"), [{"integrity_check": "ok"}])
            print("\naccepted %d before the disk filled, then 452 4.3.1; accepted again after" % (len(accepted) - 1))


if __name__ == "__main__":
    unittest.main()
