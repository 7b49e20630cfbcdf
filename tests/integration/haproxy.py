"""haproxy.py: run Debian's HAProxy in front of test servers.

A HAProxy owns one temporary folder with its configuration, its pid file
and a stats socket, and one haproxy process in TCP mode bound to loopback
only. The caller gives the frontends and backends:

    hp = HAProxy()
    be = hp.backend("smtp", [("n1", "127.0.0.1", 2587), ("n2", "127.0.0.1", 3587)],
                    send_proxy="v2", check=True)
    port = hp.frontend("smtp", be)          # a free loopback port
    hp.start()                              # returns once every frontend accepts
    hp.server_states("smtp")                # {"n1": "UP", "n2": "DOWN"} (stats socket)
    hp.wait_state("smtp", "n2", "UP")
    hp.stop()

send_proxy is None (no header), "v1" (send-proxy) or "v2" (send-proxy-v2);
check=True adds health checks (`check inter 500ms`, plain TCP connect and
close unless check_send_proxy or smtpchk are asked for). balance is any
HAProxy algorithm ("roundrobin" by default, "source" for stickiness).
stop() sends SIGTERM to the pid and waits; the folder is removed unless
SUBMITD_KEEP is set. Needs /usr/sbin/haproxy (Debian package haproxy).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import TIMEOUT_SCALE, free_port

HAPROXY = "/usr/sbin/haproxy"
READY_TIMEOUT = 20.0 * TIMEOUT_SCALE


def available():
    return os.access(HAPROXY, os.X_OK)


class HAProxy:
    def __init__(self, check_inter="500ms", timeout_client="60s", timeout_server="60s"):
        self.tmp = tempfile.mkdtemp(prefix="submitd-haproxy-")
        self.cfg_path = os.path.join(self.tmp, "haproxy.cfg")
        self.pid_path = os.path.join(self.tmp, "haproxy.pid")
        self.stats_path = os.path.join(self.tmp, "stats.sock")
        self.log_path = os.path.join(self.tmp, "haproxy.log")
        self.check_inter = check_inter
        self.timeout_client = timeout_client
        self.timeout_server = timeout_server
        self.frontends = []     # (name, address, port, backend)
        self.backends = {}      # name -> lines
        self.proc = None
        self.keep = bool(os.environ.get("SUBMITD_KEEP"))

    # -- configuration
    def backend(self, name, servers, send_proxy="v2", check=True, balance="roundrobin",
                check_send_proxy=False, smtpchk=False, source=None):
        """servers: (name, host, port) each. Returns name, for frontend()."""
        lines = ["backend %s" % name, "    mode tcp", "    balance %s" % balance]
        if smtpchk:
            lines.append("    option smtpchk EHLO haproxy.test")
        for sname, host, port in servers:
            opts = []
            if send_proxy == "v1":
                opts.append("send-proxy")
            elif send_proxy == "v2":
                opts.append("send-proxy-v2")
            elif send_proxy is not None:
                raise ValueError("send_proxy: None, 'v1' or 'v2'")
            if check:
                opts += ["check", "inter", self.check_inter, "fall", "2", "rise", "1"]
                if check_send_proxy:
                    opts.append("check-send-proxy")
            if source:
                opts += ["source", source]
            lines.append("    server %s %s:%d %s" % (sname, host, port, " ".join(opts)))
        self.backends[name] = lines
        return name

    def frontend(self, backend, port=None, address="127.0.0.1", name=None):
        """A TCP frontend on address:port (a free loopback port by default)
        that sends everything to backend. Returns the port."""
        port = port or free_port(host=address)
        name = name or "fe_%s_%d" % (backend, len(self.frontends))
        self.frontends.append((name, address, port, backend))
        return port

    def config_text(self):
        out = [
            "global",
            "    pidfile %s" % self.pid_path,
            "    stats socket %s mode 600 level admin" % self.stats_path,
            "    log stderr format short local0 info",
            "",
            "defaults",
            "    mode tcp",
            "    log global",
            "    option tcplog",
            "    timeout connect 5s",
            "    timeout client %s" % self.timeout_client,
            "    timeout server %s" % self.timeout_server,
            "",
        ]
        for name, address, port, backend in self.frontends:
            out += ["frontend %s" % name, "    bind %s:%d" % (address, port),
                    "    default_backend %s" % backend, ""]
        for lines in self.backends.values():
            out += lines + [""]
        return "\n".join(out)

    # -- process
    def start(self):
        with open(self.cfg_path, "w") as f:
            f.write(self.config_text())
        check = subprocess.run([HAPROXY, "-c", "-f", self.cfg_path], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("haproxy -c refused the configuration:\n%s\n%s\n%s"
                               % (self.config_text(), check.stdout, check.stderr))
        self.log_file = open(self.log_path, "ab")
        # -db: stay in the foreground (the pid is ours to stop); -W not needed
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg_path], stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=self.log_file)
        deadline = time.monotonic() + READY_TIMEOUT
        pending = [(a, p) for _, a, p, _ in self.frontends]
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited with %s\n%s" % (self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("haproxy frontends not accepting after %.0f s\n%s" % (READY_TIMEOUT, self.log()))
            a, p = pending[0]
            try:
                # connect only: a frontend accepts before the backend is chosen
                with socket.create_connection((a, p), timeout=1.0):
                    pending.pop(0)
            except OSError:
                time.sleep(0.05)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stats_command(self, command):
        """One command on the stats socket (e.g. "show stat"); its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5.0)
            s.connect(self.stats_path)
            s.sendall(command.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        return out.decode(errors="replace")

    def server_states(self, backend):
        """{server name: status} of a backend ("UP", "DOWN", "no check", ...)."""
        text = self.stats_command("show stat")
        lines = text.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise AssertionError("unexpected stats answer: %r" % text[:200])
        cols = lines[0][2:].split(",")
        out = {}
        for l in lines[1:]:
            row = dict(zip(cols, l.split(",")))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row.get("status", "")
        return out

    def wait_state(self, backend, server, state, timeout=30.0):
        """Poll the stats socket until server's status starts with state."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        last = None
        while time.monotonic() < deadline:
            last = self.server_states(backend).get(server)
            if last is not None and last.startswith(state):
                return
            time.sleep(0.1)
        raise AssertionError("%s/%s still %r, not %s\n%s" % (backend, server, last, state, self.log()))

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(10 * TIMEOUT_SCALE)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            self.log_file.close()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
