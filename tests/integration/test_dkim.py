"""test_dkim.py: DKIM signing (docs/operations.md, "DKIM"), end to end.

A real submitd with keys made by `submitctl dkim generate` relays to the
scripted next hop of nexthop.py, which keeps the exact bytes it got; each
relayed copy is checked by an independent verifier, dkimpy (Debian's
python3-dkim), against the DNS records `submitctl dkim export` printed,
one signature at a time. Checked: the RSA and the Ed25519 signature both
pass; one changed body octet or one changed signed header fails both; a
message from a domain without keys goes unsigned; the stored copy fetched
by token (GET /v1/message) is the client's bytes exactly; a retired key no
longer signs (without a restart); dkim.enabled=false signs nothing; the
/metrics counters; a key that cannot sign leaves the message unsigned.

Needs /usr/bin/python3 with python3-dkim and python3-nacl (dkim_verify.py).
Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_dkim
"""

import json
import os
import re
import subprocess
import unittest
import urllib.request
import uuid

from harness import RawSMTP, Submitd, dot_stuff, free_port, parse_token_reply
from nexthop import ScriptedHop
from test_relay import HELO, PASSWORD, SENDER, RelayCase, relay_options

DOMAIN = "example.org"


def records(export_text):
    """{name: TXT text} from `submitctl dkim export`'s lines, the quoted
    strings of one record joined (RFC 6376 3.6.2.2)."""
    out = {}
    for line in export_text.splitlines():
        m = re.match(r'^(\S+) IN TXT((?: "[^"]*")+)$', line)
        if not m:
            raise AssertionError("export line of unexpected shape: %r" % line)
        strings = re.findall(r'"([^"]*)"', m.group(2))
        for s in strings:
            if len(s.encode()) > 255:
                raise AssertionError("a character-string longer than 255 octets: %r" % line)
        out[m.group(1).lower()] = "".join(strings)
    return out


VERIFIER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dkim_verify.py")


def dkimpy_verdicts(data, recs):
    """dkimpy's verdict on each signature of data, in order (run by the
    system python, which has Debian's python3-dkim: dkim_verify.py)."""
    p = subprocess.run(["/usr/bin/python3", VERIFIER], input=json.dumps({"message": data.hex(), "records": recs}),
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("dkim_verify.py failed: %s" % p.stderr)
    return json.loads(p.stdout)


def signatures(data):
    """The DKIM-Signature fields of a message, unfolded, as {tag: value}."""
    head = data.split(b"\r\n\r\n", 1)[0]
    fields = re.findall(rb"(?im)^DKIM-Signature:((?:[^\r\n]*)(?:\r\n[ \t][^\r\n]*)*)", head)
    out = []
    for f in fields:
        text = re.sub(rb"\s+", b"", f).decode()
        out.append(dict(t.split("=", 1) for t in text.split(";") if t))
    return out


def strip_received(data):
    """The relayed copy without our Received: field (first, folded)."""
    m = re.match(rb"^Received:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", data)
    assert m, data[:200]
    return data[m.end():]


class DkimCase(RelayCase):
    @classmethod
    def setUpClass(cls):
        cls.hop_ = ScriptedHop().start()
        cls.http_port = free_port()
        cls.srv = Submitd(relay_options(cls.hop_.port, {"http.listen": "127.0.0.1:%d" % cls.http_port}))
        # libopendkim's Ed25519 leak is suppressed by its frame
        # (tests/lsan.supp); OpenSSL has no frame pointers, so only the
        # slow unwinder reaches that frame from OpenSSL's allocations.
        cls.srv.env["ASAN_OPTIONS"] = "fast_unwind_on_malloc=0"
        cls.srv.start()
        cls.srv.add_user(SENDER, PASSWORD, addresses=["bob@nokeys.test"])
        cls.srv.submitctl("dkim", "generate", DOMAIN)
        cls.srv.submitctl("dkim", "generate", DOMAIN, "--algorithm", "ed25519")
        cls.recs = records(cls.srv.submitctl("dkim", "export", DOMAIN).stdout)
        cls.secret = cls.srv.submitctl("service", "add", "dkimtest").stdout.strip()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.stop(check=True)
        finally:
            cls.srv.cleanup()
            cls.hop_.stop()

    def send(self, body, sender=SENDER, rcpts=("rcpt@dest.test",), srv=None):
        srv = srv or self.srv
        with RawSMTP(srv.port, timeout=30) as c:
            c.ehlo(HELO)
            self.assertEqual(c.auth_plain(SENDER, PASSWORD).code, 235)
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender).code, 250)
            for a in rcpts:
                self.assertEqual(c.cmd("RCPT TO:<%s>" % a).code, 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(dot_stuff(body))
            return parse_token_reply(c.reply())

    def relayed(self, marker, hop=None):
        hop = hop or self.hop_
        found = self.wait_for("message %s at the next hop" % marker,
                              lambda: [t for t in hop.messages() if marker.encode() in t.data],
                              lambda: self.table(self.srv))
        self.assertEqual(len(found), 1)
        return found[0].data

    @staticmethod
    def body(marker, frm="Alice <alice@example.org>"):
        return ("From: %s\r\n"
                "To: Rcpt <rcpt@dest.test>\r\n"
                "Subject: dkim %s\r\n"
                "Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
                "Message-ID: <%s@example.org>\r\n"
                "MIME-Version: 1.0\r\n"
                "\r\n"
                "Hello,\r\n"
                "\r\n"
                "  a line with   spaces \r\n"
                ".a line that starts with a dot\r\n" % (frm, marker, marker)).encode()

    def verify_each(self, data):
        """dkimpy's verdict on each signature, in order."""
        verdicts = dkimpy_verdicts(data, self.recs)
        self.assertEqual(len(verdicts), len(signatures(data)))
        return verdicts


class TestDkim(DkimCase):
    def test_export_records(self):
        self.assertEqual(len(self.recs), 2, self.recs)
        kinds = sorted(re.search(r"k=(\w+)", v).group(1) for v in self.recs.values())
        self.assertEqual(kinds, ["ed25519", "rsa"])
        for name, text in self.recs.items():
            self.assertTrue(name.endswith("._domainkey.example.org."), name)
            self.assertTrue(text.startswith("v=DKIM1; k="), text)
        # the RSA record is longer than one character-string: split
        out = self.srv.submitctl("dkim", "export", DOMAIN).stdout
        rsa = [ln for ln in out.splitlines() if "k=rsa" in ln][0]
        self.assertGreater(rsa.count('"'), 2, rsa)

    def test_both_signatures_pass(self):
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker))
        data = self.relayed(marker)
        sigs = signatures(data)
        self.assertEqual(sorted(s["a"] for s in sigs), ["ed25519-sha256", "rsa-sha256"])
        for s in sigs:
            self.assertEqual(s["c"], "relaxed/relaxed")
            self.assertEqual(s["d"], DOMAIN)
            h = [x.lower() for x in s["h"].split(":")]
            for name in ("from", "subject", "date", "to", "message-id"):
                self.assertEqual(h.count(name), 2, "%s not oversigned: %s" % (name, s["h"]))
            self.assertEqual(h.count("cc"), 1, s["h"])    # absent: signed once, as absent
        self.assertEqual(self.verify_each(data), [True, True])
        self.assertTrue(data.endswith(b".a line that starts with a dot\r\n"))

    def test_changed_body_or_header_fails(self):
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker))
        data = self.relayed(marker)
        self.assertEqual(self.verify_each(data), [True, True])
        bad_body = data.replace(b"a line with", b"a line wITh", 1)
        self.assertNotEqual(bad_body, data)
        self.assertEqual(self.verify_each(bad_body), [False, False])
        bad_subject = data.replace(b"Subject: dkim", b"Subject: dKim", 1)
        self.assertNotEqual(bad_subject, data)
        self.assertEqual(self.verify_each(bad_subject), [False, False])
        # a second From: added above the signed one (oversigned)
        extra = data.replace(b"From: Alice", b"From: Mallory <m@evil.test>\r\nFrom: Alice", 1)
        self.assertEqual(self.verify_each(extra), [False, False])

    def test_large_spooled_message(self):
        """A body past smtp.body_memory is spooled to a file: the signer
        reads it from there, in pieces, beside the writer."""
        marker = "m" + uuid.uuid4().hex
        lines = b"".join(b"line %06d of a large message, to be signed whole\r\n" % i for i in range(12000))
        body = self.body(marker) + lines
        self.assertGreater(len(body), 512 * 1024)
        self.send(body)
        data = self.relayed(marker)
        self.assertTrue(data.endswith(lines))
        self.assertEqual(sorted(s["a"] for s in signatures(data)), ["ed25519-sha256", "rsa-sha256"])
        self.assertEqual(self.verify_each(data), [True, True])

    def test_domain_without_keys_unsigned(self):
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker, frm="Bob <bob@nokeys.test>"), sender="bob@nokeys.test")
        data = self.relayed(marker)
        self.assertEqual(signatures(data), [])
        self.assertNotIn(b"DKIM-Signature", data)

    def test_stored_copy_is_client_bytes(self):
        marker = "m" + uuid.uuid4().hex
        body = self.body(marker)
        tokens = self.send(body)
        data = self.relayed(marker)
        self.assertEqual(len(signatures(data)), 2)
        tok = [t.token for t in tokens if t.address == SENDER][0]
        req = urllib.request.Request("http://127.0.0.1:%d/v1/message" % self.http_port,
                                     headers={"Submit-Token": tok, "Authorization": "Bearer " + self.secret})
        with urllib.request.urlopen(req, timeout=30) as r:
            self.assertEqual(r.status, 200)
            fetched = r.read()
        self.assertEqual(fetched, body)
        row = self.srv.message_with_marker(marker)
        self.assertEqual(self.srv.body(row["message_id"]), body)
        # and the relayed copy is our trace, the signatures, then those bytes
        rest = strip_received(data)
        self.assertTrue(rest.endswith(body), rest[:400])
        self.assertTrue(rest.startswith(b"DKIM-Signature: "), rest[:100])
        stored = self.srv.sql("SELECT headers FROM message_dkim WHERE message_id = %d" % row["message_id"])
        self.assertEqual(len(stored), 1)
        self.assertEqual(rest[:-len(body)], stored[0]["headers"].encode())

    def test_metrics(self):
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker))
        self.relayed(marker)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.http_port)
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
        m = re.search(r"^submitd_dkim_signed_total (\d+)$", text, re.M)
        self.assertIsNotNone(m, text)
        self.assertGreaterEqual(int(m.group(1)), 1)
        self.assertRegex(text, r"(?m)^submitd_dkim_failed_total 0$")


class TestDkimKeys(DkimCase):
    """Keys change under a running server: generate, retire; and the switch."""

    def test_retired_key_no_longer_signs(self):
        listed = self.srv.submitctl("dkim", "list").stdout
        rsa_sel = re.search(r"^example\.org\s+(\S+)\s+rsa-sha256\s+active", listed, re.M).group(1)
        self.srv.submitctl("dkim", "retire", DOMAIN, rsa_sel)
        self.assertRegex(self.srv.submitctl("dkim", "list").stdout,
                         r"(?m)^example\.org\s+%s\s+rsa-sha256\s+retired" % re.escape(rsa_sel))
        p = self.srv.submitctl("dkim", "retire", DOMAIN, rsa_sel, check=False)
        self.assertNotEqual(p.returncode, 0)
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker))
        data = self.relayed(marker)
        sigs = signatures(data)
        self.assertEqual([s["a"] for s in sigs], ["ed25519-sha256"])
        self.assertEqual(self.verify_each(data), [True])
        out = self.srv.submitctl("dkim", "export", DOMAIN).stdout
        self.assertNotIn("k=rsa", out)
        # a key generated while the server runs signs from the next message
        self.srv.submitctl("dkim", "generate", DOMAIN, "--selector", "fresh")
        type(self).recs = records(self.srv.submitctl("dkim", "export", DOMAIN).stdout)
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker))
        data = self.relayed(marker)
        self.assertEqual(sorted(s["s"] for s in signatures(data)), sorted(["fresh", [
            s for s in self.recs if "ed25519" in s][0].split(".")[0]]))
        self.assertEqual(self.verify_each(data), [True, True])

    def test_generate_refuses(self):
        p = self.srv.submitctl("dkim", "generate", "bad domain", check=False)
        self.assertNotEqual(p.returncode, 0)
        p = self.srv.submitctl("dkim", "generate", DOMAIN, "--algorithm", "dsa", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.srv.submitctl("dkim", "generate", "other.test", "--selector", "s1")
        p = self.srv.submitctl("dkim", "generate", "other.test", "--selector", "s1", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("exists", p.stderr)
        p = self.srv.submitctl("dkim", "export", "none.test", check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_failed_signing_relays_unsigned(self):
        """A key libopendkim cannot read (put there behind submitctl's
        back): the message is accepted and relayed unsigned, logged and
        counted."""
        self.srv.sql("INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, state, "
                     "created_at) VALUES ('broken.test', 'bad', 'rsa-sha256', "
                     "'-----BEGIN PRIVATE KEY-----' || char(10) || 'AAAA' || char(10) || "
                     "'-----END PRIVATE KEY-----' || char(10), 'AAAA', 'active', '2026-12-02 00:00:00.000')")
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker, frm="X <x@broken.test>"))
        data = self.relayed(marker)
        self.assertEqual(signatures(data), [])
        self.assertRegex(self.srv.log(), r"event=dkim_sign_failed msgid=\S+ domain=broken\.test")
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.http_port, timeout=30) as r:
            text = r.read().decode()
        self.assertRegex(text, r"(?m)^submitd_dkim_failed_total 1$")

    def test_first_key_signs_the_next_message(self):
        """Without any active key the writer does not hand messages to the
        signing workers (one look per batch); the key generated next signs
        the very next message, and retiring it stops that again."""
        hop = self.hop()
        s = self.server(hop.port, {"dkim.enabled": "true"})
        for _ in range(2):
            marker = "m" + uuid.uuid4().hex
            self.send(self.body(marker), srv=s)
            self.assertEqual(signatures(self.relayed(marker, hop=hop)), [])
        s.submitctl("dkim", "generate", DOMAIN, "--algorithm", "ed25519", "--selector", "first")
        recs = records(s.submitctl("dkim", "export", DOMAIN).stdout)
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker), srv=s)
        data = self.relayed(marker, hop=hop)
        self.assertEqual([x["s"] for x in signatures(data)], ["first"])
        self.assertEqual(dkimpy_verdicts(data, recs), [True])
        s.submitctl("dkim", "retire", DOMAIN, "first")
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker), srv=s)
        self.assertEqual(signatures(self.relayed(marker, hop=hop)), [])
        self.assertEqual(s.sql("SELECT count(*) AS n FROM message_dkim")[0]["n"], 1)

    def test_disabled_signs_nothing(self):
        hop = self.hop()
        s = self.server(hop.port, {"dkim.enabled": "false"})
        s.submitctl("dkim", "generate", DOMAIN, "--algorithm", "ed25519")
        marker = "m" + uuid.uuid4().hex
        self.send(self.body(marker), srv=s)
        data = self.relayed(marker, hop=hop)
        self.assertEqual(signatures(data), [])
        self.assertEqual(s.sql("SELECT count(*) AS n FROM message_dkim")[0]["n"], 0)


if __name__ == "__main__":
    unittest.main()
