"""test_cluster.py: three submitd nodes as one cluster (docs/cluster.md).

Each node is a real submitd with its own data directory and database, its
token issuer node1, node2 or node3, and cluster.peers naming the other two
by their API. Messages go to each node directly over SMTP (smtplib); the
tokens are then checked at node 1: verified there for every node (the
signature with the peer's key, the record asked of the issuer), fetched
through the 307 referral with curl -L, refused as issuer_unavailable when
the issuer is stopped, and valid again when it is back. The API of every
node requires the credentials (http.auth_verify, http.auth_keys), so the
nodes talk to each other with the cluster credential, made at node 1 and
imported at the others with `submitctl service import`.

Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_cluster
"""

import json
import re
import signal
import smtplib
import subprocess
import unittest
import uuid

import cluster
import harness
from cluster import curl
from harness import Submitd, jti_of, kid_of, which

SENDER = "sender@example.org"
RCPT = "alice@example.net"
SECRET_RE = re.compile(r"^sd_[A-Za-z0-9_-]{43}$")
WAIT = 30.0            # how long a test waits for something that must happen

NODES = []             # node1, node2, node3
SERVICE = None         # a verifier's credential, the same at every node


def node_url(n, path):
    return "http://127.0.0.1:%d%s" % (n.http_port, path)


def auth(secret=None):
    return "Authorization: Bearer " + (secret or SERVICE)


def submit(n, rcpts=(RCPT,)):
    """One message to node n; returns ({address: token}, body bytes)."""
    marker = "m" + uuid.uuid4().hex
    body = ("From: <%s>\r\nTo: <%s>\r\nSubject: cluster %s\r\nMessage-ID: <%s@example.org>\r\n\r\n"
            "marker %s at %s\r\n" % (SENDER, rcpts[0], marker, marker, marker, n.name)).encode()
    with smtplib.SMTP("127.0.0.1", n.port, timeout=60) as s:
        s.ehlo("client.test")
        s.mail(SENDER)
        for r in rcpts:
            s.rcpt(r)
        code, text = s.data(body)
    if code != 250:
        raise AssertionError("DATA at %s: %d %r" % (n.name, code, text))
    tokens = re.findall(rb"(v4\.public\.[A-Za-z0-9_.-]+)", text)
    if len(tokens) != len(rcpts) + 1:
        raise AssertionError("expected %d tokens from %s, got %r" % (len(rcpts) + 1, n.name, text))
    out = dict(zip(list(rcpts) + [SENDER], [t.decode() for t in tokens]))
    return out, body


def verify(n, token, address=None):
    data = {"token": token}
    if address:
        data["address"] = address
    return curl(node_url(n, "/v1/verify"), headers=[auth(), "Content-Type: application/json"], data=json.dumps(data))


def keys_at(n, local=False):
    r = curl(node_url(n, "/v1/keys" + ("?local=1" if local else "")), headers=[auth()])
    if r.status != 200:
        raise AssertionError("/v1/keys at %s: %r" % (n.name, r))
    return r.json()["keys"]


def tcp_sockets(port):
    """The loopback TCP connections to port: those closed and in TIME_WAIT
    (either side), and those open (ESTABLISHED) towards it, as sets of
    (local port, remote port)."""
    res = {"time_wait": set(), "client_open": set()}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            local, remote, state = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16), f[3]
            if state == "06" and port in (local, remote):
                res["time_wait"].add((local, remote))
            elif state == "01" and remote == port:
                res["client_open"].add((local, remote))
    return res


def wait_for(what, check):
    return harness.wait_for(what, check, WAIT)


def setUpModule():
    global SERVICE
    if which("curl") is None:
        raise AssertionError("curl is not installed")
    nodes, SERVICE = cluster.make_nodes({"smtp.trusted_networks": "127.0.0.0/8"}, "webmail")
    assert SECRET_RE.match(SERVICE), SERVICE
    try:
        for n in nodes:
            n.start()
            NODES.append(n)
    except BaseException:
        for n in nodes:
            n.cleanup()
        raise
    # every node knows the others' keys
    for n in NODES:
        wait_for("%s knows every node's keys" % n.name,
                 lambda n=n: {k["node"] for k in keys_at(n)} == {"node1", "node2", "node3"})


def tearDownModule():
    for n in NODES:
        n.__exit__(None, None, None)


class Cluster(unittest.TestCase):
    def test_keys_list_every_node(self):
        local = {n.name: {k["key_id"] for k in keys_at(n, local=True)} for n in NODES}
        for n in NODES:
            self.assertEqual({k["node"] for k in keys_at(n, local=True)}, {n.name})
            for k in keys_at(n, local=True):
                # the existing fields stay
                for f in ("key_id", "public_key", "public_key_hex", "state", "created_at", "retired_at"):
                    self.assertIn(f, k)
        for n in NODES:
            by_node = {}
            for k in keys_at(n):
                by_node.setdefault(k["node"], set()).add(k["key_id"])
            for m in NODES:
                self.assertTrue(local[m.name] <= by_node[m.name], (n.name, m.name, by_node))
        rows = NODES[0].sql("SELECT node, key_id, state, first_seen, last_seen FROM peer_keys")
        self.assertEqual({r["node"] for r in rows}, {"node2", "node3"})

    def test_verify_and_fetch_at_node1(self):
        for n in NODES:
            tokens, body = submit(n)
            for addr, t in tokens.items():
                r = verify(NODES[0], t, addr)
                self.assertEqual(r.status, 200, (n.name, r))
                j = r.json()
                self.assertEqual(j["result"], "valid")
                self.assertEqual(j["issuer"], n.name)
                self.assertEqual(j["token_id"], jti_of(t))
                # GET with headers works the same
                r = curl(node_url(NODES[0], "/v1/verify"), headers=[auth(), "Submit-Token: " + t])
                self.assertEqual(r.status, 200, r)
                # a wrong address is refused at node 1 (the binding is local)
                r = verify(NODES[0], t, "mallory@example.com")
                self.assertEqual(r.status, 409, r)
                self.assertEqual(r.json()["result"], "wrong_address")
            sender = tokens[SENDER]
            # without -L: the referral
            r = curl(node_url(NODES[0], "/v1/message"), headers=[auth(), "Submit-Token: " + sender])
            if n is NODES[0]:
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, body)
                continue
            self.assertEqual(r.status, 307, r)
            self.assertEqual(r.header("Location"), node_url(n, "/v1/message"))
            self.assertEqual(r.json()["node"], n.name)
            self.assertEqual(r.json()["result"], "referral")
            # with -L: the byte-identical copy from its node
            r = curl(node_url(NODES[0], "/v1/message"), headers=[auth(), "Submit-Token: " + sender], follow=True)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, body)
            # status is referred too, query kept
            r = curl(node_url(NODES[0], "/v1/status?x=1"), headers=[auth(), "Submit-Token: " + sender])
            self.assertEqual(r.status, 307, r)
            self.assertEqual(r.header("Location"), node_url(n, "/v1/status?x=1"))
        wait_for("node1 audits the referrals", lambda: len(NODES[0].sql(
            "SELECT result FROM audit_log WHERE action = 'fetch' AND result = 'referred'")) >= 2)

    def test_keep_alive_to_issuer(self):
        """Node 1 asks node 2 over connections it keeps open
        (cluster.peer_connections): 20 verifications one after another
        leave almost no closed connections to node 2's port behind
        (TIME_WAIT, kept by the side that closed), and at least one open
        from node 1 to it."""
        n2 = NODES[1]
        tokens, _ = submit(n2)
        t = tokens[RCPT]
        self.assertEqual(verify(NODES[0], t, RCPT).status, 200)
        before = tcp_sockets(n2.http_port)
        for _ in range(20):
            r = verify(NODES[0], t, RCPT)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["result"], "valid")
        after = tcp_sockets(n2.http_port)
        # the keys' refreshes (every second, from node 1 and node 3) still
        # close theirs: a few, not one per verification (20 and more with
        # cluster.peer_connections = 0)
        self.assertLess(len(after["time_wait"] - before["time_wait"]), 10, (before, after))
        self.assertGreaterEqual(len(after["client_open"]), 1, after)

    def test_service_credential_at_every_node(self):
        tokens, body = submit(NODES[2])
        for n in NODES:
            r = curl(node_url(n, "/v1/message"), headers=[auth(), "Submit-Token: " + tokens[SENDER]], follow=True)
            self.assertEqual(r.status, 200, (n.name, r))
            self.assertEqual(r.body, body)
        # import refuses what is not a secret of the form `add` prints
        for bad in ("nope", SERVICE + "x", "sd_" + "!" * 43, ""):
            p = NODES[1].submitctl("service", "import", "bad", input=bad + "\n", check=False)
            self.assertNotEqual(p.returncode, 0, bad)
        self.assertNotIn("bad", NODES[1].submitctl("service", "list").stdout)
        # an unknown credential is refused before any referral
        r = curl(node_url(NODES[0], "/v1/message"), headers=[auth("sd_" + "A" * 43),
                                                              "Submit-Token: " + tokens[SENDER]])
        self.assertEqual(r.status, 401, r)

    def test_revoked_at_node2(self):
        tokens, _ = submit(NODES[1])
        t = tokens[RCPT]
        self.assertEqual(verify(NODES[0], t, RCPT).status, 200)
        NODES[1].submitctl("token", "revoke", t)
        r = verify(NODES[0], t, RCPT)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json()["result"], "revoked")
        # audit rows commit with the writer's next batch
        wait_for("node1 audits the revoked answer", lambda: "revoked" in [
            x["result"] for x in NODES[0].sql("SELECT result FROM audit_log WHERE token_id = '%s'" % jti_of(t))])

    def test_unknown_and_bad_tokens(self):
        tokens, _ = submit(NODES[1])
        t = tokens[RCPT]
        # a signature that does not verify with node 2's key is refused here
        bad = t[:-5] + ("A" if t[-5] != "A" else "B") + t[-4:]
        r = verify(NODES[0], bad)
        self.assertIn(r.status, (400, 422), r)
        self.assertNotEqual(r.json()["result"], "valid")

    def test_unknown_issuer(self):
        """A node that is not of the cluster: its tokens are unknown_issuer
        at node 1; one that claims a peer's name with a key the peer never
        listed is unknown_key (the claim proves nothing)."""
        for issuer, status, result in (("stranger", 404, "unknown_issuer"), ("node2", 404, "unknown_key")):
            with Submitd({"smtp.trusted_networks": "127.0.0.0/8", "tokens.issuer": issuer}) as other:
                other.name = issuer
                tokens, _ = submit(other)
            t = tokens[RCPT]
            r = verify(NODES[0], t, RCPT)
            self.assertEqual(r.status, status, r)
            self.assertEqual(r.json()["result"], result)
            r = curl(node_url(NODES[0], "/v1/message"), headers=[auth(), "Submit-Token: " + t])
            self.assertEqual(r.status, status, r)
            self.assertEqual(r.json()["result"], result)
        # no token id of an unverified token reaches the audit trail
        wait_for("node1 audits unknown_issuer", lambda: NODES[0].sql(
            "SELECT count(*) AS n FROM audit_log WHERE result = 'unknown_issuer' AND token_id IS NULL")[0]["n"] >= 2)

    def test_z_issuer_down_and_back(self):
        n3 = NODES[2]
        tokens, _ = submit(n3)
        t = tokens[RCPT]
        self.assertEqual(verify(NODES[0], t, RCPT).status, 200)
        n3.stop()
        try:
            r = verify(NODES[0], t, RCPT)
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["result"], "issuer_unavailable")
            self.assertEqual(r.json()["node"], "node3")
            # its keys stay known: a bad address is still refused locally
            self.assertEqual(verify(NODES[0], t, "x@example.com").status, 409)
            self.assertIn("node3", {k["node"] for k in keys_at(NODES[0])})
            wait_for("node1 audits issuer_unavailable", lambda: NODES[0].sql(
                "SELECT count(*) AS n FROM audit_log WHERE result = 'issuer_unavailable' "
                "AND token_id = '%s'" % jti_of(t))[0]["n"] >= 1)
        finally:
            n3.start()
        wait_for("node3's token valid again at node1", lambda: verify(NODES[0], t, RCPT).status == 200)
        self.assertEqual(verify(NODES[0], t, RCPT).json()["result"], "valid")

    def test_x_issuer_hangs(self):
        """An issuer that accepts and never answers: cluster.timeout, then
        issuer_unavailable; a client that gives up first is let go."""
        n3 = NODES[2]
        tokens, _ = submit(n3)
        t = tokens[RCPT]
        n3.proc.send_signal(signal.SIGSTOP)
        try:
            # this client leaves before the timeout: node 1 drops the answer
            p = subprocess.run(["curl", "-sS", "--max-time", "0.5", "-H", auth(), "-H", "Submit-Token: " + t,
                                node_url(NODES[0], "/v1/verify")], capture_output=True)
            self.assertNotEqual(p.returncode, 0)
            r = verify(NODES[0], t, RCPT)
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["result"], "issuer_unavailable")
        finally:
            n3.proc.send_signal(signal.SIGCONT)
        wait_for("node3's token valid again at node1", lambda: verify(NODES[0], t, RCPT).status == 200)
        self.assertIn("event=api_verify result=issuer_unavailable", NODES[0].log())

    def test_y_key_rotated_at_node2(self):
        n2 = NODES[1]
        before = {k["key_id"] for k in keys_at(n2, local=True)}
        n2.submitctl("key", "rotate")
        new = {k["key_id"] for k in keys_at(n2, local=True)} - before
        self.assertEqual(len(new), 1)
        kid = new.pop()
        wait_for("node1 knows node2's new key", lambda: kid in {k["key_id"] for k in keys_at(NODES[0])
                                                               if k["node"] == "node2"})
        tokens, _ = submit(n2)
        self.assertEqual(kid_of(tokens[RCPT]), kid)
        r = verify(NODES[0], tokens[RCPT], RCPT)
        self.assertEqual(r.status, 200, r)
        # the retired key still verifies its tokens
        states = {k["key_id"]: k["state"] for k in keys_at(NODES[0]) if k["node"] == "node2"}
        self.assertEqual(states[kid], "active")
        self.assertIn("retired", states.values())


class KeyFetch(unittest.TestCase):
    """A peer's new key is known at once: two nodes of their own that
    refresh each other's keys once an hour; a token with a kid node 1 does
    not know and iss node 2 makes node 1 fetch node 2's keys right away,
    and a made-up kid does not make it fetch again and again."""

    @classmethod
    def setUpClass(cls):
        nodes = [Submitd({"smtp.trusted_networks": "127.0.0.0/8"}) for _ in range(2)]
        for i, n in enumerate(nodes):
            n.name = "kf%d" % (i + 1)
        try:
            for n in nodes:
                n.options.update({
                    "tokens.issuer": n.name,
                    "cluster.peers": ", ".join("%s=http://127.0.0.1:%d" % (p.name, p.http_port)
                                               for p in nodes if p is not n),
                    "cluster.refresh_interval": "3600",
                    "cluster.key_fetch_interval": "600",
                    "cluster.timeout": "2",
                    "http.threads": "1",
                    "http.auth_verify": "false",
                    "http.auth_keys": "false",
                })
            # kf2 first: kf1's one refresh, at its start, finds it up
            for n in reversed(nodes):
                n.start()
        except BaseException:
            for n in nodes:
                n.cleanup()
            raise
        cls.nodes = nodes
        n1 = nodes[0]
        wait_for("kf1 knows kf2's keys", lambda: "kf2" in {k["node"] for k in cls.keys(n1)})

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.__exit__(None, None, None)

    @staticmethod
    def keys(n):
        r = curl(node_url(n, "/v1/keys"))
        assert r.status == 200, r
        return r.json()["keys"]

    @staticmethod
    def verify(n, token, address):
        return curl(node_url(n, "/v1/verify"), headers=["Content-Type: application/json"],
                    data=json.dumps({"token": token, "address": address}))

    def fetches(self):
        return self.nodes[0].log().count("event=cluster_keys_fetch node=kf2 ")

    def test_a_rotated_key_known_at_once(self):
        n1, n2 = self.nodes
        n2.submitctl("key", "rotate")
        tokens, _ = submit(n2)
        kid = kid_of(tokens[RCPT])
        self.assertNotIn(kid, {k["key_id"] for k in self.keys(n1)})
        before = self.fetches()
        r = self.verify(n1, tokens[RCPT], RCPT)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["result"], "valid")
        self.assertEqual(r.json()["issuer"], "kf2")
        self.assertEqual(self.fetches(), before + 1)
        # a referral for the new key too, without another fetch
        r = curl(node_url(n1, "/v1/status"), headers=["Submit-Token: " + tokens[SENDER]])
        self.assertEqual(r.status, 307, r)
        self.assertEqual(self.fetches(), before + 1)
        # stored through the writer, as a refresh does
        wait_for("kf1 stores kf2's new key", lambda: n1.sql(
            "SELECT count(*) AS n FROM peer_keys WHERE node = 'kf2' AND key_id = '%s'" % kid)[0]["n"] == 1)

    def test_b_made_up_kid_fetches_once(self):
        n1 = self.nodes[0]
        # a real token of another key that claims kf2
        with Submitd({"smtp.trusted_networks": "127.0.0.0/8", "tokens.issuer": "kf2"}) as other:
            other.name = "kf2"
            tokens, _ = submit(other)
        t = tokens[RCPT]
        before = self.fetches()
        for _ in range(20):
            r = self.verify(n1, t, RCPT)
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.json()["result"], "unknown_key")
        # at most one fetch for all of them (none if the last one is recent)
        self.assertLessEqual(self.fetches() - before, 1)
        self.assertIn("result=unknown_key", n1.log())

    def test_c_peer_down(self):
        """The peer cannot be asked for its keys: issuer_unavailable (the
        key may well be the peer's), never valid, and one fetch per
        interval all the same."""
        n1, n2 = self.nodes
        n2.submitctl("key", "rotate")
        tokens, _ = submit(n2)
        n2.stop()
        try:
            n1.stop()        # forget the last fetch's time: a new run
            n1.start()
            before = self.fetches()
            for _ in range(5):
                r = self.verify(n1, tokens[RCPT], RCPT)
                self.assertEqual(r.status, 503, r)
                self.assertEqual(r.json()["result"], "issuer_unavailable")
                self.assertEqual(r.json()["node"], "kf2")
            self.assertEqual(self.fetches() - before, 1)
        finally:
            n2.start()


if __name__ == "__main__":
    unittest.main()
