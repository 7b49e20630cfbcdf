"""test_imap_command.py: contrib/imap-sent.py with an IMAP server that files
by token (XSUBMITTOKEN, docs/imap.md), and without one.

The server is a small fake IMAP server in Python (stdlib only), scripted
per test: it advertises XSUBMITTOKEN after login (or not), answers LIST,
CREATE and SUBSCRIBE, and answers XSUBMITTOKEN as the plugin does: `OK
[APPENDUID v uid]`, `NO [TRYCREATE]` for a missing mailbox, `NO [CODE]` for
a refusal. The test checks the exact command the client sends (mailbox
quoted, token as an atom), that no API is touched on that path (the API
URL points at a closed port), and each exit status. The plugin itself in a
real Dovecot is tested with the plugin.

Run: python3 -m unittest -v test_imap_command
"""

import base64
import os
import re
import socketserver
import subprocess
import sys
import threading
import unittest

from harness import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "..", "..", "contrib", "imap-sent.py")
USER = "sender@example.org"
PASSWORD = "pass phrase"
TOKEN = "v4.public.eyJmYWtlIjoidG9rZW4ifQ.eyJraWQiOiJrNC5waWQueCJ9"


class FakeImap:
    """A scripted IMAP server on a free loopback port.

    command: whether XSUBMITTOKEN is advertised after login;
    folders: the mailboxes that exist (LIST answers them, \\Sent flagged on "Sent");
    replies: the tagged answers to XSUBMITTOKEN, in order ("OK [APPENDUID 7 42] done",
    "NO [TRYCREATE] no mailbox", ...); a missing mailbox is TRYCREATE by itself.
    log: every command line received, in order."""

    def __init__(self, command=True, folders=("INBOX", "Sent"), replies=("OK [APPENDUID 7 42] filed",)):
        self.command = command
        self.folders = list(folders)
        self.replies = list(replies)
        self.log = []
        self.port = free_port()
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def send(self, line):
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                authed = False
                self.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready")
                while True:
                    line = self.rfile.readline(65536)
                    if not line:
                        return
                    text = line.decode().rstrip("\r\n")
                    fake.log.append(text)
                    tag, _, rest = text.partition(" ")
                    cmd, _, args = rest.partition(" ")
                    cmd = cmd.upper()
                    if cmd == "CAPABILITY":
                        caps = "IMAP4rev1 UIDPLUS" + ("" if authed else " AUTH=PLAIN") + (" XSUBMITTOKEN" if authed and fake.command else "")
                        self.send("* CAPABILITY " + caps)
                        self.send(tag + " OK done")
                    elif cmd == "AUTHENTICATE":
                        self.send("+ ")
                        creds = base64.b64decode(self.rfile.readline().strip()).split(b"\0")
                        authed = creds[1:] == [USER.encode(), PASSWORD.encode()]
                        self.send(tag + (" OK logged in" if authed else " NO [AUTHENTICATIONFAILED] no"))
                    elif cmd == "LIST":
                        for f in fake.folders:
                            attrs = "\\Sent" if f == "Sent" else ""
                            pattern = args.split(" ", 1)[1].strip('"')
                            if pattern in ("*", f):
                                self.send('* LIST (%s) "/" "%s"' % (attrs, f))
                        self.send(tag + " OK done")
                    elif cmd == "CREATE":
                        fake.folders.append(args.strip('"'))
                        self.send(tag + " OK created")
                    elif cmd == "SUBSCRIBE":
                        self.send(tag + " OK subscribed")
                    elif cmd == "XSUBMITTOKEN" and authed and fake.command:
                        m = re.match(r'^"((?:[^"\\]|\\.)*)" (\S+)$', args)
                        if not m:
                            self.send(tag + " BAD syntax")
                        elif m.group(1) not in fake.folders:
                            self.send(tag + " NO [TRYCREATE] no such mailbox")
                        else:
                            self.send(tag + " " + (fake.replies.pop(0) if fake.replies else "OK filed"))
                    elif cmd == "LOGOUT":
                        self.send("* BYE bye")
                        self.send(tag + " OK done")
                        return
                    else:
                        self.send(tag + " BAD unknown command")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def commands(self, name):
        return [l.split(" ", 1)[1] for l in self.log if l.split(" ")[1:2] == [name]]


class XSubmitToken(unittest.TestCase):
    def imap(self, **kw):
        f = FakeImap(**kw)
        self.addCleanup(f.stop)
        return f

    def run_client(self, fake, args=()):
        env = {k: v for k, v in os.environ.items() if k not in ("SUBMITD_API_SECRET", "IMAP_PASSWORD")}
        env["IMAP_PASSWORD"] = PASSWORD
        cmd = [sys.executable, CLIENT, "--api-url", "http://127.0.0.1:%d" % free_port(),
               "--imap-host", "127.0.0.1", "--imap-port", str(fake.port), "--imap-tls", "none",
               "--imap-user", USER, "--timeout", "20", "-v"] + list(args)
        p = subprocess.run(cmd, input=TOKEN + "\n", capture_output=True, text=True, env=env, timeout=60)
        self.assertNotIn("Traceback", p.stderr)
        self.assertNotIn(TOKEN, p.stdout + p.stderr, "the client printed a whole token")
        return p

    def test_filed_by_the_server(self):
        fake = self.imap()
        p = self.run_client(fake)
        self.assertEqual((p.returncode, p.stdout), (0, "42\n"), p.stderr)
        self.assertEqual(fake.commands("XSUBMITTOKEN"), ['XSUBMITTOKEN "Sent" ' + TOKEN])
        self.assertIn("filed by the server into Sent: UIDVALIDITY 7 UID 42", p.stderr)
        self.assertEqual(fake.commands("APPEND"), [])

    def test_ok_without_appenduid(self):
        fake = self.imap(replies=["OK filed"])
        p = self.run_client(fake)
        self.assertEqual((p.returncode, p.stdout), (0, ""), p.stderr)

    def test_folder_created_then_filed(self):
        fake = self.imap(folders=["INBOX"])
        p = self.run_client(fake)
        self.assertEqual((p.returncode, p.stdout), (0, "42\n"), p.stderr)
        self.assertEqual(fake.commands("CREATE"), ['CREATE "Sent"'])
        self.assertEqual(len(fake.commands("XSUBMITTOKEN")), 1)

    def test_trycreate_creates_and_tries_once_more(self):
        fake = self.imap(replies=["NO [TRYCREATE] gone meanwhile", "OK [APPENDUID 7 43] filed"])
        p = self.run_client(fake)
        self.assertEqual((p.returncode, p.stdout), (0, "43\n"), p.stderr)
        self.assertEqual(fake.commands("CREATE"), ['CREATE "Sent"'])
        self.assertEqual(len(fake.commands("XSUBMITTOKEN")), 2)
        fake = self.imap(replies=["NO [TRYCREATE] gone", "NO [TRYCREATE] still gone"])
        p = self.run_client(fake)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertEqual(len(fake.commands("XSUBMITTOKEN")), 2)

    def test_refusals_and_their_exit_status(self):
        for reply, status, text in (
                ("NO [EXPIRED] the token has expired", 2, "result=expired"),
                ("NO [REVOKED] revoked", 2, "result=revoked"),
                ("NO [BAD-SIGNATURE] forged", 2, "result=bad_signature"),
                ("NO [XSUBMITTOKEN-WRONG-ADDRESS] not yours", 2, "result=wrong_address"),
                ("NO [WRONG_ROLE] a recipient token", 2, "result=wrong_role"),
                ("NO [UNAVAILABLE] the API does not answer", 3, "result=unavailable"),
                ("NO [PURGED] the copy is gone", 3, "result=purged"),
                ("NO [SOMETHINGNEW] what", 4, "[SOMETHINGNEW] what"),
                ("NO no code at all", 4, "no code at all"),
                ("BAD what", 4, "BAD")):
            fake = self.imap(replies=[reply])
            p = self.run_client(fake)
            self.assertEqual(p.returncode, status, (reply, p.stderr))
            self.assertIn(text, p.stderr, reply)
            self.assertEqual(fake.commands("APPEND"), [])

    def test_toobig_falls_back_to_fetch_and_append(self):
        # the server will not hold a copy this large: the client goes to the
        # API itself (a closed port here, so exit 3 after trying it)
        fake = self.imap(replies=["NO [XSUBMITTOKEN-TOOBIG] larger than 64 MiB"])
        p = self.run_client(fake)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("does not file this copy", p.stderr)
        self.assertIn("API POST", p.stderr)
        self.assertEqual(len(fake.commands("XSUBMITTOKEN")), 1)

    def test_fallback_without_the_command(self):
        # no XSUBMITTOKEN: the client goes to the API (a closed port here): exit 3
        fake = self.imap(command=False)
        p = self.run_client(fake)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("API POST", p.stderr)
        self.assertEqual(fake.commands("XSUBMITTOKEN"), [])
        # offered, but asked for what the command cannot do, or not wanted
        for args in (["--no-xsubmittoken"], ["--any-role"], ["--any-address"],
                     ["--address", "other@example.org"]):
            fake = self.imap()
            p = self.run_client(fake, args)
            self.assertEqual(p.returncode, 3, (args, p.stderr))
            self.assertEqual(fake.commands("XSUBMITTOKEN"), [], args)
        # --address that is the IMAP user: the command is fine
        fake = self.imap()
        p = self.run_client(fake, ["--address", USER])
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main()
