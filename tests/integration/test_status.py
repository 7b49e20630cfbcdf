"""test_status.py: delivery status for token holders (docs/api.md section
5.7): GET/POST /v1/status and `submitctl message status`, end to end.

A real submitd relays to the scripted next hop of nexthop.py, which answers
4xx, 5xx or 2xx per recipient or per transaction; the tokens from the
2.1.13 reply are then presented to /v1/status with Python's urllib (and
once with curl). Each state is checked against the recipients table read
with the sqlite3 CLI: queued (while the next hop holds the end of data),
deferred with the last reply and the next attempt, delivered with the
next hop's reply, failed with its reply and whether a bounce was sent,
not_relayed without a next hop. A sender token sees every recipient, a
recipient token only its own. Refusals carry verify's status and result.
`submitctl message status` reads the same query: its --json output is the
API's answer, byte for byte.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_status
"""

import json
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from harness import Submitd, jti_of, which
from test_relay import SENDER, RelayCase, db_time

DELIVERED_RE = r"^250 2\.0\.0 Ok: queued"
SLOW = {"relay.retry_base": "600", "relay.retry_max": "600"}   # a deferred recipient stays so


def api_time(db):
    """'YYYY-MM-DD HH:MM:SS.sss' -> 'YYYY-MM-DDTHH:MM:SS.sssZ'"""
    return db.replace(" ", "T") + "Z"


def flip_signature(token):
    parts = token.split(".")
    body = parts[2]
    i = len(body) - 10
    parts[2] = body[:i] + ("B" if body[i] != "B" else "C") + body[i + 1:]
    return ".".join(parts)


class StatusCase(RelayCase):
    def request(self, s, path, token=None, method="GET", body=None, address=None):
        """(status, JSON answer, raw body) of one API request."""
        headers = {}
        if token is not None and body is None:
            headers["Submit-Token"] = token
        if address is not None:
            headers["Submit-Address"] = address
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (s.http_port, path), data=data,
                                     headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                code = r.status
                self.assertEqual(r.headers["Content-Type"], "application/json")
                self.assertEqual(r.headers["Cache-Control"], "no-store")
        except urllib.error.HTTPError as e:
            raw = e.read()
            code = e.code
        return code, json.loads(raw), raw

    def status(self, s, token, **kw):
        code, j, raw = self.request(s, "/v1/status", token, **kw)
        self.assertEqual(code, 200, j)
        self.assertEqual(j["result"], "valid", j)
        return j

    def ctl_status(self, s, token):
        """submitctl message status: (--json output parsed, the raw --json
        line, the human lines)."""
        p = s.submitctl("message", "status", token, "--json")
        h = s.submitctl("message", "status", token)
        return json.loads(p.stdout), p.stdout.encode(), h.stdout.splitlines()

    def rcpt_rows(self, s, sub):
        return {r["address"]: r for r in self.rows(s, sub.message_id)}

    def tokens_of(self, sub):
        """address -> token: the recipients in RCPT order, then the sender."""
        addrs = sub.rcpts + [SENDER]
        self.assertEqual(len(sub.tokens), len(addrs), sub.tokens)
        return {a: t.token for a, t in zip(addrs, sub.tokens)}

    def assert_message(self, j, s, sub, role, address, token):
        self.assertEqual(j["token_id"], jti_of(token))
        self.assertEqual(j["role"], role)
        self.assertEqual(j["address"], address)
        self.assertEqual(j["message"], {"id": sub.public_id, "received_at": api_time(sub.row["received_at"]),
                                        "size": sub.row["size"], "sha256": sub.row["sha256"]})
        # delivery state only: no content, no envelope beyond the token's own address
        self.assertEqual(set(j), {"result", "token_id", "role", "address", "message", "recipients"}, j)
        self.assertNotIn(sub.marker, json.dumps(j))

    def assert_same_everywhere(self, s, token, j):
        """GET with a header, POST with a JSON body and submitctl --json all
        say the same; the human lines carry the same fields."""
        code, post, _ = self.request(s, "/v1/status", method="POST", body={"token": token})
        self.assertEqual((code, post), (200, j))
        ctl, raw, human = self.ctl_status(s, token)
        self.assertEqual(ctl, j)
        _, _, api_raw = self.request(s, "/v1/status", token)
        self.assertEqual(raw, api_raw, "submitctl --json is not the API's answer byte for byte")
        self.assertEqual(human[:7], ["token_id=%s" % j["token_id"], "role=%s" % j["role"],
                                     "address=%s" % j["address"], "message=%s" % j["message"]["id"],
                                     "received_at=%s" % j["message"]["received_at"],
                                     "size=%d" % j["message"]["size"], "sha256=%s" % j["message"]["sha256"]])
        rlines = human[7:]
        self.assertEqual(len(rlines), len(j["recipients"]), human)
        for line, r in zip(rlines, j["recipients"]):
            fields = line.split("\t")
            kv = dict(f.split("=", 1) for f in fields[:-1])
            self.assertRegex(fields[-1], r"^\(.+\)$", line)
            self.assertEqual(kv.pop("rcpt"), r["address"])
            want = {k: str(v) if not isinstance(v, bool) else ("yes" if v else "no")
                    for k, v in r.items() if k != "address"}
            self.assertEqual(kv, want, line)


class States(StatusCase):
    def test_delivered_failed_deferred_by_role(self):
        ok, gone, later = "bob@example.net", "gone@example.net", "later@example.net"
        hop = self.hop(rcpt_replies={gone: "550 5.1.1 <gone@example.net>: user unknown",
                                     later: "451 4.2.1 mailbox busy"})
        s = self.server(hop.port, SLOW)
        sub = self.submit(s, [ok, gone, later])
        tok = self.tokens_of(sub)
        self.wait_for("states", lambda: [r["state"] for r in self.rows(s, sub.message_id)] ==
                      ["delivered", "failed", "deferred"], lambda: self.table(s))
        self.wait_for("bounce queued", lambda: self.bounces(s), lambda: self.table(s))
        rows = self.rcpt_rows(s, sub)

        j = self.status(s, tok[SENDER])
        self.assert_message(j, s, sub, "sender", SENDER, tok[SENDER])
        want = [
            {"address": ok, "state": "delivered", "attempts": 1, "reply": rows[ok]["last_reply"],
             "delivered_at": api_time(rows[ok]["updated_at"])},
            {"address": gone, "state": "failed", "attempts": 1, "reply": rows[gone]["last_reply"],
             "failed_at": api_time(rows[gone]["updated_at"]), "bounce_sent": True},
            {"address": later, "state": "deferred", "attempts": 1, "reply": rows[later]["last_reply"],
             "last_attempt_at": api_time(rows[later]["updated_at"]),
             "next_attempt_at": api_time(rows[later]["next_attempt_at"])},
        ]
        self.assertEqual(j["recipients"], want)
        self.assertRegex(want[0]["reply"], DELIVERED_RE)
        self.assertIn("550 5.1.1 <gone@example.net>: user unknown", want[1]["reply"])
        self.assertIn("451 4.2.1 mailbox busy", want[2]["reply"])
        self.assertGreater(db_time(rows[later]["next_attempt_at"]), db_time(rows[later]["updated_at"]))
        self.assert_same_everywhere(s, tok[SENDER], j)

        # each recipient token: its own recipient, and no other
        for i, a in enumerate((ok, gone, later)):
            r = self.status(s, tok[a])
            self.assert_message(r, s, sub, "recipient", a, tok[a])
            self.assertEqual(r["recipients"], [want[i]])
            for other in {ok, gone, later} - {a}:
                self.assertNotIn(other, json.dumps(r))
            self.assert_same_everywhere(s, tok[a], r)

        # the administrator drops the deferred one: failed, without a bounce
        s.submitctl("queue", "drop", sub.public_id)
        r = self.status(s, tok[later])["recipients"][0]
        self.assertEqual((r["state"], r["reply"], r["bounce_sent"]), ("failed", "dropped by the administrator", False))
        self.assertNotIn("next_attempt_at", r)
        self.assertEqual(self.status(s, tok[SENDER])["recipients"][1]["bounce_sent"], True)

        # the bounce itself has no tokens; a bounce's recipient that fails
        # gets no bounce (checked by test_relay); here: the human text
        human = self.ctl_status(s, tok[gone])[2]
        self.assertIn("bounce_sent=yes", human[-1])
        self.assertTrue(human[-1].endswith("(failed, will not be tried again)"), human)

    def test_queued_then_deferred_then_delivered(self):
        # The next hop holds the end of data for a while: the recipient is
        # queued until the try ends; the first try gets 451, the second
        # (made due at once with queue retry) 250.
        hop = self.hop(eod_replies=["451 4.3.0 try again later"], eod_delay=6.0)
        s = self.server(hop.port, SLOW)
        sub = self.submit(s, ["bob@example.net"])
        tok = self.tokens_of(sub)

        j = self.status(s, tok[SENDER])
        self.assertEqual(j["recipients"], [{"address": "bob@example.net", "state": "queued", "attempts": 0}],
                         self.table(s))
        self.assert_same_everywhere(s, tok[SENDER], j)

        self.wait_states(s, sub.message_id, "deferred")
        row = self.rows(s, sub.message_id)[0]
        r = self.status(s, tok["bob@example.net"])["recipients"]
        self.assertEqual(r, [{"address": "bob@example.net", "state": "deferred", "attempts": 1,
                              "reply": "451 4.3.0 try again later", "last_attempt_at": api_time(row["updated_at"]),
                              "next_attempt_at": api_time(row["next_attempt_at"])}])

        s.submitctl("queue", "retry", sub.public_id)
        self.wait_states(s, sub.message_id, "delivered")
        row = self.rows(s, sub.message_id)[0]
        j = self.status(s, tok[SENDER])
        self.assertEqual(j["recipients"], [{"address": "bob@example.net", "state": "delivered", "attempts": 2,
                                            "reply": row["last_reply"],
                                            "delivered_at": api_time(row["updated_at"])}])
        self.assertRegex(row["last_reply"], DELIVERED_RE)
        self.assert_same_everywhere(s, tok[SENDER], j)
        human = self.ctl_status(s, tok[SENDER])[2]
        self.assertIn("\tstate=delivered\t", human[-1])
        self.assertIn("\treply=" + row["last_reply"], human[-1])

    def test_not_relayed_without_next_hop(self):
        s = Submitd({"smtp.auth_cleartext_loopback": "true"})
        s.start()
        self.addCleanup(self._finish, s)
        s.add_user(SENDER, "relay test password")
        sub = self.submit(s, ["bob@example.net", "carol@example.net"])
        tok = self.tokens_of(sub)
        self.assertEqual([r["state"] for r in self.rows(s, sub.message_id)], ["queued", "queued"])
        j = self.status(s, tok[SENDER])
        self.assertEqual(j["recipients"], [{"address": a, "state": "not_relayed", "attempts": 0}
                                           for a in ("bob@example.net", "carol@example.net")])
        self.assert_same_everywhere(s, tok[SENDER], j)
        self.assertIn("(not relayed: no next hop is configured)", self.ctl_status(s, tok[SENDER])[2][-1])
        # and with curl, the client the docs show
        if which("curl"):
            p = subprocess.run(["curl", "-sS", "-H", "Submit-Token: " + tok["carol@example.net"],
                                "http://127.0.0.1:%d/v1/status" % s.http_port],
                               capture_output=True, timeout=30, check=True)
            r = json.loads(p.stdout)
            self.assertEqual(r["recipients"], [{"address": "carol@example.net", "state": "not_relayed",
                                                "attempts": 0}])


class Refusals(StatusCase):
    def check_refusal(self, s, token, code, result, address=None):
        """/v1/status refuses as /v1/verify does; so does submitctl."""
        got = self.request(s, "/v1/status", token, address=address)
        ver = self.request(s, "/v1/verify", token, address=address)
        self.assertEqual((got[0], got[1].get("result")), (code, result), got)
        self.assertEqual((ver[0], ver[1].get("result")), (code, result), ver)
        self.assertEqual(got[1], ver[1])
        self.assertNotIn("recipients", got[1])
        if token is not None and address is None:
            p = s.submitctl("message", "status", token, check=False)
            self.assertEqual((p.returncode, p.stdout, p.stderr), (1, "", "result=%s\n" % result))
            p = s.submitctl("message", "status", token, "--json", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertEqual(json.loads(p.stdout), {"result": result})

    def test_refusals_like_verify(self):
        s = Submitd({"smtp.auth_cleartext_loopback": "true"})
        s.start()
        self.addCleanup(self._finish, s)
        s.add_user(SENDER, "relay test password")
        other = Submitd({"smtp.auth_cleartext_loopback": "true", "tokens.lifetime": "2"})
        other.start()
        self.addCleanup(self._finish, other)
        other.add_user(SENDER, "relay test password")

        sub = self.submit(s, ["bob@example.net", "carol@example.net"])
        tok = self.tokens_of(sub)
        old = self.tokens_of(self.submit(other, ["bob@example.net"]))

        self.check_refusal(s, "v4.public.nonsense", 400, "malformed")
        self.check_refusal(s, tok[SENDER] + "x" * 5000, 400, "malformed")
        self.check_refusal(s, flip_signature(tok[SENDER]), 422, "bad_signature")
        self.check_refusal(s, old[SENDER], 404, "unknown_key")
        self.check_refusal(s, tok[SENDER], 409, "wrong_address", address="someone@example.org")
        code, j, _ = self.request(s, "/v1/status")
        self.assertEqual((code, j["result"]), (400, "missing_token"))
        code, j, _ = self.request(s, "/v1/status", method="POST", body=["not", "an", "object"])
        self.assertEqual((code, j["result"]), (400, "bad_request"))
        # the right address is fine
        self.assertEqual(self.status(s, tok[SENDER], address=SENDER)["role"], "sender")

        s.submitctl("token", "revoke", tok["carol@example.net"])
        self.check_refusal(s, tok["carol@example.net"], 403, "revoked")
        # revoking one token leaves the others
        self.assertEqual(len(self.status(s, tok[SENDER])["recipients"]), 2)
        self.assertEqual(len(self.status(s, tok["bob@example.net"])["recipients"]), 1)

        self.wait_for("token expired", lambda: time.time() > db_time(
            other.sql("SELECT expires_at FROM tokens WHERE role = 'sender'")[0]["expires_at"]) + 1,
            lambda: "", timeout=10)
        self.check_refusal(other, old[SENDER], 410, "expired")
        self.check_refusal(other, old["bob@example.net"], 410, "expired")

        # refusals are audited as verifications (audit_log.action)
        rows = self.wait_for("audit rows", lambda: s.sql(
            "SELECT * FROM audit_log WHERE result = 'revoked' AND token_id = '%s'" % jti_of(tok["carol@example.net"])),
            lambda: str(s.sql("SELECT * FROM audit_log")), timeout=10)
        self.assertEqual({r["action"] for r in rows}, {"verify"})
        # a known path with a method it does not take
        code, j, _ = self.request(s, "/v1/status", tok[SENDER], method="DELETE")
        self.assertEqual(code, 405)
        self.assertIn("event=api_status result=revoked", s.log())


if __name__ == "__main__":
    unittest.main()
