"""test_cluster_haproxy.py: three submitd nodes behind a real HAProxy
(docs/cluster.md), the tests of issue 17 end to end.

Three nodes (issuers node1, node2, node3, peers to each other, one cluster
credential, smtp.proxy_networks = 127.0.0.1, one scripted next hop for
all) sit behind one HAProxy in TCP mode with send-proxy-v2 and SMTP health
checks: a `balance roundrobin` backend for 587 and for 465, so that a
series of connections reaches every node, and a `balance source` backend
for 587, the production setting, so that a client's retry reaches the node
that has its first attempt. The tests check:
- submissions through HAProxy reach all three nodes; every token verifies
  at node 1 (POST /v1/verify with a service credential imported on every
  node); every sender token fetches the byte-identical copy through node 1
  (curl -L --location-trusted follows the 307); /v1/keys of every node
  lists every node's keys;
- node 3 killed (SIGKILL): once HAProxy marks it DOWN, submissions go on
  and all succeed; its tokens are issuer_unavailable (503) at node 1,
  never valid; started again (same data, same ports) and UP: valid again;
- clients on 127.0.0.2 and 127.0.0.3 through HAProxy: the node logs and
  stores the client's address and throttles it
  (limits.ip_messages_per_hour), never HAProxy's 127.0.0.1;
- a resubmission through the `balance source` backend (smtplib, then
  swaks with the same bytes): 250 twice, one row, one relay; a new
  Message-ID is stored again.
Clients: smtplib (source_address), swaks (--local-interface), curl.
Every source address is used by one test only, so that the per-address
limit of one test never refuses another's message.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_cluster_haproxy
"""

import json
import os
import re
import smtplib
import subprocess
import unittest
import uuid

import cluster
import harness
import haproxy
from cluster import curl
from harness import TIMEOUT_SCALE, b64url_decode, client_tls_context, jti_of, which
from nexthop import ScriptedHop

ALICE = "alice@example.org"
PASSWORD = "cluster haproxy pass 3"
RCPT = "bob@example.net"
IP_LIMIT = 3            # limits.ip_messages_per_hour on every node
WAIT = 30.0 * TIMEOUT_SCALE
TOKEN_RE = re.compile(rb"v4\.public\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?")

NODES = []
HOP = None
HP = None
SERVICE = None          # a verifier's credential, the same at every node
FE = {}                 # frontend name -> HAProxy port
_next_source = [10]


def fresh_source():
    """A loopback address no other submission used (127.0.1.N)."""
    _next_source[0] += 1
    return "127.0.1.%d" % _next_source[0]


def wait_for(what, check):
    return harness.wait_for(what, check, WAIT)


def iss_of(token):
    raw = b64url_decode(token.split(".")[2])
    return json.loads(raw[:-64])["iss"]


def node(name):
    return next(n for n in NODES if n.name == name)


def make_body(marker, msgid=None):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: ha %s\r\nMessage-ID: <%s@client.test>\r\n"
            "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\nbody of %s\r\n"
            % (ALICE, RCPT, marker, msgid or marker, marker)).encode()


def submit(port, source, body=None, tls=False):
    """One message through HAProxy (or a node) from source with smtplib:
    (code, reply text bytes, {address: token}, body)."""
    body = body or make_body("ha-" + uuid.uuid4().hex)
    if tls:
        s = smtplib.SMTP_SSL("127.0.0.1", port, context=client_tls_context(), source_address=(source, 0),
                             timeout=60, local_hostname="client.test")
    else:
        s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=60, local_hostname="client.test")
    try:
        s.login(ALICE, PASSWORD)
        code, text = s.mail(ALICE)
        if code != 250:
            s.quit()
            return code, text, {}, body
        code, text = s.rcpt(RCPT)
        assert code == 250, (code, text)
        code, text = s.data(body)
        s.quit()
    finally:
        s.close()
    tokens = {}
    if code == 250:
        found = [t.decode() for t in TOKEN_RE.findall(text)]
        assert len(found) == 2, text
        tokens = {RCPT: found[0], ALICE: found[1]}
    return code, text, tokens, body


def api_url(n, path):
    return "http://127.0.0.1:%d%s" % (n.http_port, path)


def verify(n, token, address):
    return curl(api_url(n, "/v1/verify"), headers=["Authorization: Bearer " + SERVICE,
                                                   "Content-Type: application/json"],
                data=json.dumps({"token": token, "address": address}))


def fetch(n, token):
    return curl(api_url(n, "/v1/message"), headers=["Authorization: Bearer " + SERVICE, "Submit-Token: " + token],
                follow=True)


def keys_at(n):
    r = curl(api_url(n, "/v1/keys"), headers=["Authorization: Bearer " + SERVICE])
    if r.status != 200:
        raise AssertionError("/v1/keys at %s: %r" % (n.name, r))
    return r.json()["keys"]


def rows_with(n, marker):
    return n.sql("SELECT m.* FROM messages m JOIN bodies b USING (body_id) WHERE instr(b.content, X'%s') > 0"
                 % marker.encode().hex())


def hop_count(marker):
    return sum(1 for m in HOP.messages() if marker.encode() in m.data)


def setUpModule():
    global HOP, HP, SERVICE
    if not haproxy.available():
        raise unittest.SkipTest("haproxy is not installed")
    for tool in ("curl", "swaks", "sqlite3"):
        if which(tool) is None:
            raise AssertionError("%s is not installed: run scripts/deps test" % tool)
    HOP = ScriptedHop().start()
    unittest.addModuleCleanup(HOP.stop)
    nodes, SERVICE = cluster.make_nodes({
        "smtp.proxy_networks": "127.0.0.1",
        "smtp.auth_cleartext_loopback": "true",
        "relay.host": "127.0.0.1", "relay.port": str(HOP.port), "relay.tls": "none",
        "relay.poll_interval": "1",
        "limits.ip_messages_per_hour": str(IP_LIMIT),
    }, "verifier")
    for n in nodes:
        unittest.addModuleCleanup(n.cleanup)
    for n in nodes:
        n.start()
        NODES.append(n)
        n.add_user(ALICE, PASSWORD)
    HP = haproxy.HAProxy()
    unittest.addModuleCleanup(HP.stop)
    plain = [(n.name, "127.0.0.1", n.port) for n in NODES]
    tls = [(n.name, "127.0.0.1", n.tls_port) for n in NODES]
    FE["rr"] = HP.frontend(HP.backend("rr", plain, send_proxy="v2", check=True, smtpchk=True))
    FE["rr_tls"] = HP.frontend(HP.backend("rr_tls", tls, send_proxy="v2", check=True))
    FE["src"] = HP.frontend(HP.backend("src", plain, send_proxy="v2", check=True, smtpchk=True, balance="source"))
    HP.start()
    for backend in ("rr", "rr_tls", "src"):
        for n in NODES:
            HP.wait_state(backend, n.name, "UP")
    for n in NODES:
        wait_for("%s knows every node's keys" % n.name,
                 lambda n=n: {k["node"] for k in keys_at(n)} == {"node1", "node2", "node3"})


def tearDownModule():
    HP.stop()
    # exit status 0 after SIGTERM: a sanitizer report fails here
    failures = []
    for n in NODES:
        try:
            n.stop(check=True)
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        raise AssertionError("\n".join(failures))


class ClusterBehindHAProxy(unittest.TestCase):
    def test_a_every_node_takes_messages_and_node1_answers_for_all(self):
        before = {n.name: n.message_count() for n in NODES}
        sent = []
        for i in range(6):
            code, text, tokens, body = submit(FE["rr"], fresh_source())
            self.assertEqual(code, 250, text)
            sent.append((tokens, body))
        code, text, tokens, body = submit(FE["rr_tls"], fresh_source(), tls=True)
        self.assertEqual(code, 250, text)
        sent.append((tokens, body))
        issuers = {iss_of(t[ALICE]) for t, _ in sent}
        self.assertEqual(issuers, {"node1", "node2", "node3"})
        for n in NODES:
            self.assertGreater(n.message_count(), before[n.name], n.name)
        for tokens, body in sent:
            issuer = iss_of(tokens[ALICE])
            for addr, t in tokens.items():
                r = verify(NODES[0], t, addr)
                self.assertEqual(r.status, 200, (issuer, r))
                self.assertEqual(r.json()["result"], "valid")
                self.assertEqual(r.json()["issuer"], issuer)
                self.assertEqual(r.json()["token_id"], jti_of(t))
            # the copy, from its node through node 1's referral
            r = fetch(NODES[0], tokens[ALICE])
            self.assertEqual(r.status, 200, (issuer, r))
            self.assertEqual(r.body, body)
            # stored at the issuer only, with the client's address
            marker = re.search(rb"Subject: ha (\S+)", body).group(1).decode()
            for n in NODES:
                rows = rows_with(n, marker)
                self.assertEqual(len(rows), 1 if n.name == issuer else 0, (n.name, issuer))
                if rows:
                    self.assertRegex(rows[0]["client_address"], r"^127\.0\.1\.\d+$")

    def test_b_keys_of_every_node_everywhere(self):
        local = {}
        for n in NODES:
            r = curl(api_url(n, "/v1/keys?local=1"), headers=["Authorization: Bearer " + SERVICE])
            self.assertEqual(r.status, 200, r)
            local[n.name] = {k["key_id"] for k in r.json()["keys"]}
        for n in NODES:
            by_node = {}
            for k in keys_at(n):
                by_node.setdefault(k["node"], set()).add(k["key_id"])
            self.assertEqual(set(by_node), {"node1", "node2", "node3"})
            for name, kids in local.items():
                self.assertTrue(kids <= by_node[name], (n.name, name))

    def test_c_client_address_logged_stored_throttled(self):
        """127.0.0.2 through the `balance source` backend: always the same
        node, which sees 127.0.0.2, not HAProxy's 127.0.0.1."""
        marks = {n.name: len(n.log()) for n in NODES}
        for i in range(IP_LIMIT):
            code, text, _, _ = submit(FE["src"], "127.0.0.2")
            self.assertEqual(code, 250, text)
        code, text, _, _ = submit(FE["src"], "127.0.0.2")
        self.assertEqual(code, 450, text)
        self.assertIn(b"limits.ip_messages", text)
        # another client through the same HAProxy is not throttled
        code, text, _, _ = submit(FE["src"], "127.0.0.3")
        self.assertEqual(code, 250, text)
        took = [n for n in NODES if n.sql("SELECT 1 FROM messages WHERE client_address = '127.0.0.2'")]
        self.assertEqual(len(took), 1, "127.0.0.2 reached more than one node through `balance source`")
        n = took[0]
        self.assertEqual(n.sql("SELECT count(*) AS c FROM messages WHERE client_address = '127.0.0.2'")[0]["c"],
                         IP_LIMIT)
        log = n.log()[marks[n.name]:]
        self.assertRegex(log, r"event=connect session=\S+ ip=127\.0\.0\.2 proxy=127\.0\.0\.1")
        self.assertRegex(log, r"event=limit_reached session=\S+ user=\S+ ip=127\.0\.0\.2 limit=ip_messages")
        for m in NODES:
            # HAProxy's address is never a client's: not stored, not throttled
            self.assertEqual(m.sql("SELECT count(*) AS c FROM messages WHERE client_address = '127.0.0.1'")[0]["c"],
                             0, m.name)
            self.assertNotRegex(m.log(), r"event=limit_reached[^\n]* ip=127\.0\.0\.1 ")

    def test_d_resubmission_through_balance_source(self):
        """The same bytes and envelope twice from 127.0.0.4 (smtplib, then
        swaks): both reach the same node, 250 twice, one row, one relay."""
        marker = "dup-" + uuid.uuid4().hex
        body = make_body(marker)
        code, text, first, _ = submit(FE["src"], "127.0.0.4", body=body)
        self.assertEqual(code, 250, text)
        path = os.path.join(NODES[0].tmp, marker + ".eml")
        with open(path, "wb") as f:
            f.write(body[:-2])   # swaks adds CRLF "." CRLF
        p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(FE["src"]),
                            "--local-interface", "127.0.0.4", "--helo", "client.test",
                            "--from", ALICE, "--to", RCPT, "--auth", "PLAIN", "--auth-user", ALICE,
                            "--auth-password", PASSWORD, "--data", "@" + path, "--timeout", "30"],
                           capture_output=True, timeout=120)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertRegex(out, r"<-\s+250 2\.1\.13 <%s> v4\.public\.\S+ Saved" % re.escape(ALICE))
        second = TOKEN_RE.findall(p.stdout)
        self.assertEqual(len(second), 2, out)
        second = [t.decode() for t in second]
        issuer = iss_of(first[ALICE])
        self.assertEqual({iss_of(t) for t in second}, {issuer})
        n = node(issuer)
        rows = rows_with(n, marker)
        self.assertEqual(len(rows), 1)
        for m in NODES:
            if m is not n:
                self.assertEqual(rows_with(m, marker), [], m.name)
        self.assertRegex(n.log(), r"event=duplicate session=\S+ msgid=\S+ original=%s " % rows[0]["public_id"])
        self.assertEqual(rows[0]["client_address"], "127.0.0.4")
        # the second tokens verify and fetch the one copy
        r = verify(NODES[0], second[0], RCPT)
        self.assertEqual(r.status, 200, r)
        r = fetch(NODES[0], second[1])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body)
        # a new Message-ID is a new message, stored and relayed again
        other = make_body(marker, msgid=marker + "-again")
        code, text, _, _ = submit(FE["src"], "127.0.0.4", body=other)
        self.assertEqual(code, 250, text)
        self.assertEqual(len(rows_with(n, marker)), 2)
        # one relay of the duplicated message: the relay takes rows in order
        # of storage, so once the later message is at the next hop the
        # earlier one was relayed as often as it ever will be
        wait_for("the new Message-ID relayed", lambda: sum(1 for m in HOP.messages()
                                                          if b"Message-ID: <%s-again@" % marker.encode() in m.data))
        self.assertEqual(hop_count("Message-ID: <%s@client.test>" % marker), 1)

    def test_z_node_killed_and_back(self):
        n3 = node("node3")
        tokens = None
        for i in range(3):
            code, text, t, _ = submit(FE["rr"], fresh_source())
            self.assertEqual(code, 250, text)
            if iss_of(t[ALICE]) == "node3":
                tokens = t
        self.assertIsNotNone(tokens, "roundrobin: three connections, none to node3")
        n3.proc.kill()
        n3.proc.wait()
        n3.proc = None
        n3.log_file.close()
        HP.wait_state("rr", "node3", "DOWN")
        HP.wait_state("rr_tls", "node3", "DOWN")
        for i in range(6):
            code, text, t, _ = submit(FE["rr"], fresh_source())
            self.assertEqual(code, 250, text)
            self.assertIn(iss_of(t[ALICE]), ("node1", "node2"))
        code, text, t, _ = submit(FE["rr_tls"], fresh_source(), tls=True)
        self.assertEqual(code, 250, text)
        for addr, t in tokens.items():
            r = verify(NODES[0], t, addr)
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["result"], "issuer_unavailable")
            self.assertEqual(r.json()["node"], "node3")
        # back with the same data and ports
        n3.start()
        HP.wait_state("rr", "node3", "UP")
        wait_for("node3's tokens valid again at node1",
                 lambda: verify(NODES[0], tokens[RCPT], RCPT).status == 200)
        for addr, t in tokens.items():
            r = verify(NODES[0], t, addr)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["result"], "valid")
        # and it takes messages through HAProxy again
        issuers = set()
        for i in range(3):
            code, text, t, _ = submit(FE["rr"], fresh_source())
            self.assertEqual(code, 250, text)
            issuers.add(iss_of(t[ALICE]))
        self.assertIn("node3", issuers)


if __name__ == "__main__":
    unittest.main()
