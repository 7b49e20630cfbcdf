"""harness.py: run a real submitd for integration tests.

A Submitd owns one temporary data directory and one server process bound to
two free loopback ports (plain+STARTTLS and implicit TLS). It offers the
helpers the tests need: submitctl, the database through the sqlite3 CLI,
and a raw SMTP client that shows replies byte for byte, so that a test can
check exactly what went over the wire.

The build directory comes from the environment variable SUBMITD_BUILD_DIR
(meson sets it to the project's build root); there is no default, so a test
never runs a stale binary from some other tree by accident.

With SUBMITD_VALGRIND=1 (`meson test --setup memcheck`, see
tests/integration/meson.build) every submitd and submitctl that the tests
start through command() (so Submitd.start, Submitd.submitctl and
run_program) runs under valgrind's memcheck (but for repeats of the same
submitctl command: MEMCHECK_REPEATS), logging to
BUILD/meson-logs/memcheck/. Any memcheck error or definite leak fails the
test that stopped the process (Submitd.stop, run_program) with the report,
and, should a code path not check, the whole test file at exit. Timeouts
of the harness grow by SUBMITD_TIMEOUT_SCALE (default 10 under memcheck).
"""

import atexit
import base64
import glob
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

MEMCHECK = os.environ.get("SUBMITD_VALGRIND", "") not in ("", "0")
# memcheck runs a program some 20-50 times slower (argon2id even more)
TIMEOUT_SCALE = float(os.environ.get("SUBMITD_TIMEOUT_SCALE") or (10 if MEMCHECK else 1))
READY_TIMEOUT = 20.0 * TIMEOUT_SCALE
STOP_TIMEOUT = 20.0 * TIMEOUT_SCALE
HOSTNAME = "submitd.test"


def build_dir():
    d = os.environ.get("SUBMITD_BUILD_DIR")
    if not d:
        raise RuntimeError("SUBMITD_BUILD_DIR is not set: point it at the meson build directory "
                           "(meson test sets it)")
    return d


def program(name):
    """Path of a built program: meson puts server/ targets in BUILD/server/."""
    for p in (os.path.join(build_dir(), "server", name), os.path.join(build_dir(), name)):
        if os.access(p, os.X_OK):
            return p
    raise RuntimeError("%s not found in %s (or its server/ folder): build it first" % (name, build_dir()))


# ---------------------------------------------------------------- memcheck

MEMCHECK_EXIT = 97      # valgrind's exit status when it reported errors
MEMCHECK_SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "valgrind.supp")
_memcheck_dir = None
_memcheck_seq = 0


def memcheck_dir():
    """This test process's folder of valgrind logs (made on first use)."""
    global _memcheck_dir
    if _memcheck_dir is None:
        base = os.path.join(build_dir(), "meson-logs", "memcheck")
        os.makedirs(base, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_]", "_", os.path.basename(sys.argv[-1]))
        _memcheck_dir = tempfile.mkdtemp(prefix=name + "-", dir=base)
    return _memcheck_dir


def valgrind_argv(log_file):
    # --errors-for-leak-kinds=definite: a definitely lost block counts as an
    # error (and so in --error-exitcode); other leak kinds are not reported.
    return ["valgrind", "--tool=memcheck", "--error-exitcode=%d" % MEMCHECK_EXIT,
            "--leak-check=full", "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
            "--num-callers=30", "--child-silent-after-fork=yes",
            "--suppressions=" + os.path.normpath(MEMCHECK_SUPP),
            "--log-file=" + log_file] + os.environ.get("SUBMITD_VALGRIND_OPTS", "").split()


# submitctl commands that a test file runs many times (test_clients checks
# some hundred tokens with "token verify", test_relay adds its sender with
# "user add" for every server) run under memcheck only their first
# SUBMITD_VALGRIND_REPEATS times (default 10; 0: always), then natively:
# at some seconds each under valgrind, the hundredth run of the same code
# costs minutes and finds nothing the first ten did not. submitd itself
# always runs under memcheck.
LSAN_SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lsan.supp")


def sanitizer_env(extra):
    """The environment of a submitd: ours, LeakSanitizer's suppressions of
    third-party leaks (tests/lsan.supp) and the server's own additions. A
    value for ASAN_OPTIONS or LSAN_OPTIONS in extra is appended to the
    inherited one."""
    env = dict(os.environ)
    lsan = env.get("LSAN_OPTIONS", "")
    env["LSAN_OPTIONS"] = (lsan + ":" if lsan else "") + "suppressions=" + os.path.abspath(LSAN_SUPP)
    for k, v in extra.items():
        if k in ("ASAN_OPTIONS", "LSAN_OPTIONS") and env.get(k):
            env[k] = env[k] + ":" + v
        else:
            env[k] = v
    return env


MEMCHECK_REPEATS = int(os.environ.get("SUBMITD_VALGRIND_REPEATS") or 10)
_memcheck_runs = {}     # (program, command) -> runs under memcheck
_native_runs = {}       # (program, command) -> runs left native


def _subcommand(args):
    """The first two words of a command line after its -c/-o options."""
    words, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-c", "-o"):
            skip = True
        elif not a.startswith("-"):
            words.append(a)
    return " ".join(words[:2])


def command(name, args=()):
    """The argv that runs the built program name, and the glob of its memcheck
    logs (None when not under memcheck): each call gets logs of its own.
    args (the command line to come) decides whether a repeat runs natively."""
    global _memcheck_seq
    path = program(name)
    if not MEMCHECK:
        return [path], None
    if name != "submitd" and MEMCHECK_REPEATS > 0:
        key = (name, _subcommand(args))
        if _memcheck_runs.get(key, 0) >= MEMCHECK_REPEATS:
            _native_runs[key] = _native_runs.get(key, 0) + 1
            return [path], None
        _memcheck_runs[key] = _memcheck_runs.get(key, 0) + 1
    _memcheck_seq += 1
    stem = os.path.join(memcheck_dir(), "%s-%03d" % (name, _memcheck_seq))
    return valgrind_argv(stem + ".%p.log") + [path], stem + ".*.log"


_SUMMARY_RE = re.compile(r"^==\d+== ERROR SUMMARY: (\d+) errors", re.M)
_LINE_RE = re.compile(r"^==\d+== (\S.*)$")


def memcheck_log_errors(text):
    """Number of errors in one valgrind log. A process killed with SIGKILL has
    no ERROR SUMMARY: then count the error headers (lines after the preamble
    that are neither indented nor valgrind's own warnings)."""
    counts = _SUMMARY_RE.findall(text)
    if counts:
        return sum(int(n) for n in counts)
    lines = text.splitlines()
    start = next((i + 1 for i, l in enumerate(lines) if "== Parent PID: " in l), len(lines))
    n = 0
    for l in lines[start:]:
        m = _LINE_RE.match(l)
        if m and not m.group(1).startswith("Warning: "):
            n += 1
    return n


def memcheck_failures(pattern):
    """The logs matching pattern that report errors, as one text."""
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path, errors="replace") as f:
            text = f.read()
        if memcheck_log_errors(text):
            out.append("--- %s ---\n%s" % (path, text[-30000:]))
    return "\n".join(out)


def check_memcheck(pattern, what):
    """Raise AssertionError with the reports when the logs show errors."""
    if pattern is None:
        return
    bad = memcheck_failures(pattern)
    if bad:
        raise AssertionError("memcheck found errors in %s\n%s" % (what, bad))


def run_program(name, args, **kw):
    """subprocess.run of a built program (under memcheck when enabled, with
    its timeout scaled); memcheck errors raise AssertionError."""
    argv, logs = command(name, args)
    if kw.get("timeout") is not None:
        kw["timeout"] *= TIMEOUT_SCALE
    p = subprocess.run(argv + list(args), **kw)
    check_memcheck(logs, "%s %s" % (name, " ".join(args)))
    return p


def _memcheck_at_exit():
    # The net under every path that does not check (a test that failed
    # before stop(), a killed server, a caught AssertionError): any log of
    # this process with errors makes the process, so the test file, fail.
    if _memcheck_dir is None:
        return
    if _native_runs:
        sys.stderr.write("\nmemcheck: run natively after %d under memcheck (SUBMITD_VALGRIND_REPEATS): %s\n"
                         % (MEMCHECK_REPEATS, ", ".join("%s %s %d times" % (k[0], k[1], n)
                                                        for k, n in sorted(_native_runs.items()))))
    bad = memcheck_failures(os.path.join(_memcheck_dir, "*.log"))
    if bad:
        sys.stdout.flush()
        sys.stderr.write("\nmemcheck found errors (logs in %s):\n%s\n" % (_memcheck_dir, bad))
        sys.stderr.flush()
        os._exit(1)


if MEMCHECK:
    atexit.register(_memcheck_at_exit)


_PORTS_GIVEN = set()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A loopback port that was free a moment ago (bind to 0, read, close),
    and that this process has not handed out before: the kernel may give
    a port it just gave again once the probe closed, and a server started
    with the same port for two listeners refuses to start (it happened:
    smtp.listen_tls and http.listen got one port)."""
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def wait_for(what, check, timeout, every=0.1):
    """check()'s first true value, asked every `every` seconds for at most
    timeout seconds; AssertionError naming `what` after that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = check()
        if v:
            return v
        time.sleep(every)
    raise AssertionError("still not the case after %.0f s: %s" % (timeout, what))


def client_tls_context():
    """The server's certificate is self-signed: encrypt, do not verify."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def which(name):
    return shutil.which(name)


# submitd refuses to keep root: started as root (as CI runs the tests) it
# must drop to an unprivileged user, which scripts/deps creates.
RUN_USER = "submitd"


def run_as_user():
    """The server.user a test server needs: RUN_USER under root, else none."""
    return RUN_USER if os.geteuid() == 0 else ""


def share_with_server(path):
    """Let the server, once it has dropped root, read a file a test wrote
    (a password file, a CA file): hand it over and open its folder."""
    if os.geteuid() != 0:
        return path
    import pwd
    pw = pwd.getpwnam(RUN_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(os.path.dirname(path), 0o755)
    return path


# ---------------------------------------------------------------- replies

class Reply:
    """One complete SMTP reply. raw_lines keep their CRLF, for length checks."""

    def __init__(self, raw):
        self.raw = raw
        self.raw_lines = [l + b"\r\n" for l in raw.split(b"\r\n") if l != b""]
        if not self.raw_lines:
            raise ValueError("empty reply")
        codes = set()
        self.lines = []
        for i, l in enumerate(self.raw_lines):
            # RFC 5321 4.2: Reply-code [ SP textstring ] CRLF, "-" on all but the last
            m = re.match(rb"^(\d{3})(?:([- ])(.*))?\r\n$", l, re.S)
            if not m:
                raise ValueError("malformed reply line %r" % l)
            last = i == len(self.raw_lines) - 1
            if (m.group(2) != b"-") != last:
                raise ValueError("continuation marker wrong on line %r of %r" % (l, raw))
            codes.add(int(m.group(1)))
            self.lines.append((m.group(3) or b"").decode("utf-8", "replace"))
        if len(codes) != 1:
            raise ValueError("reply lines carry different codes: %r" % raw)
        self.code = codes.pop()

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


def parse_replies(data):
    """Split a byte string holding several complete replies into Reply objects."""
    out, cur = [], b""
    if not data.endswith(b"\r\n"):
        raise ValueError("incomplete line at the end: %r" % data[-80:])
    for l in data[:-2].split(b"\r\n"):
        cur += l + b"\r\n"
        if l[3:4] != b"-":
            out.append(Reply(cur))
            cur = b""
    if cur:
        raise ValueError("incomplete reply at the end: %r" % cur)
    return out


TOKEN_RE = re.compile(r"v4\.public\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?")
TOKEN_LINE_RE = re.compile(
    r"^2\.1\.13 (?:<(?P<addr>[^<>]*)> )?(?P<token>v4\.public\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?)"
    r"(?P<saved> Saved)?$")


class TokenLine:
    def __init__(self, raw, address, token, last):
        self.raw = raw          # the wire line, CRLF included
        self.address = address  # None when the server left it out
        self.token = token
        self.last = last

    def __repr__(self):
        return "TokenLine(%r, %r, last=%r)" % (self.address, self.token[:24] + "...", self.last)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jti_of(token):
    """The jti claim: the payload is the JSON before the 64-byte signature."""
    raw = b64url_decode(token.split(".")[2])
    return json.loads(raw[:-64])["jti"]


def kid_of(token):
    """The kid in the token's footer."""
    return json.loads(b64url_decode(token.split(".")[3]))["kid"]


def parse_token_reply(reply):
    """Parse the end-of-data reply with tokens. Raises AssertionError with the
    reply when a line does not have the documented shape."""
    if reply.code != 250:
        raise AssertionError("end of data not accepted: %r" % reply)
    out = []
    for i, (raw, text) in enumerate(zip(reply.raw_lines, reply.lines)):
        m = TOKEN_LINE_RE.match(text)
        last = i == len(reply.lines) - 1
        if not m:
            raise AssertionError("token line %d malformed: %r" % (i, raw))
        if bool(m.group("saved")) != last:
            raise AssertionError("'Saved' must end the last line and only it: %r" % raw)
        out.append(TokenLine(raw, m.group("addr"), m.group("token"), last))
    return out


# ---------------------------------------------------------- raw SMTP client

class RawSMTP:
    """A minimal SMTP client that sends exactly the bytes it is given and
    returns complete replies. For dialogues the real clients cannot produce."""

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = client_tls_context().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection; unread: %r" % self.buf)
        self.buf += chunk

    def reply(self):
        """Read lines until one whose code is followed by a space."""
        raw = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            raw += line + b"\r\n"
            if len(line) < 4 or line[3:4] != b"-":
                return Reply(raw)

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def closed_by_peer(self, timeout=5.0):
        """True when the server closes the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True

    def quit(self):
        """QUIT, and wait for the server's close. The server closes the
        socket only once it has freed the session, so after this the session
        no longer counts against server.max_connections(_per_ip); the 221
        alone arrives before that (a STARTTLS session is freed a poll later,
        once its last octets have left). Returns the reply to QUIT."""
        r = self.cmd("QUIT")
        if r.code != 221:
            raise AssertionError("QUIT refused: %r" % r)
        if not self.closed_by_peer():
            raise AssertionError("server left the connection open after 221 to QUIT")
        return r

    def ehlo(self, name="client.test"):
        r = self.cmd("EHLO " + name)
        if r.code != 250:
            raise AssertionError("EHLO refused: %r" % r)
        return r

    def starttls(self):
        r = self.cmd("STARTTLS")
        if r.code != 220:
            raise AssertionError("STARTTLS refused: %r" % r)
        if self.buf:
            raise AssertionError("data after 220 to STARTTLS was buffered: %r" % self.buf)
        self.sock = client_tls_context().wrap_socket(self.sock)
        return r

    def auth_plain(self, login, password):
        arg = base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()).decode()
        return self.cmd("AUTH PLAIN " + arg)

    def login_session(self, login, password, name="client.test"):
        """EHLO, STARTTLS (when not already TLS), EHLO, AUTH PLAIN; asserts 235."""
        self.ehlo(name)
        if not isinstance(self.sock, ssl.SSLSocket):
            self.starttls()
            self.ehlo(name)
        r = self.auth_plain(login, password)
        if r.code != 235:
            raise AssertionError("AUTH PLAIN %s refused: %r" % (login, r))
        return r


def dot_stuff(body):
    """What a client puts on the wire for DATA: leading dots doubled, then the end mark."""
    assert body.endswith(b"\r\n")
    lines = body.split(b"\r\n")[:-1]
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


# ---------------------------------------------------------------- server

class Submitd:
    """One server: `with Submitd() as s:` or start()/stop().

    options: extra {"section.key": "value"} passed with -o, after the
    harness's own (data_dir, listen, listen_tls, hostname, fast AUTH
    failure settings so that tests of wrong passwords do not sleep, and no
    sending limits, so that tests that send hundreds of messages from one
    login or address are not cut off: test_limits sets its own).
    """

    DEFAULTS = {
        "auth.delay_ms": "0",
        "auth.max_failures": "1000",
        "limits.user_messages_per_hour": "0",
        "limits.user_recipients_per_day": "0",
        "limits.ip_messages_per_hour": "0",
    }

    def __init__(self, options=None, tls_listener=True, keep=False):
        self.tmp = tempfile.mkdtemp(prefix="submitd-it-")
        # the dropped user must reach data_dir (which submitd hands to it)
        os.chmod(self.tmp, 0o755)
        self.data_dir = os.path.join(self.tmp, "var")
        self.log_path = os.path.join(self.tmp, "submitd.log")
        self.port = free_port()
        self.tls_port = free_port() if tls_listener else None
        self.http_port = free_port()
        self.hostname = HOSTNAME
        self.keep = keep or bool(os.environ.get("SUBMITD_KEEP"))
        opts = {
            "server.data_dir": self.data_dir,
            "server.hostname": self.hostname,
            "smtp.listen": "127.0.0.1:%d" % self.port,
            "smtp.listen_tls": "127.0.0.1:%d" % self.tls_port if tls_listener else "",
            "http.listen": "127.0.0.1:%d" % self.http_port,
        }
        opts.update(self.DEFAULTS)
        if run_as_user():
            opts["server.user"] = run_as_user()
        opts.update(options or {})
        self.options = opts
        m = re.match(r"^127\.0\.0\.1:(\d+)$", opts["http.listen"])
        if m:
            self.http_port = int(m.group(1))
        self.proc = None
        self.log_file = None
        self.memcheck_logs = None
        # argv put before submitd's own, e.g. strace's (then proc is the
        # wrapper, and the test reaches submitd through it)
        self.wrapper = []
        # environment variables added for this server only
        self.env = {}

    # -- options shared by submitd and submitctl, so that both see one config
    def option_args(self):
        args = []
        for k, v in self.options.items():
            args += ["-o", "%s=%s" % (k, v)]
        return args

    @property
    def db_path(self):
        return os.path.join(self.data_dir, "submitd.db")

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self):
        self.log_file = open(self.log_path, "ab")
        seen = len(self.log())   # a restart appends: look only at the new run
        argv, self.memcheck_logs = command("submitd")
        cmd = self.wrapper + argv + self.option_args()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=self.log_file, cwd=self.tmp, env=sanitizer_env(self.env))
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if "event=ready" in self.log()[seen:]:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("submitd exited with %s before event=ready; command %s\n--- log ---\n%s"
                                   % (self.proc.returncode, cmd, self.log()))
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("submitd not ready after %.0f s; command %s\n--- log ---\n%s"
                           % (READY_TIMEOUT, cmd, self.log()))

    def stop(self, check=True):
        """SIGTERM, wait, and (check) require exit status 0. Returns the status.
        Under memcheck, errors in the valgrind log fail whatever check says."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("submitd did not stop within %.0f s of SIGTERM\n--- log ---\n%s"
                                     % (STOP_TIMEOUT, self.log()))
        self.proc = None
        self.log_file.close()
        check_memcheck(self.memcheck_logs, "submitd (exit status %r; log %s)" % (rc, self.log_path))
        if check and rc != 0:
            raise AssertionError("submitd exited with %r after SIGTERM (expected 0)\n--- log ---\n%s"
                                 % (rc, self.log()))
        return rc

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop(check=exc_type is None)
        finally:
            self.cleanup()

    # -- administration
    def submitctl(self, *args, input=None, check=True):
        """Run submitctl on this server's database. check: require exit 0."""
        p = run_program("submitctl", self.option_args() + list(args), input=input,
                        capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def add_user(self, login, password, addresses=()):
        self.submitctl("user", "add", login, input=password + "\n")
        for a in addresses:
            self.submitctl("user", "address", "add", login, a)

    # -- database
    def sql(self, query):
        """Rows of a query as a list of dicts (sqlite3 -json)."""
        p = subprocess.run(["sqlite3", "-json", "-cmd", ".timeout 5000", self.db_path, query],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError("sqlite3 failed on %r: %s" % (query, p.stderr))
        out = p.stdout.strip()
        return json.loads(out) if out else []

    def message_with_marker(self, marker):
        """The messages row whose stored body contains marker (bytes/str)."""
        if isinstance(marker, str):
            marker = marker.encode()
        rows = self.sql("SELECT m.* FROM messages m JOIN message_bodies b USING (message_id) "
                        "WHERE instr(b.content, X'%s') > 0" % marker.hex())
        if len(rows) != 1:
            raise AssertionError("expected one stored message with marker %r, found %d" % (marker, len(rows)))
        return rows[0]

    def body(self, message_id):
        rows = self.sql("SELECT hex(content) AS h FROM message_bodies WHERE message_id = %d" % int(message_id))
        if len(rows) != 1:
            raise AssertionError("message %s has %d bodies" % (message_id, len(rows)))
        return bytes.fromhex(rows[0]["h"])

    def recipients(self, message_id):
        return [r["address"] for r in self.sql(
            "SELECT address FROM recipients WHERE message_id = %d ORDER BY position" % int(message_id))]

    def message_count(self):
        return self.sql("SELECT count(*) AS n FROM messages")[0]["n"]

    # -- clients
    def raw(self, tls=False, timeout=10.0):
        return RawSMTP(self.tls_port if tls else self.port, tls=tls, timeout=timeout)
