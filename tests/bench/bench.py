#!/usr/bin/env python3
"""bench.py: the benchmarks of submitd, run by scripts/bench.

Each benchmark measures submitd and, in the same run, a reference (a Postfix
instance of its own that only queues, Postfix's smtp-sink, raw Ed25519
verification, ...), alternating the two (A B A B ...) for a number of rounds,
and prints the medians and their ratio on one line. Everything lives in one
temporary directory, removed at the end; only loopback addresses are used;
every process started here is stopped here, by its pid.

docs/performance.md describes each benchmark and the results on the
reference machine. Usage: see --help (scripts/bench passes its arguments).
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCHMARKS = ["acceptance", "auth", "size", "idle", "api", "scale", "dkim", "proxy", "cluster-verify"]
IS_ROOT = os.geteuid() == 0
SENDER = "a@example.org"
RCPT = "b@example.net"
MB = 1e6  # throughputs are in 10^6 octets per second


def priv(cmd):
    """A command that needs root (Postfix's master, its queue): sudo when not root."""
    return cmd if IS_ROOT else ["sudo"] + cmd


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def out(line):
    print(line, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_banner(port, expect, timeout=30.0):
    """Waits until 127.0.0.1:port answers with a greeting that contains
    expect (so a port taken meanwhile by someone else is not mistaken for
    ours)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                last = s.recv(512).decode("ascii", "replace")
                if expect in last:
                    return
                raise RuntimeError("127.0.0.1:%d is someone else's: %r" % (port, last[:80]))
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("no greeting from 127.0.0.1:%d after %.0f s" % (port, timeout))


def proc_kb(pid, key):
    """VmRSS, VmHWM, ... of a process, in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s for pid %d" % (key, pid))


TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid, tid=None):
    """Fields of /proc/PID/stat (or of thread TID's task/TID/stat) after the
    command name (state first); None if gone."""
    path = "/proc/%d/stat" % pid if tid is None else "/proc/%d/task/%d/stat" % (pid, tid)
    try:
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid):
    """The process exists and is not a zombie."""
    f = proc_stat(pid)
    return f is not None and f[0] != "Z"


def proc_cpu(pid, reaped=False):
    """CPU seconds (user + system, all threads) of a process; with reaped,
    plus those of its children that it has waited for."""
    f = proc_stat(pid)
    if f is None:
        return 0.0
    t = int(f[11]) + int(f[12])
    if reaped:
        t += int(f[13]) + int(f[14])
    return t / TCK


def tree_cpu(root):
    """CPU seconds of a process and of all its children, live or reaped (a
    Postfix master and the daemons it forks)."""
    total = proc_cpu(root, reaped=True)
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = proc_stat(int(d))
            if f is not None and int(f[1]) == root:
                total += proc_cpu(int(d), reaped=True)
    return total


def child_cpu():
    """CPU seconds of the children this process has waited for (the load generators)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(server, fn):
    """Runs fn(); returns (its result, the server's CPU seconds, the client's)."""
    s0, c0 = server.cpu(), child_cpu()
    r = fn()
    return r, server.cpu() - s0, child_cpu() - c0


def fmt_us(xs):
    return "%.0f" % (median(xs) * 1e6)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(cmd, timeout, check=True, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s exited %d: %s%s" % (" ".join(cmd[:3]), r.returncode,
                                                   r.stdout[-500:], r.stderr[-500:]))
    return r


def kv(line):
    """'tool: a=1 b=2.5' -> {'a': 1.0, 'b': 2.5}"""
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-0-9.]+)", line)}


def median(xs):
    return statistics.median(xs)


def fmt_rate(x):
    return "%.0f" % x if x >= 100 else "%.1f" % x


def fmt_count(n):
    """10000 -> '10k', 1000000 -> '1M'"""
    for div, unit in ((1000000, "M"), (1000, "k")):
        if n >= div and n % div == 0:
            return "%d%s" % (n // div, unit)
    return str(n)


def fmt_x(a, b):
    return "x%.2f" % (a / b) if b > 0 else "x-"


def fmt_pct(a, b):
    return "%.0f%%" % (100.0 * a / b) if b > 0 else "-%"


class Bench:
    """State shared by the benchmarks: tools, the temp dir, started processes."""

    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.submitd = os.path.join(self.build, "submitd")
        self.submitctl = os.path.join(self.build, "submitctl")
        self.loadgen = args.loadgen
        self.ed25519 = args.ed25519
        self.rounds = args.rounds
        self.tmp = tempfile.mkdtemp(prefix="submitd-bench.")
        os.chmod(self.tmp, 0o711)  # Postfix's daemons run as user postfix
        self.cleanups = []  # callables, run in reverse order
        self.results = []   # the printed result lines, repeated at the end
        self.profiles = []  # (name, perf.data path)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def result(self, line):
        self.results.append(line)
        out(line)

    def close(self):
        while self.cleanups:
            fn = self.cleanups.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up
                log("bench: cleanup: %s" % e)
        if self.args.keep:
            log("bench: kept %s" % self.tmp)
            return
        # Postfix's queue belongs to root and postfix
        if IS_ROOT:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            subprocess.run(priv(["rm", "-rf", self.tmp]), timeout=120)

    # -- processes --------------------------------------------------------

    def spawn(self, cmd, stdout, stderr=subprocess.STDOUT, **kw):
        p = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, **kw)
        self.cleanups.append(lambda: stop_process(p))
        return p


def stop_process(p, sig=signal.SIGTERM, timeout=40):
    if p.poll() is not None:
        return
    p.send_signal(sig)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


class Submitd:
    """One submitd with its own data directory in the temp dir."""

    def __init__(self, b, name, trusted=True, http=False, opts=(), data_dir=None):
        self.b = b
        self.name = name
        self.data = data_dir or b.path(name, "data")
        os.makedirs(os.path.dirname(self.data), exist_ok=True)
        self.logfile = b.path(name, "submitd.log")
        self.settings = (trusted, http, tuple(opts))
        self.set_ports()
        self.proc = None
        self.perf = None

    def set_ports(self):
        trusted, http, opts = self.settings
        self.port = free_port()
        self.http_port = free_port() if http else None
        self.opts = ["-o", "server.data_dir=" + self.data,
                     "-o", "smtp.listen=127.0.0.1:%d" % self.port,
                     "-o", "smtp.listen_tls=",
                     "-o", "http.listen=" + ("127.0.0.1:%d" % self.http_port if http else ""),
                     # smtp-source's 20 sessions reconnect faster than the
                     # server sees the old ones close: no per-address limit
                     "-o", "server.max_connections_per_ip=1000",
                     # a benchmark sends far more than the sending limits allow
                     "-o", "limits.user_messages_per_hour=0", "-o", "limits.user_recipients_per_day=0",
                     "-o", "limits.ip_messages_per_hour=0"]
        if IS_ROOT:  # submitd will not keep root; scripts/deps made this user
            self.opts += ["-o", "server.user=submitd"]
        if trusted:
            self.opts += ["-o", "smtp.trusted_networks=127.0.0.0/8"]
        if http:
            self.opts += ["-o", "http.auth_fetch=false"]
        for o in tuple(opts) + tuple(self.b.args.set):
            self.opts += ["-o", o]

    def ctl(self, *args, stdin=None):
        return run([self.b.submitctl] + self.opts + list(args), timeout=120, input=stdin)

    def start(self):
        for _ in range(3):
            if self._start_once():
                break
            # a port taken between free_port() and submitd's bind: new ports
            self.set_ports()
        else:
            raise RuntimeError("submitd %s: no free port in 3 tries" % self.name)
        if self.b.args.profile:
            data = self.b.path(self.name, "perf.data")
            # DWARF stacks: the libraries are built without frame pointers
            self.perf = self.b.spawn(priv(["perf", "record", "-F", "299", "--call-graph",
                                           "dwarf,8192", "-q", "-o", data,
                                           "-p", str(self.proc.pid)]),
                                     stdout=subprocess.DEVNULL)
            self.b.profiles.append((self.name, data))
        return self

    def _start_once(self):
        """Starts submitd and waits for event=ready; False if a port was taken."""
        with open(self.logfile, "w"):
            pass
        self.logf = open(self.logfile, "a")
        self.proc = self.b.spawn([self.b.submitd] + self.opts, stdout=self.logf)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open(self.logfile) as f:
                text = f.read()
            if "event=ready" in text:
                return True
            if self.proc.poll() is not None or "startup_failed" in text:
                stop_process(self.proc)
                self.logf.close()
                if "Address already in use" in text:
                    return False
                raise RuntimeError("submitd %s did not start:\n%s" % (self.name, text[-2000:]))
            time.sleep(0.05)
        raise RuntimeError("submitd %s: no event=ready after 120 s" % self.name)

    def stop(self):
        if self.perf is not None:
            stop_process(self.perf, signal.SIGINT)
            self.perf = None
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
            self.logf.close()

    def kb(self, key):
        return proc_kb(self.proc.pid, key)

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def threads_cpu(self, prefix):
        """CPU seconds of the threads whose name starts with prefix (the API
        threads are sd-http0, sd-http1, ...)."""
        total = 0
        for tid in os.listdir("/proc/%d/task" % self.proc.pid):
            try:
                with open("/proc/%d/task/%s/stat" % (self.proc.pid, tid)) as f:
                    text = f.read()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            if name.startswith(prefix):
                fields = text.rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / TCK

    def loop_cpu(self):
        """CPU seconds of the main thread alone: the SMTP event loop, which
        does every session's protocol and TLS work."""
        f = proc_stat(self.proc.pid, self.proc.pid)
        return 0.0 if f is None else (int(f[11]) + int(f[12])) / TCK

    def thread_cpu(self):
        """CPU seconds by thread name (/proc/PID/task/*/comm): "submitd" is
        the main thread (SMTP loop 0), sd-smtp-N the other SMTP loops
        (smtp.threads), sd-writer, sd-signer, sd-auth... the others."""
        pid, res = self.proc.pid, {}
        try:
            tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        except OSError:
            return res
        for tid in tids:
            f = proc_stat(pid, tid)
            try:
                with open("/proc/%d/task/%d/comm" % (pid, tid)) as c:
                    name = c.read().strip()
            except OSError:
                continue
            if f is not None:
                res[name] = res.get(name, 0.0) + (int(f[11]) + int(f[12])) / TCK
        return res

    def count(self, table="messages"):
        r = run(["sqlite3", "-cmd", ".timeout 10000", os.path.join(self.data, "submitd.db"),
                 "SELECT count(*) FROM %s" % table], timeout=300)
        return int(r.stdout.strip())

    def target(self):
        return "127.0.0.1:%d" % self.port


class Postfix:
    """A private Postfix instance that accepts from 127.0.0.0/8 and puts every
    message on hold: it receives, writes and fsyncs the queue file, and
    delivers nothing."""

    MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

    MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file_prefixes = {dir}
maillog_file = {dir}/maillog
myhostname = bench.example.org
mydomain = example.org
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
message_size_limit = 52428800
# every message goes to the hold queue: received and stored, never delivered
smtpd_recipient_restrictions = check_recipient_access static:HOLD, permit_mynetworks, reject
"""

    TLS_CF = """\
smtpd_tls_security_level = may
smtpd_tls_cert_file = {dir}/cert.pem
smtpd_tls_key_file = {dir}/key.pem
"""

    def __init__(self, b, name, tls=False):
        self.b = b
        self.dir = b.path(name)
        self.port = free_port()
        self.tls = tls
        self.running = False
        self.master = 0

    def _write(self, rel, text):
        # written as ourselves in a scratch file, then put in place as root
        scratch = self.b.path("scratch.%d" % os.getpid())
        with open(scratch, "w") as f:
            f.write(text)
        subprocess.run(priv(["install", "-m", "0644", scratch, os.path.join(self.dir, rel)]),
                       check=True, timeout=30)
        os.unlink(scratch)

    def start(self):
        d = self.dir
        subprocess.run(priv(["mkdir", "-p", d + "/etc", d + "/spool", d + "/data"]),
                       check=True, timeout=30)
        subprocess.run(priv(["chown", "postfix", d + "/data"]), check=True, timeout=30)
        main_cf = self.MAIN_CF.format(dir=d)
        if self.tls:
            subprocess.run(priv(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                 "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                                 "-days", "30", "-keyout", d + "/key.pem",
                                 "-out", d + "/cert.pem"]),
                           check=True, timeout=60, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            main_cf += self.TLS_CF.format(dir=d)
        self._write("etc/main.cf", main_cf)
        self._write("etc/master.cf", self.MASTER_CF.format(port=self.port))
        r = run(priv(["postfix", "-c", d + "/etc", "start"]), timeout=120, check=False)
        if r.returncode != 0:
            raise RuntimeError("postfix did not start (%s); its log: %s/maillog" % (r.stderr, d))
        self.running = True
        self.b.cleanups.append(self.stop)
        wait_banner(self.port, "220 bench.example.org ")
        r = run(priv(["cat", os.path.join(d, "spool", "pid", "master.pid")]), timeout=30)
        self.master = int(r.stdout.strip())
        return self

    def cpu(self):
        return tree_cpu(self.master)

    def stop(self):
        if not self.running:
            return
        self.running = False
        subprocess.run(priv(["postfix", "-c", self.dir + "/etc", "stop"]), timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # master exits once its children have (its pid file stays)
        deadline = time.monotonic() + 30
        while self.master and alive(self.master) and time.monotonic() < deadline:
            time.sleep(0.05)

    def count(self):
        """Messages in the hold queue."""
        r = run(priv(["find", self.dir + "/spool/hold", "-type", "f"]), timeout=300)
        return len(r.stdout.split())

    def target(self):
        return "127.0.0.1:%d" % self.port


class Sink:
    """Postfix's smtp-sink: speaks SMTP, stores nothing."""

    def __init__(self, b, name):
        self.b = b
        self.port = free_port()
        self.outfile = b.path(name + ".sink")
        self.proc = None

    def start(self):
        cmd = ["smtp-sink", "-c", "-h", "sink.bench.example.org"] + \
              (["-u", "postfix"] if IS_ROOT else []) + ["127.0.0.1:%d" % self.port, "1024"]
        self.outf = open(self.outfile, "w")
        self.proc = self.b.spawn(cmd, stdout=self.outf, stderr=subprocess.DEVNULL)
        wait_banner(self.port, "sink.bench.example.org")
        return self

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
            self.outf.close()

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def count(self):
        """Messages received so far (the -c counter's mesg=)."""
        time.sleep(0.1)
        with open(self.outfile) as f:
            m = re.findall(r"mesg=(\d+)", f.read())
        return int(m[-1]) if m else 0

    def target(self):
        return "127.0.0.1:%d" % self.port


# -- load generators ---------------------------------------------------------

def smtp_source(b, target, n, size=4096, sessions=20):
    """smtp-source with one message per session; returns wall seconds."""
    cmd = ["smtp-source", "-c", "-s", str(sessions), "-m", str(n), "-l", str(size),
           "-f", SENDER, "-t", RCPT, target]
    t0 = time.monotonic()
    r = run(cmd, timeout=600, check=False)
    secs = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("smtp-source against %s failed: %s" % (target, r.stderr[-500:]))
    return secs


def loadgen(b, target, n, conc, *extra, timeout=600):
    cmd = [b.loadgen, "-n", str(n), "-c", str(conc), "-w", str(timeout - 10)] + \
          [str(x) for x in extra] + [target]
    r = run(cmd, timeout=timeout, check=False)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("loadgen: sessions=")]
    if r.returncode != 0 or not line:
        raise RuntimeError("loadgen %s failed: %s %s" % (" ".join(cmd[1:]), r.stdout[-500:],
                                                         r.stderr[-1000:]))
    return kv(line[0])


def counted_rate(server, seconds, before, n):
    """Messages per second, counting only what the server stored."""
    got = server.count() - before
    if got != n:
        raise RuntimeError("%s stored %d messages of %d sent" % (type(server).__name__, got, n))
    return got / seconds


# -- the benchmarks ----------------------------------------------------------

def cpu_line(unit, cpu, client):
    """'  CPU per message (us): submitd 450 | postfix 900 ...; client 140 | ...'"""
    return ("  CPU per %s (us, median): " % unit +
            " | ".join("%s %s" % (k, fmt_us(v)) for k, v in cpu.items()) +
            "; load generator " + " | ".join("%s %s" % (k, fmt_us(v)) for k, v in client.items()))


def bench_acceptance(b):
    """4 KB messages, 20 sessions, one message per session, trusted client."""
    n = b.args.messages
    sd = Submitd(b, "acceptance-submitd").start()
    pf = Postfix(b, "acceptance-postfix").start()
    sk = Sink(b, "acceptance").start()
    targets = [("submitd", sd), ("postfix", pf), ("sink", sk)]
    for _, srv in targets:  # warm-up: page cache, Postfix's process pool
        smtp_source(b, srv.target(), 500)
    rates = {k: [] for k, _ in targets}
    cpu = {k: [] for k, _ in targets}
    client = {k: [] for k, _ in targets}
    loop, signs = [], []
    for _ in range(b.rounds):
        for name, srv in targets:
            before = srv.count()
            l0 = sd.loop_cpu()
            secs, scpu, ccpu = timed(srv, lambda: smtp_source(b, srv.target(), n))
            rates[name].append(counted_rate(srv, secs, before, n))
            cpu[name].append(scpu / n)
            client[name].append(ccpu / n)
            if srv is sd:
                loop.append((sd.loop_cpu() - l0) / n)
        signs.append(ed25519_ref(b, "sign", 1))
    for srv in (sd, pf, sk):
        srv.stop()
    m = {k: median(v) for k, v in rates.items()}
    b.result("acceptance: submitd %s msg/s | postfix(hold) %s msg/s (%s) | smtp-sink %s msg/s (%s)"
             % (fmt_rate(m["submitd"]), fmt_rate(m["postfix"]), fmt_x(m["submitd"], m["postfix"]),
                fmt_rate(m["sink"]), fmt_pct(m["submitd"], m["sink"])))
    out("  rounds (msg/s): " + " | ".join("%s %s" % (k, " ".join(fmt_rate(x) for x in v))
                                         for k, v in rates.items()))
    out(cpu_line("message", cpu, client))
    # Whether a target fits this machine at all: 1 recipient, so 2 tokens
    # (the recipient's and the sender's) are signed per message.
    sign_us = 2e6 / median(signs)
    scpu, ccpu = median(cpu["submitd"]) * 1e6, median(client["submitd"]) * 1e6
    out("  submitd's event loop (main thread) %s us per message; one core signs %s Ed25519/s "
        "(rounds %s)" % (fmt_us(loop), fmt_rate(median(signs)),
                         " ".join(fmt_rate(x) for x in signs)))
    out(budget_line("3x postfix", 3 * m["postfix"], ccpu, scpu, sign_us, "its 2 signatures"))
    out(budget_line("80% of smtp-sink", 0.8 * m["sink"], ccpu, scpu, sign_us, "its 2 signatures"))
    m["sign_per_s"] = median(signs)
    return m


def bench_dkim(b):
    """Acceptance as in bench_acceptance (4 KB, 20 sessions, trusted), with
    DKIM disabled (dkim.enabled=false), enabled without a key (the default:
    each message still passes a signing worker), and on (an RSA-2048 and an
    Ed25519 key for the From: domain, both signing every message), in
    alternating rounds."""
    n = b.args.messages
    disabled = Submitd(b, "dkim-disabled", opts=("dkim.enabled=false",))
    off = Submitd(b, "dkim-off")
    on = Submitd(b, "dkim-on")
    on.ctl("dkim", "generate", SENDER.split("@")[1], "--algorithm", "rsa")
    on.ctl("dkim", "generate", SENDER.split("@")[1], "--algorithm", "ed25519")
    targets = [("disabled", disabled.start()), ("off", off.start()), ("on", on.start())]
    for _, srv in targets:
        smtp_source(b, srv.target(), 500)
    rates = {k: [] for k, _ in targets}
    cpu = {k: [] for k, _ in targets}
    client = {k: [] for k, _ in targets}
    for _ in range(b.rounds):
        for name, srv in targets:
            before = srv.count()
            secs, scpu, ccpu = timed(srv, lambda: smtp_source(b, srv.target(), n))
            rates[name].append(counted_rate(srv, secs, before, n))
            cpu[name].append(scpu / n)
            client[name].append(ccpu / n)
    signed, stored = on.count("message_dkim"), on.count()
    for _, srv in targets:
        srv.stop()
    if signed != stored:
        raise RuntimeError("dkim on: %d of %d messages signed" % (signed, stored))
    m = {k: median(v) for k, v in rates.items()}
    b.result("dkim: acceptance with DKIM disabled %s msg/s | enabled, no key %s msg/s (%s) | "
             "RSA-2048 + Ed25519 %s msg/s (%s)"
             % (fmt_rate(m["disabled"]), fmt_rate(m["off"]), fmt_pct(m["off"], m["disabled"]),
                fmt_rate(m["on"]), fmt_pct(m["on"], m["disabled"])))
    out("  rounds (msg/s): " + " | ".join("%s %s" % (k, " ".join(fmt_rate(x) for x in v))
                                         for k, v in rates.items()))
    out(cpu_line("message", cpu, client))
    return m


class HAProxy:
    """Debian's haproxy in TCP mode in front of one submitd port: frontends
    on free loopback ports, each with one server line (its source address
    and whether it sends a PROXY v2 header). Its CPU is counted with the
    server's: the cost of a path through it is both processes'."""

    def __init__(self, b, name, backend_port, paths):
        self.b = b
        self.name = name
        self.paths = {}     # path name -> frontend port
        lines = ["global", "    maxconn 4000", "defaults", "    mode tcp", "    timeout connect 5s",
                 "    timeout client 60s", "    timeout server 60s"]
        for path, source, send_proxy in paths:
            port = free_port()
            self.paths[path] = port
            lines += ["frontend fe_%s" % path, "    bind 127.0.0.1:%d" % port, "    default_backend be_%s" % path,
                      "backend be_%s" % path,
                      "    server s1 127.0.0.1:%d source %s%s" % (backend_port, source,
                                                                 " send-proxy-v2" if send_proxy else "")]
        os.makedirs(b.path(name), exist_ok=True)
        self.cfg = b.path(name, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.logf = open(self.b.path(self.name, "haproxy.log"), "w")
        self.proc = self.b.spawn(["/usr/sbin/haproxy", "-db", "-f", self.cfg], stdout=self.logf)
        for port in self.paths.values():
            wait_banner(port, "220")
        return self

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
            self.logf.close()


class Via:
    """A target reached through a HAProxy frontend: its messages are the
    submitd's, its CPU is the submitd's plus HAProxy's."""

    def __init__(self, sd, hp, path):
        self.sd, self.hp, self.port = sd, hp, hp.paths[path]

    def cpu(self):
        return self.sd.cpu() + self.hp.cpu()

    def count(self):
        return self.sd.count()

    def target(self):
        return "127.0.0.1:%d" % self.port


def bench_proxy(b):
    """Acceptance as in bench_acceptance (4 KB, 20 sessions, trusted) into
    one submitd three ways, in alternating rounds: direct; through HAProxy
    in TCP mode without a PROXY header (HAProxy connects from 127.0.0.3);
    and through HAProxy with send-proxy-v2 (from 127.0.0.2, the only
    smtp.proxy_networks address), so that the proxy's cost and the
    header's are told apart. CPU per message counts submitd and HAProxy."""
    if not os.access("/usr/sbin/haproxy", os.X_OK):
        raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
    n = b.args.messages
    sd = Submitd(b, "proxy-submitd", opts=("smtp.proxy_networks=127.0.0.2",)).start()
    hp = HAProxy(b, "proxy-haproxy", sd.port, [("tcp", "127.0.0.3", False), ("v2", "127.0.0.2", True)]).start()
    targets = [("direct", sd), ("haproxy", Via(sd, hp, "tcp")), ("haproxy+v2", Via(sd, hp, "v2"))]
    for _, srv in targets:
        smtp_source(b, srv.target(), 500)
    rates = {k: [] for k, _ in targets}
    cpu = {k: [] for k, _ in targets}
    client = {k: [] for k, _ in targets}
    for _ in range(b.rounds):
        for name, srv in targets:
            before = srv.count()
            secs, scpu, ccpu = timed(srv, lambda: smtp_source(b, srv.target(), n))
            rates[name].append(counted_rate(srv, secs, before, n))
            cpu[name].append(scpu / n)
            client[name].append(ccpu / n)
    with open(sd.logfile) as f:
        proxied = f.read().count("proxy=127.0.0.2")
    hp.stop()
    sd.stop()
    if proxied < n:
        raise RuntimeError("proxy: %d sessions came with a PROXY header, expected at least %d" % (proxied, n))
    m = {k: median(v) for k, v in rates.items()}
    b.result("proxy: acceptance direct %s msg/s | through HAProxy %s msg/s (%s) | HAProxy send-proxy-v2 "
             "%s msg/s (%s)"
             % (fmt_rate(m["direct"]), fmt_rate(m["haproxy"]), fmt_pct(m["haproxy"], m["direct"]),
                fmt_rate(m["haproxy+v2"]), fmt_pct(m["haproxy+v2"], m["direct"])))
    out("  rounds (msg/s): " + " | ".join("%s %s" % (k, " ".join(fmt_rate(x) for x in v))
                                         for k, v in rates.items()))
    out(cpu_line("message", cpu, client).replace("CPU per message (us, median): ",
                                                 "CPU per message (us, median; submitd + HAProxy): "))
    return m


def bench_auth(b):
    """STARTTLS + AUTH PLAIN + 3 RCPT + 4 KB per session, warm credential cache."""
    user, password = "bench@example.org", os.urandom(9).hex()
    # loadgen gives each session its own Message-ID, so none is a
    # resubmission (submit.dedup_window stays on, as in production)
    sd = Submitd(b, "auth-submitd", trusted=False)
    sd.ctl("user", "add", user, stdin=password + "\n")
    sd.start()
    pf = Postfix(b, "auth-postfix", tls=True).start()
    auth = ["-t", "-a", "%s:%s" % (user, password), "-R", 3]
    notls = ["-t", "-R", 3]
    # warm-up: one login fills the cache (one Argon2id check), then a burst
    loadgen(b, sd.target(), 1, 1, *auth)
    loadgen(b, sd.target(), 200, 50, *auth)
    loadgen(b, pf.target(), 200, 50, *notls)
    res = {}
    for conc, n in ((50, b.args.sessions), (1, max(100, b.args.sessions // 8))):
        runs = {"submitd": [], "postfix": []}
        cpu = {"submitd": [], "postfix": []}
        client = {"submitd": [], "postfix": []}
        loop = []
        threads = {}
        for _ in range(b.rounds):
            before = sd.count()
            l0, t0 = sd.loop_cpu(), sd.thread_cpu()
            r, scpu, ccpu = timed(sd, lambda: loadgen(b, sd.target(), n, conc, *auth))
            loop.append((sd.loop_cpu() - l0) / n)
            for name, t in sd.thread_cpu().items():
                threads.setdefault(name, []).append((t - t0.get(name, 0.0)) / n)
            if sd.count() - before != n or r["tokens"] != 4 * n:
                raise RuntimeError("auth: submitd stored %d of %d, %d tokens"
                                   % (sd.count() - before, n, r["tokens"]))
            runs["submitd"].append(r)
            cpu["submitd"].append(scpu / n)
            client["submitd"].append(ccpu / n)
            before = pf.count()
            r, scpu, ccpu = timed(pf, lambda: loadgen(b, pf.target(), n, conc, *notls))
            if pf.count() - before != n:
                raise RuntimeError("auth: postfix held %d of %d" % (pf.count() - before, n))
            runs["postfix"].append(r)
            cpu["postfix"].append(scpu / n)
            client["postfix"].append(ccpu / n)
        m = {k: {f: median([r[f] for r in v]) for f in ("sessions_per_s", "p50_ms", "p99_ms")}
             for k, v in runs.items()}
        m["cpu"] = {k: median(v) for k, v in cpu.items()}
        res[conc] = m
        b.result("auth c=%d: submitd %s sessions/s p50 %.1f ms p99 %.1f ms | postfix(hold, "
                 "STARTTLS, no AUTH) %s sessions/s p50 %.1f ms p99 %.1f ms (%s)"
                 % (conc, fmt_rate(m["submitd"]["sessions_per_s"]), m["submitd"]["p50_ms"],
                    m["submitd"]["p99_ms"], fmt_rate(m["postfix"]["sessions_per_s"]),
                    m["postfix"]["p50_ms"], m["postfix"]["p99_ms"],
                    fmt_x(m["submitd"]["sessions_per_s"], m["postfix"]["sessions_per_s"])))
        out("  rounds (sessions/s): " + " | ".join(
            "%s %s" % (k, " ".join(fmt_rate(r["sessions_per_s"]) for r in v))
            for k, v in runs.items()))
        out(cpu_line("session", cpu, client))
        # where it went, by thread: "submitd" is the main thread (SMTP loop
        # 0), sd-smtp-N the other SMTP loops
        out("  CPU per session by thread (us, median): " + ", ".join(
            "%s %.0f" % (k, median(v) * 1e6) for k, v in sorted(threads.items(), key=lambda kv: -median(kv[1]))
            if median(v) * 1e6 >= 1))
        if conc > 1:
            # What the CPU allows, whatever the scheduling: the pair of
            # programs on these cores, submitd with the cores to itself,
            # and its main thread (SMTP loop 0: with smtp.threads > 1 the
            # sessions are spread, so this is no longer the ceiling).
            scpu, ccpu = median(cpu["submitd"]), median(client["submitd"])
            lcpu = median(loop)
            out("  CPU ceilings (sessions/s): submitd + load generator %.0f us on %d cores: %s; "
                "submitd alone %.0f us on %d cores: %s; its event loop %.0f us on one core: %s"
                % ((scpu + ccpu) * 1e6, CORES, fmt_rate(CORES / (scpu + ccpu)), scpu * 1e6,
                   CORES, fmt_rate(CORES / scpu), lcpu * 1e6, fmt_rate(1 / lcpu)))
    # half the peak rate, open loop: the latency target
    peak = res[50]["submitd"]["sessions_per_s"]
    rate = max(1.0, peak / 2)
    n = max(100, int(rate * b.args.half_rate_seconds))
    half = []
    for _ in range(b.rounds):
        half.append(loadgen(b, sd.target(), n, 50, "-r", "%.1f" % rate, *auth))
    hm = {f: median([r[f] for r in half]) for f in ("sessions_per_s", "p50_ms", "p99_ms")}
    res["half"] = hm
    b.result("auth at half the peak (%s sessions/s offered, c<=50): submitd %s sessions/s "
             "p50 %.1f ms p99 %.1f ms | target p99 10 ms (%s)"
             % (fmt_rate(rate), fmt_rate(hm["sessions_per_s"]), hm["p50_ms"], hm["p99_ms"],
                fmt_pct(hm["p99_ms"], 10.0)))
    out("  rounds (p99 ms): " + " ".join("%.1f" % r["p99_ms"] for r in half))
    sd.stop()
    pf.stop()
    return res


def bench_size(b):
    """100 KB and 10 MB messages: MB/s, and submitd's peak RSS per size."""
    res = {}
    hwm = {}
    for label, size, n in (("100 KB", 100 * 1024, b.args.size_small_n),
                           ("10 MB", 10 * 1024 * 1024, b.args.size_large_n)):
        tag = label.replace(" ", "").lower()
        sd = Submitd(b, "size-%s-submitd" % tag).start()
        start_hwm = sd.kb("VmHWM")
        pf = Postfix(b, "size-%s-postfix" % tag).start()
        sk = Sink(b, "size-%s" % tag).start()
        targets = [("submitd", sd), ("postfix", pf), ("sink", sk)]
        for _, srv in targets:
            loadgen(b, srv.target(), 4, 4, "-s", size)
        mbps = {k: [] for k, _ in targets}
        cpu = {k: [] for k, _ in targets}
        client = {k: [] for k, _ in targets}
        for _ in range(b.rounds):
            for name, srv in targets:
                before = srv.count()
                r, scpu, ccpu = timed(srv, lambda: loadgen(b, srv.target(), n, 4, "-s", size))
                got = srv.count() - before
                if got != n:
                    raise RuntimeError("size: %s stored %d of %d" % (name, got, n))
                mbps[name].append(r["mb_per_s"])
                cpu[name].append(scpu / (n * size / MB))
                client[name].append(ccpu / (n * size / MB))
        hwm[label] = sd.kb("VmHWM")
        for srv in (sd, pf, sk):
            srv.stop()
        m = {k: median(v) for k, v in mbps.items()}
        res[label] = m
        extra = ""
        if label != "100 KB":
            extra = " (%s of 100 KB)" % fmt_x(hwm[label], hwm["100 KB"])
        b.result("size %s: submitd %.1f MB/s | postfix(hold) %.1f MB/s (%s) | smtp-sink %.1f MB/s "
                 "(%s) | submitd peak RSS %.1f MB%s (%.1f MB at start)"
                 % (label, m["submitd"], m["postfix"], fmt_x(m["submitd"], m["postfix"]),
                    m["sink"], fmt_pct(m["submitd"], m["sink"]), hwm[label] / 1024, extra,
                    start_hwm / 1024))
        out("  rounds (MB/s): " + " | ".join("%s %s" % (k, " ".join("%.1f" % x for x in v))
                                            for k, v in mbps.items()))
        out(cpu_line("MB", cpu, client))
    res["hwm"] = hwm
    return res


def idle_round(b, name, n, tls):
    """A fresh submitd holding n idle sessions: (server kB/session, client kB/session)."""
    sd = Submitd(b, name, trusted=False,
                 opts=("server.max_connections=20000", "server.max_connections_per_ip=20000")).start()
    time.sleep(0.5)
    base = sd.kb("VmRSS")
    outfile = b.path(name, "idle.out")
    extra = ["-t"] if tls else []
    with open(outfile, "w") as f:
        lg = b.spawn([b.loadgen, "-i", "-n", str(n), "-c", "200", "-w", "240"] + extra +
                     [sd.target()], stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 200
    line = None
    while time.monotonic() < deadline and line is None:
        time.sleep(0.2)
        with open(outfile) as f:
            line = next((ln for ln in f if "idle ready=" in ln), None)
        if lg.poll() is not None and line is None:
            break
    if line is None:
        stop_process(lg)
        raise RuntimeError("idle: the sessions were not all established: %s"
                           % open(outfile).read()[-500:])
    r = kv(line)
    if r["failed"] != 0:
        raise RuntimeError("idle: %d sessions failed" % r["failed"])
    time.sleep(1.0)
    rss = sd.kb("VmRSS")
    stop_process(lg)
    sd.stop()
    return ((rss - base) / n, (r["rss_kb"] - r["rss_start_kb"]) / n, base, rss)


def bench_idle(b):
    """RSS per idle session: 10,000 sessions after EHLO (and after STARTTLS)."""
    n = b.args.idle_sessions
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft < n + 200:
            n = soft - 200
            log("bench: idle: the open-file limit is %d: %d sessions" % (soft, n))
    res = {}
    for tls in (False, True):
        label = "after STARTTLS" if tls else "after EHLO"
        rounds = []
        for i in range(b.rounds):
            rounds.append(idle_round(b, "idle-%s-%d" % ("tls" if tls else "plain", i), n, tls))
        srv = median([r[0] for r in rounds])
        cli = median([r[1] for r in rounds])
        res[label] = (srv, cli)
        b.result("idle %s: submitd %.1f KB/session (%d sessions, RSS %.1f -> %.1f MB) | "
                 "loadgen client side %.1f KB/session (%s) | target 16 KB (%s)"
                 % (label, srv, n, rounds[0][2] / 1024, rounds[0][3] / 1024, cli,
                    fmt_x(srv, cli), fmt_pct(srv, 16.0)))
        out("  rounds (KB/session): submitd " + " ".join("%.2f" % r[0] for r in rounds) +
            " | loadgen " + " ".join("%.2f" % r[1] for r in rounds))
    return res


WRK_LUA = r"""
local tokens = { %(tokens)s }
local addresses = { %(addresses)s }
local i = 0
local mode = "%(mode)s"
request = function()
  i = i %% #tokens + 1
  if mode == "post" then
    return wrk.format("POST", "/v1/verify", {["Content-Type"] = "application/json"},
      '{"token":"' .. tokens[i] .. '","address":"' .. addresses[i] .. '"}')
  elseif mode == "get" then
    return wrk.format("GET", "/v1/verify", {["Submit-Token"] = tokens[i]})
  else
    return wrk.format("GET", "/v1/message", {["Submit-Token"] = tokens[i]})
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk: requests=%%d seconds=%%.3f rps=%%.1f p50_ms=%%.3f p99_ms=%%.3f " ..
    "bytes=%%d errors=%%d non2xx=%%d\n", summary.requests, summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.bytes, e.connect + e.read + e.write + e.timeout,
    e.status))
end
"""


def submit_for_tokens(b, sd, n, size, name):
    """Submits n messages (1 recipient); returns [(address, token)] of recipients."""
    tokfile = b.path(sd.name, name + ".tokens")
    loadgen(b, sd.target(), n, min(n, 8), "-s", size, "-T", tokfile)
    pairs = [ln.split() for ln in open(tokfile) if ln.strip()]
    pairs = [(a, t) for a, t in pairs if a != SENDER]
    if len(pairs) != n:
        raise RuntimeError("expected %d recipient tokens, got %d" % (n, len(pairs)))
    return pairs


def wrk_script(b, sd, name, mode, pairs):
    path = b.path(sd.name, name + ".lua")
    with open(path, "w") as f:
        f.write(WRK_LUA % {"tokens": ", ".join('"%s"' % t for _, t in pairs),
                           "addresses": ", ".join('"%s"' % a for a, _ in pairs),
                           "mode": mode})
    return path


def check_http(sd, mode, token, address):
    """One request by hand before wrk hammers the endpoint: it must be a 200."""
    url = "http://127.0.0.1:%d/v1/%s" % (sd.http_port, "message" if mode == "fetch" else "verify")
    if mode == "post":
        req = urllib.request.Request(url, method="POST", headers={"Content-Type": "application/json"},
                                     data=('{"token":"%s","address":"%s"}' % (token, address)).encode())
    else:
        req = urllib.request.Request(url, headers={"Submit-Token": token})
    with urllib.request.urlopen(req, timeout=30) as resp:
        if resp.status != 200:
            raise RuntimeError("%s %s answered %d" % (mode, url, resp.status))
        return len(resp.read())


def wrk(b, sd, script, seconds, conns):
    url = "http://127.0.0.1:%d/" % sd.http_port
    r = run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "-s", script, url],
            timeout=seconds + 60)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("wrk: ")]
    if not line:
        raise RuntimeError("wrk printed no summary: %s" % r.stdout[-500:])
    res = kv(line[0])
    if res["errors"] or res["non2xx"]:
        raise RuntimeError("wrk: %d socket errors, %d non-2xx answers" % (res["errors"], res["non2xx"]))
    return res


def ed25519_ref(b, op="verify", seconds=2):
    """Raw Ed25519 signatures or verifications per second on one core."""
    r = run([b.ed25519, op, str(seconds)], timeout=seconds + 30)
    return kv(r.stdout)["per_s"]


def ed25519_ref_cpu(b, seconds=2):
    """Raw Ed25519 verifications: (per second of wall-clock time, per second
    of the CPU time the loop got). On a busy machine the first falls with
    the share of the core the loop gets; the second is what a core of its
    own would do, the reference for figures per second of CPU."""
    c0 = child_cpu()
    r = run([b.ed25519, "verify", str(seconds)], timeout=seconds + 30)
    cpu = child_cpu() - c0
    res = kv(r.stdout)
    return res["per_s"], (res["count"] / cpu if cpu > 0 else res["per_s"])


CORES = os.cpu_count() or 1


def budget_line(goal, rate, client_us, server_us, floor_us, floor_what):
    """What a rate leaves submitd of this machine's cores, from figures of
    the same run: at RATE per second the cores give CORES/RATE of CPU per
    unit, the load generator takes its share, the rest is submitd's."""
    if rate <= 0:
        return "  CPU budget for %s: no rate" % goal
    budget = CORES * 1e6 / rate
    left = budget - client_us
    return ("  CPU budget for %s (%s/s): %d cores give %.0f us per unit, the load generator "
            "takes %.0f, leaving submitd %.0f; %s alone take %.0f; submitd spends %.0f (%s)"
            % (goal, fmt_rate(rate), CORES, budget, client_us, left, floor_what, floor_us,
               server_us, "fits" if server_us <= left else "over by %.0f%%"
               % (100.0 * (server_us - left) / max(left, 1.0))))


def bench_api(b):
    """Verification API: confirm and fetch requests/s vs raw Ed25519 verification.
    Per core: requests/s divided by the CPU the API threads (sd-http*) spent,
    in cores, against one core's raw rate: what one API thread would give
    with a core of its own."""
    sd = Submitd(b, "api-submitd", http=True).start()
    small = submit_for_tokens(b, sd, 64, 4096, "small")
    large = submit_for_tokens(b, sd, 8, 1024 * 1024, "large")
    kinds = [("confirm POST /v1/verify", "post", small), ("confirm GET /v1/verify", "get", small),
             ("fetch 4 KB", "fetch", small), ("fetch 1 MB", "fetch", large)]
    scripts = {}
    for label, mode, pairs in kinds:
        check_http(sd, mode, pairs[0][1], pairs[0][0])
        scripts[label] = wrk_script(b, sd, label.split()[0] + "-" + mode + str(len(pairs)), mode, pairs)
        wrk(b, sd, scripts[label], 1, b.args.wrk_connections)  # warm-up
    runs = {label: [] for label, _, _ in kinds}
    cpu = {label: [] for label, _, _ in kinds}
    api_cpu = {label: [] for label, _, _ in kinds}
    per_core = {label: [] for label, _, _ in kinds}
    ref, ref_cpu = [], []
    for _ in range(b.rounds):
        for label, _, _ in kinds:
            a0 = sd.threads_cpu("sd-http")
            r, scpu, _ = timed(sd, lambda: wrk(b, sd, scripts[label], b.args.wrk_seconds,
                                               b.args.wrk_connections))
            acpu = sd.threads_cpu("sd-http") - a0
            runs[label].append(r)
            cpu[label].append(scpu / r["requests"])
            api_cpu[label].append(acpu / r["requests"])
            per_core[label].append(r["requests"] / acpu if acpu > 0 else 0.0)
            wall, per_cpu = ed25519_ref_cpu(b)
            ref.append(wall)
            ref_cpu.append(per_cpu)
    sd.stop()
    refm, refc = median(ref), median(ref_cpu)
    res = {"ed25519": refm, "ed25519_cpu": refc}
    for label, _, _ in kinds:
        m = {f: median([r[f] for r in runs[label]]) for f in ("rps", "p50_ms", "p99_ms")}
        mbps = median([r["bytes"] / r["seconds"] / MB for r in runs[label]])
        m["per_core"] = median(per_core[label])
        res[label] = m
        b.result("api %s: submitd %s req/s p50 %.2f ms p99 %.2f ms%s | raw Ed25519 verify (1 core) "
                 "%s/s (%s)" % (label, fmt_rate(m["rps"]), m["p50_ms"], m["p99_ms"],
                                " (%.0f MB/s)" % mbps if "MB" in label else "",
                                fmt_rate(refm), fmt_pct(m["rps"], refm)))
        if label.startswith("confirm"):
            # The reference per second of the CPU the loop got: on a busy
            # machine its wall-clock rate falls with its share of a core,
            # while the API's figure is per second of its own CPU already.
            b.result("api %s per core of API CPU: %s req/s per core | raw Ed25519 verify %s/s per "
                     "core of its CPU (%s; target 70%%; against its wall-clock rate %s/s: %s)"
                     % (label, fmt_rate(m["per_core"]), fmt_rate(refc), fmt_pct(m["per_core"], refc),
                        fmt_rate(refm), fmt_pct(m["per_core"], refm)))
        out("  rounds (req/s): " + " ".join(fmt_rate(r["rps"]) for r in runs[label]) +
            "; submitd CPU per request %s us, API threads %s us (one Ed25519 verification: %.0f us); "
            "per core of API CPU (req/s): %s"
            % (fmt_us(cpu[label]), fmt_us(api_cpu[label]), 1e6 / refm,
               " ".join(fmt_rate(x) for x in per_core[label])))
    out("  rounds (Ed25519 verify/s): " + " ".join(fmt_rate(x) for x in ref) +
        "; per second of its CPU: " + " ".join(fmt_rate(x) for x in ref_cpu))
    return res


def bench_cluster_verify(b):
    """Verify at node 1 for node 1's tokens against node 1 for node 2's
    tokens (docs/cluster.md): the second is checked with node 2's stored key
    at node 1 and asked of node 2 over HTTP (kept-alive connections)."""
    p1, p2 = free_port(), free_port()
    nodes = []
    for name, port, peer, peer_port in (("node1", p1, "node2", p2), ("node2", p2, "node1", p1)):
        sd = Submitd(b, "cv-" + name, http=True,
                     opts=("http.listen=127.0.0.1:%d" % port, "tokens.issuer=" + name,
                           "cluster.peers=%s=http://127.0.0.1:%d" % (peer, peer_port),
                           "cluster.refresh_interval=1"))
        sd.http_port = port
        nodes.append(sd.start())
    n1, n2 = nodes
    own = submit_for_tokens(b, n1, 64, 4096, "own")
    other = submit_for_tokens(b, n2, 64, 4096, "other")
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/keys" % p1, timeout=30) as resp:
            if any(k["node"] == "node2" for k in json.load(resp)["keys"]):
                break
        if time.monotonic() > deadline:
            raise RuntimeError("node1 did not learn node2's keys in 30 s")
        time.sleep(0.2)
    kinds = [("node 1's tokens", own), ("node 2's tokens", other)]
    scripts = {}
    for label, pairs in kinds:
        check_http(n1, "post", pairs[0][1], pairs[0][0])
        scripts[label] = wrk_script(b, n1, "cv-" + label.split()[1].strip("'s"), "post", pairs)
        wrk(b, n1, scripts[label], 1, b.args.wrk_connections)  # warm-up
    runs = {label: [] for label, _ in kinds}
    cpu = {label: [] for label, _ in kinds}
    for _ in range(b.rounds):
        for label, _ in kinds:
            c0 = n1.cpu() + n2.cpu()
            r = wrk(b, n1, scripts[label], b.args.wrk_seconds, b.args.wrk_connections)
            runs[label].append(r)
            cpu[label].append((n1.cpu() + n2.cpu() - c0) / r["requests"])
    for sd in nodes:
        sd.stop()
    res = {}
    for label, _ in kinds:
        res[label] = {f: median([r[f] for r in runs[label]]) for f in ("rps", "p50_ms", "p99_ms")}
        out("  rounds (req/s, %s): %s; CPU per request, both nodes: %s us"
            % (label, " ".join(fmt_rate(r["rps"]) for r in runs[label]), fmt_us(cpu[label])))
    a, o = res["node 1's tokens"], res["node 2's tokens"]
    b.result("cluster-verify POST /v1/verify at node 1: node 2's tokens %s req/s p50 %.2f ms p99 %.2f ms | "
             "node 1's own %s req/s p50 %.2f ms p99 %.2f ms (%s)"
             % (fmt_rate(o["rps"]), o["p50_ms"], o["p99_ms"], fmt_rate(a["rps"]), a["p50_ms"], a["p99_ms"],
                fmt_pct(o["rps"], a["rps"])))
    return res


BULK_SQL = """\
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -1048576;
BEGIN;
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
INSERT INTO messages (message_id, public_id, received_at, auth_login, client_address, helo,
                      envelope_from, body_type, smtputf8, size, sha256)
SELECT i, lower(hex(randomblob(8))),
       strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d seconds', 86400 + ({n} - i) * {span} / {n})),
       printf('user%d@example.org', i % 1000), '127.0.0.1', 'bulk.example.org',
       printf('user%d@example.org', i % 1000), '7BIT', 0, 300, lower(hex(randomblob(32)))
FROM seq;
INSERT INTO bodies (body_id, sha256, refs, content)
SELECT message_id, sha256, 0, CAST(printf('From: <%s>' || char(13, 10) || 'To: <rcpt%d@example.net>' ||
       char(13, 10) || 'Subject: bulk %d' || char(13, 10) || char(13, 10) || '%s' || char(13, 10),
       envelope_from, message_id % 5000, message_id, hex(randomblob(100))) AS BLOB)
FROM messages;
UPDATE messages SET body_id = message_id,
                    size = (SELECT length(content) FROM bodies b WHERE b.body_id = messages.message_id);
INSERT INTO recipients (recipient_id, message_id, position, address, state, attempts,
                        next_attempt_at, last_reply, updated_at)
SELECT message_id, message_id, 1, printf('rcpt%d@example.net', message_id % 5000), 'delivered', 1,
       NULL, '250 2.0.0 Ok: queued', received_at
FROM messages;
INSERT INTO tokens (token_id, message_id, recipient_id, role, address, key_id, issued_at,
                    expires_at, revoked_at)
SELECT lower(hex(randomblob(8))), m.message_id, m.message_id, 'recipient',
       printf('rcpt%d@example.net', m.message_id % 5000), k.key_id, m.received_at,
       strftime('%Y-%m-%d %H:%M:%S.000', m.received_at, '+7 days'), NULL
FROM messages m, (SELECT key_id FROM signing_keys WHERE state = 'active') k;
INSERT INTO tokens (token_id, message_id, recipient_id, role, address, key_id, issued_at,
                    expires_at, revoked_at)
SELECT lower(hex(randomblob(8))), m.message_id, NULL, 'sender', m.envelope_from, k.key_id,
       m.received_at, strftime('%Y-%m-%d %H:%M:%S.000', m.received_at, '+7 days'), NULL
FROM messages m, (SELECT key_id FROM signing_keys WHERE state = 'active') k;
COMMIT;
PRAGMA journal_mode = WAL;
"""


def bulk_fill(b, data_dir, n):
    """Fills a stopped submitd's database with n messages (1 recipient, 2 tokens each)."""
    db = os.path.join(data_dir, "submitd.db")
    t0 = time.monotonic()
    # span: the messages' ages run from 1 day to 25 days, oldest first
    run(["sqlite3", db], input=BULK_SQL.format(n=n, span=24 * 86400), timeout=1800)
    log("bench: scale: %d messages inserted in %.0f s (%.0f MB)"
        % (n, time.monotonic() - t0, os.path.getsize(db) / MB))


def bench_scale(b):
    """Acceptance and fetch latency with 10k and with 1M stored messages."""
    sizes = [(fmt_count(b.args.scale_small), b.args.scale_small),
             (fmt_count(b.args.scale_large), b.args.scale_large)]
    # one submitd creates the schema and its keys, then the copies are filled
    proto = Submitd(b, "scale-proto").start()
    proto.stop()
    servers = {}
    for label, n in sizes:
        data = b.path("scale-" + label, "data")
        os.makedirs(os.path.dirname(data), exist_ok=True)
        shutil.copytree(proto.data, data)
        bulk_fill(b, data, n)
        servers[label] = Submitd(b, "scale-" + label, http=True, data_dir=data)
    tokens = {}
    for label, sd in servers.items():
        t0 = time.monotonic()
        sd.start()
        log("bench: scale: submitd on %s messages ready in %.1f s" % (label, time.monotonic() - t0))
        tokens[label] = submit_for_tokens(b, sd, 64, 4096, "scale")
        check_http(sd, "fetch", tokens[label][0][1], tokens[label][0][0])
        smtp_source(b, sd.target(), 500)
    scripts = {label: wrk_script(b, sd, "fetch", "fetch", tokens[label])
               for label, sd in servers.items()}
    acc = {label: [] for label in servers}
    fetch = {label: [] for label in servers}
    n = b.args.messages
    for _ in range(b.rounds):
        for label, sd in servers.items():
            before = sd.count()
            secs = smtp_source(b, sd.target(), n)
            acc[label].append(counted_rate(sd, secs, before, n))
        for label, sd in servers.items():
            fetch[label].append(wrk(b, sd, scripts[label], b.args.wrk_seconds, 4))
    counts = {label: sd.count() for label, sd in servers.items()}
    for sd in servers.values():
        sd.stop()
    am = {k: median(v) for k, v in acc.items()}
    fm = {k: {f: median([r[f] for r in v]) for f in ("rps", "p50_ms", "p99_ms")}
          for k, v in fetch.items()}
    big, small = sizes[1][0], sizes[0][0]

    def change(a, ref):  # a relative to ref, in percent
        return "%+.1f%%" % (100.0 * (a - ref) / ref) if ref > 0 else "-"

    b.result("scale acceptance: %s stored %s msg/s | %s stored %s msg/s (%s at %s)"
             % (big, fmt_rate(am[big]), small, fmt_rate(am[small]), change(am[big], am[small]), big))
    b.result("scale fetch 4 KB (4 connections): %s stored p50 %.2f ms p99 %.2f ms %s req/s | "
             "%s stored p50 %.2f ms p99 %.2f ms %s req/s (at %s: p50 %s, p99 %s, req/s %s)"
             % (big, fm[big]["p50_ms"], fm[big]["p99_ms"], fmt_rate(fm[big]["rps"]),
                small, fm[small]["p50_ms"], fm[small]["p99_ms"], fmt_rate(fm[small]["rps"]), big,
                change(fm[big]["p50_ms"], fm[small]["p50_ms"]),
                change(fm[big]["p99_ms"], fm[small]["p99_ms"]),
                change(fm[big]["rps"], fm[small]["rps"])))
    out("  rounds (msg/s): " + " | ".join("%s %s" % (k, " ".join(fmt_rate(x) for x in v))
                                         for k, v in acc.items()))
    out("  rounds (fetch p99 ms): " + " | ".join("%s %s" % (k, " ".join("%.2f" % r["p99_ms"] for r in v))
                                                for k, v in fetch.items()))
    out("  messages stored at the end: " + ", ".join("%s %d" % kv_ for kv_ in counts.items()))
    return {"acceptance": am, "fetch": fm}


def machine_header(b):
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, timeout=30).stdout.strip()
        except Exception:
            return "?"
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2 / 1048576}' /proc/meminfo")
    fs = sh("df -T '%s' | awk 'NR == 2 {print $2}'" % b.tmp)
    out("bench: %s, %s cores (%s), %s memory, temp dir on %s, kernel %s, load average %s"
        % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), os.cpu_count(), cpu, mem, fs, os.uname().release,
           loadavg()))
    busy = float(loadavg().split()[0])
    if busy > 0.5:
        out("bench: warning: the machine is busy before we start (load average %.2f on %d cores): "
            "the figures will be lower and noisier than on an idle machine" % (busy, os.cpu_count()))
    out("bench: submitd %s, postfix %s, %s, sqlite %s, %s, %d rounds each (medians)"
        % (sh("git -C '%s' describe --always --dirty 2>/dev/null" % os.path.dirname(b.build)) or "?",
           sh("postconf -d -h mail_version"), sh("wrk -v 2>&1 | head -1 | cut -d' ' -f1-2"),
           sh("sqlite3 -version | cut -d' ' -f1"), sh("openssl version | cut -d' ' -f1-2"),
           b.rounds))


def attribute_samples(script_text):
    """perf script output (-F tid,ip,sym,dso) -> Counters of samples by the
    innermost submitd function on each stack (the library and kernel time a
    function causes counts to it), by library, and inclusive by function."""
    inner, dsos, incl = {}, {}, {}
    n = 0
    for block in script_text.split("\n\n"):
        frames = []
        for ln in block.strip().splitlines()[1:]:
            m = re.match(r"\s*[0-9a-f]+\s+(.*)\s+\((.*)\)$", ln)
            if m:
                frames.append((m.group(1).split("+0x")[0].strip(), m.group(2)))
        if not frames:
            continue
        # an inlined frame belongs to the object of the next real frame
        for i in range(len(frames) - 2, -1, -1):
            if frames[i][1] == "inlined":
                frames[i] = (frames[i][0], frames[i + 1][1])
        n += 1
        leaf_dso = os.path.basename(frames[0][1])
        dsos[leaf_dso] = dsos.get(leaf_dso, 0) + 1
        own = [sym for sym, dso in frames if os.path.basename(dso) == "submitd"]
        key = own[0] if own else "(outside submitd: %s)" % leaf_dso
        inner[key] = inner.get(key, 0) + 1
        for sym in set(own):
            incl[sym] = incl.get(sym, 0) + 1
    return n, inner, dsos, incl


def print_profiles(b):
    """For each profiled submitd: where its CPU time goes."""
    for name, data in b.profiles:
        if not os.path.exists(data):
            continue
        r = subprocess.run(priv(["perf", "script", "-i", data, "-F", "tid,ip,sym,dso"]),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=900)
        n, inner, dsos, incl = attribute_samples(r.stdout)
        if n == 0:
            continue

        def top(d, k):
            return sorted(d.items(), key=lambda kv_: -kv_[1])[:k]
        out("profile %s (%d samples, %% of submitd's CPU time):" % (name, n))
        out("  by library: " + ", ".join("%s %.1f%%" % (k, 100.0 * v / n) for k, v in top(dsos, 8)))
        out("  by innermost submitd function (with the library and kernel time it calls):")
        for k, v in top(inner, 15):
            out("    %5.1f%%  %s" % (100.0 * v / n, k))
        out("  inclusive:")
        for k, v in top(incl, 15):
            out("    %5.1f%%  %s" % (100.0 * v / n, k))


def main():
    ap = argparse.ArgumentParser(description="submitd benchmarks (docs/performance.md)")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="benchmarks to run (default: all): " + " ".join(BENCHMARKS))
    ap.add_argument("--build", default="build", help="the meson build directory")
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--ed25519", required=True)
    ap.add_argument("--rounds", type=int, default=5, help="rounds per figure (median; >= 3)")
    ap.add_argument("--messages", type=int, default=3000, help="messages per acceptance round")
    ap.add_argument("--sessions", type=int, default=2000, help="sessions per auth round at c=50")
    ap.add_argument("--half-rate-seconds", type=float, default=4)
    ap.add_argument("--size-small-n", type=int, default=300)
    ap.add_argument("--size-large-n", type=int, default=12)
    ap.add_argument("--idle-sessions", type=int, default=10000)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--wrk-connections", type=int, default=8)
    ap.add_argument("--scale-small", type=int, default=10000)
    ap.add_argument("--scale-large", type=int, default=1000000)
    ap.add_argument("--profile", action="store_true",
                    help="record every submitd with perf record -g; print the top functions")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    ap.add_argument("--set", action="append", default=[], metavar="K=V",
                    help="a setting for every submitd the benchmarks start, after their own "
                         "(e.g. --set smtp.threads=1); repeatable")
    args = ap.parse_args()
    names = args.names or BENCHMARKS
    bad = [n for n in names if n not in BENCHMARKS]
    if bad or args.rounds < 1:
        ap.error("unknown benchmark %s (choose from %s)" % (" ".join(bad), " ".join(BENCHMARKS)))

    b = Bench(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    rc = 0
    t0 = time.monotonic()
    try:
        machine_header(b)
        for name in names:
            t1 = time.monotonic()
            try:
                globals()["bench_" + name.replace("-", "_")](b)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                b.result("%s: FAILED: %s" % (name, e))
                rc = 1
            out("  (%s took %.0f s; load average %s)" % (name, time.monotonic() - t1, loadavg()))
        print_profiles(b)
    except KeyboardInterrupt:
        log("bench: interrupted")
        rc = 130
    finally:
        b.close()
    out("")
    out("summary (%.0f s):" % (time.monotonic() - t0))
    for line in b.results:
        out("  " + line)
    return rc


if __name__ == "__main__":
    sys.exit(main())
