"""
Three submitd nodes made one cluster (docs/cluster.md), for test_cluster and
test_cluster_haproxy: each named node1..node3 (tokens.issuer), the nodes'
credential made at node 1 and imported at the others, written to a secret
file each, every other node in cluster.peers, and a verifier's credential
(the same at every node). Also the curl client both files use.
"""
import os
import subprocess

from harness import Submitd, share_with_server
from test_api import parse_http


def make_nodes(options, verifier, count=3):
    """count Submitd with options (plus the cluster's), made but not
    started; returns (nodes, the verifier's secret). On an error the nodes
    made so far are cleaned up."""
    nodes = [Submitd(dict(options)) for _ in range(count)]
    try:
        for i, n in enumerate(nodes):
            n.name = "node%d" % (i + 1)
            os.makedirs(n.data_dir, exist_ok=True)
            share_with_server(n.data_dir)
        cluster = nodes[0].submitctl("service", "add", "cluster").stdout.strip()
        service = nodes[0].submitctl("service", "add", verifier).stdout.strip()
        for n in nodes[1:]:
            out = n.submitctl("service", "import", "cluster", input=cluster + "\n").stdout
            assert "imported" in out, out
            n.submitctl("service", "import", verifier, input=service + "\n")
        for n in nodes:
            path = os.path.join(n.tmp, "cluster.secret")
            with open(path, "w") as f:
                f.write(cluster + "\n")
            os.chmod(path, 0o600)
            share_with_server(path)
            n.options.update({
                "tokens.issuer": n.name,
                "cluster.peers": ", ".join("%s=http://127.0.0.1:%d" % (p.name, p.http_port)
                                           for p in nodes if p is not n),
                "cluster.secret_file": path,
                "cluster.refresh_interval": "1",
                "cluster.timeout": "2",
                "http.auth_verify": "true",
                "http.auth_keys": "true",
            })
    except BaseException:
        for n in nodes:
            n.cleanup()
        raise
    return nodes, service


def curl(url, headers=(), data=None, follow=False):
    cmd = ["curl", "-sS", "-i", "--max-time", "60"]
    if follow:
        # -L alone drops Authorization at another host or port (curl since
        # 7.83); the nodes are one service, so the verifier trusts them
        cmd += ["-L", "--location-trusted"]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["--data-binary", "@-"]
    cmd.append(url)
    p = subprocess.run(cmd, input=data.encode() if data is not None else None, capture_output=True, timeout=90)
    if p.returncode != 0:
        raise AssertionError("curl %s: %s" % (url, p.stderr.decode(errors="replace")))
    raw = p.stdout
    # with -L, -i shows every answer: keep the last one
    while follow and raw.startswith(b"HTTP/1.1 307"):
        raw = raw[raw.index(b"\r\n\r\n") + 4:]
    return parse_http(raw, url)
