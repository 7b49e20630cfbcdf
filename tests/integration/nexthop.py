"""nexthop.py: next hops for the relay tests, each on a free loopback port.

SmtpSink runs Postfix's smtp-sink(1), a real SMTP server, and reads back
what it received from its per-transaction dump files (-d). Its dump keeps
the envelope in X- header lines and the message with LF line ends (it drops
CRs), so SmtpSink gives the data with CRLF line ends restored: exact for a
message that has CRLF only, which is what a correct client sends.

ScriptedHop is a small SMTP server in Python (stdlib only) for what
smtp-sink cannot do: a 5xx for one chosen recipient, 4xx at the end of
data for the first N transactions, a delay before each end-of-data reply,
CHUNKING (BDAT), STARTTLS with a given certificate, AUTH PLAIN, and a
record of the exact bytes of every message as they came over the wire.

Both offer start(), stop(), a context manager, and messages(): a list of
Message (sender, recipients, data) in the order they were received.
"""

import base64
import os
import pwd
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time

from harness import free_port

SMTP_SINK = "/usr/sbin/smtp-sink"
START_TIMEOUT = 10.0


def listening(port, host="127.0.0.1"):
    """True when something listens on host:port, found without connecting
    (a probe connection would count as a session in smtp-sink's counters)."""
    want = "%s:%04X" % ("".join("%02X" % int(b) for b in reversed(host.split("."))), port)
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":   # 0A: LISTEN
                    return True
        return False
    except OSError:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False


def angle_address(args):
    """The address of 'MAIL FROM:' / 'RCPT TO:' arguments: '<a@b> SIZE=1' -> 'a@b'."""
    m = re.match(r"^\s*<([^<>]*)>", args)
    if m:
        return m.group(1)
    return args.split()[0] if args.split() else ""


def crlf_only(data):
    """True when every CR in data is followed by LF and every LF preceded by CR."""
    return re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None


class Message:
    """One received transaction.

    sender: the envelope sender ('' for <>); mail_params: the MAIL
    parameters as one string; recipients: the accepted RCPT addresses in
    order; data: the message as the next hop got it (dot-stuffing undone);
    code/reply: the next hop's end-of-data answer."""

    def __init__(self, sender, mail_params, recipients, data, code=250, reply="", helo=None):
        self.sender = sender
        self.mail_params = mail_params
        self.recipients = recipients
        self.data = data
        self.code = code
        self.reply = reply
        self.helo = helo

    def __repr__(self):
        return "Message(from=%r, to=%r, %d octets, %d)" % (self.sender, self.recipients, len(self.data), self.code)


# ------------------------------------------------------------ smtp-sink

class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1:port, dumping each transaction.

    soft / hard: commands answered with 4xx / 5xx (smtp-sink -r / -f, e.g.
    ["RCPT"] or ["."] for the end of data); soft_reply / hard_reply replace
    the default texts (-b / -B); disconnect: commands after which it hangs
    up without a reply (-q). Note that -r and -f turn PIPELINING off.
    """

    def __init__(self, port=None, hostname="sink.test", soft=(), hard=(), disconnect=(),
                 soft_reply=None, hard_reply=None, extra_args=()):
        if not os.access(SMTP_SINK, os.X_OK):
            raise RuntimeError("%s not found: install the postfix package (scripts/deps test)" % SMTP_SINK)
        self.port = port or free_port()
        self.hostname = hostname
        self.args = ["-c", "-h", hostname]
        if soft:
            self.args += ["-r", ",".join(soft)]
        if hard:
            self.args += ["-f", ",".join(hard)]
        if disconnect:
            self.args += ["-q", ",".join(disconnect)]
        if soft_reply:
            self.args += ["-b", soft_reply]
        if hard_reply:
            self.args += ["-B", hard_reply]
        self.args += list(extra_args)
        self.dir = tempfile.mkdtemp(prefix="smtp-sink-")
        self.dump_dir = os.path.join(self.dir, "dump")
        os.mkdir(self.dump_dir)
        self.counter_path = os.path.join(self.dir, "counters")
        self.proc = None
        self.out = None

    def start(self):
        cmd = [SMTP_SINK] + self.args
        if os.geteuid() == 0:
            # smtp-sink refuses to run as root without -u; the user must be
            # able to write the dump directory
            user = "postfix"
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                user = "nobody"
                pw = pwd.getpwnam(user)
            os.chmod(self.dir, 0o711)   # mkdtemp made it 0700: let the user through
            os.chown(self.dump_dir, pw.pw_uid, pw.pw_gid)
            cmd += ["-u", user]
        cmd += ["-d", os.path.join(self.dump_dir, "msg."), "127.0.0.1:%d" % self.port, "64"]
        self.out = open(self.counter_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("smtp-sink did not start on port %d: %s\n%s"
                                   % (self.port, cmd, self.output()))
            time.sleep(0.02)
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.out is not None:
            self.out.close()
            self.out = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def output(self):
        try:
            with open(self.counter_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def counters(self):
        """smtp-sink -c's last counter line as a dict, e.g. {'sess': 2, 'quit': 2, 'mesg': 3}."""
        records = [r for r in re.split(r"[\r\n]+", self.output()) if "sess=" in r]
        if not records:
            return {}
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", records[-1])}

    def dump_files(self):
        """Dump files of the transactions that reached the end of data,
        whatever smtp-sink answered to it (-r . and -f . still dump; a
        transaction that ended before, by RSET, a refused RCPT or a lost
        connection, leaves no file), roughly in the
        order they were finished (by modification time: not exact within
        one clock tick; tests find messages by content, not by position)."""
        files = []
        for name in os.listdir(self.dump_dir):
            p = os.path.join(self.dump_dir, name)
            try:
                files.append((os.stat(p).st_mtime_ns, name, p))
            except FileNotFoundError:
                pass
        return [p for _, _, p in sorted(files)]

    @staticmethod
    def parse_dump(raw):
        """One dump file -> Message. The format (smtp-sink(1), DUMP FILE
        FORMAT): X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args,
        one X-Rcpt-Args per RCPT, then smtp-sink's own three-line Received
        header, then the message as received, then an empty line; every
        line ends with LF."""
        lines = raw.split(b"\n")
        helo, mail_args, rcpts, i = None, None, [], 0
        while i < len(lines) and lines[i].startswith(b"X-"):
            name, _, value = lines[i].partition(b": ")
            value = value.decode("utf-8", "replace")
            if name == b"X-Helo-Args":
                helo = value
            elif name == b"X-Mail-Args":
                mail_args = value
            elif name == b"X-Rcpt-Args":
                rcpts.append(angle_address(value))
            i += 1
        if mail_args is None or i >= len(lines) or not lines[i].startswith(b"Received: "):
            raise ValueError("not an smtp-sink dump: %r" % raw[:300])
        i += 1
        while i < len(lines) and lines[i][:1] in (b"\t", b" "):
            i += 1
        rest = b"\n".join(lines[i:])
        if not rest.endswith(b"\n"):
            raise ValueError("smtp-sink dump without its final empty line: %r" % raw[-200:])
        data = rest[:-1].replace(b"\n", b"\r\n")
        sender = angle_address(mail_args)
        params = mail_args[mail_args.index(">") + 1:].strip() if ">" in mail_args else ""
        return Message(sender, params, rcpts, data, helo=helo)

    def messages(self):
        out = []
        for p in self.dump_files():
            with open(p, "rb") as f:
                out.append(self.parse_dump(f.read()))
        return out


# ------------------------------------------------------------ scripted hop

class Transaction(Message):
    """A Message with what only the scripted hop knows: how the data came
    (method 'DATA' or 'BDAT'), the exact octets on the wire for it (wire:
    the dot-stuffed lines with the end mark, or the BDAT chunks' octets),
    the recipients refused, and the session it belongs to."""

    def __init__(self, session, helo, sender, mail_params):
        super().__init__(sender, mail_params, [], b"", code=0, reply="", helo=helo)
        self.session = session
        self.refused = []           # (address, reply)
        self.method = None
        self.wire = b""
        self.chunks = []            # BDAT chunk sizes


class Session:
    def __init__(self, number, peer):
        self.number = number
        self.peer = peer
        self.helo = None
        self.commands = []          # every command line, CRLF stripped
        self.early = []             # commands followed by more input before their reply
        self.tls = False
        self.auth_user = None       # who authenticated, None: nobody
        self.auth_password = None
        self.closed = False


class ScriptedHop:
    """A scriptable SMTP server on 127.0.0.1:port.

    keywords: the EHLO keywords it advertises, from PIPELINING, CHUNKING,
    8BITMIME, SMTPUTF8, SIZE (bare "SIZE" is sent as "SIZE 104857600"),
    ENHANCEDSTATUSCODES; STARTTLS is added when tls_context is given and
    "AUTH PLAIN" when auth (a {user: password} dict) is.
    rcpt_replies: {address: reply line} for recipients to refuse.
    eod_replies: replies for the first end-of-data answers, in order, then
    "250 2.0.0 Ok" for the rest (all transactions count, in arrival order).
    eod_delay: seconds to wait before each end-of-data answer.
    require_auth: refuse MAIL with 530 until AUTH succeeded.
    """

    OK_EOD = "250 2.0.0 Ok: queued"

    def __init__(self, port=None, keywords=("PIPELINING", "8BITMIME", "SIZE", "ENHANCEDSTATUSCODES"),
                 rcpt_replies=None, eod_replies=(), eod_delay=0.0, hostname="hop.test",
                 tls_context=None, auth=None, require_auth=False, timeout=60.0):
        self.port = port or free_port()
        self.keywords = list(keywords)
        self.rcpt_replies = {k.lower(): v for k, v in (rcpt_replies or {}).items()}
        self.eod_replies = list(eod_replies)
        self.eod_delay = eod_delay
        self.hostname = hostname
        self.tls_context = tls_context
        self.auth = auth
        self.require_auth = require_auth
        self.timeout = timeout
        self.lock = threading.Lock()
        self.sessions = []
        self.transactions = []      # every transaction that reached the end of data
        self.eod_count = 0
        self.server = None
        self.thread = None
        self.live = set()

    # -- life cycle
    def start(self):
        hop = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                hop._serve(self.request, self.client_address)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stop listening and cut the connections still open."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            live = list(self.live)
        for s in live:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.thread.join(10)
        self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- results
    def messages(self, accepted_only=True):
        """Transactions that reached the end of data; by default only those
        answered with 2xx, i.e. the messages this hop took responsibility for."""
        with self.lock:
            return [t for t in self.transactions if not accepted_only or 200 <= t.code < 300]

    def all_sessions(self):
        with self.lock:
            return list(self.sessions)

    # -- the dialogue
    def _ehlo_lines(self, session):
        lines = [self.hostname]
        for k in self.keywords:
            lines.append("SIZE 104857600" if k.upper() == "SIZE" else k)
        if self.tls_context is not None and not session.tls:
            lines.append("STARTTLS")
        if self.auth is not None:
            lines.append("AUTH PLAIN")
        return lines

    def _next_eod_reply(self):
        with self.lock:
            n = self.eod_count
            self.eod_count += 1
        return self.eod_replies[n] if n < len(self.eod_replies) else self.OK_EOD

    def _serve(self, sock, peer):
        sock.settimeout(self.timeout)
        with self.lock:
            session = Session(len(self.sessions) + 1, peer)
            self.sessions.append(session)
            self.live.add(sock)
        conn = _Conn(sock)
        try:
            self._dialogue(conn, session)
        except (OSError, ConnectionError, ssl.SSLError, socket.timeout):
            pass
        finally:
            session.closed = True
            with self.lock:
                self.live.discard(sock)
                self.live.discard(conn.sock)
            try:
                conn.sock.close()
            except OSError:
                pass

    def _dialogue(self, conn, session):
        conn.reply("220 %s ESMTP scripted" % self.hostname)
        txn = None
        while True:
            line = conn.readline()
            if line is None:
                return
            session.commands.append(line.decode("utf-8", "replace"))
            verb, _, args = line.decode("utf-8", "replace").partition(" ")
            verb = verb.upper()
            if conn.buf and verb != "BDAT":
                # the client sent on without waiting for this reply: fine
                # within a PIPELINING group (RFC 2920 3.1), never after
                # EHLO, DATA, STARTTLS, AUTH, QUIT or NOOP, nor without it
                session.early.append(line.decode("utf-8", "replace"))
            if verb == "EHLO":
                session.helo = args
                txn = None
                lines = self._ehlo_lines(session)
                conn.reply("\r\n".join(("250-" if i < len(lines) - 1 else "250 ") + l
                                       for i, l in enumerate(lines)))
            elif verb == "HELO":
                session.helo = args
                txn = None
                conn.reply("250 %s" % self.hostname)
            elif verb == "STARTTLS" and self.tls_context is not None and not session.tls:
                conn.reply("220 2.0.0 Ready to start TLS")
                if conn.buf:
                    raise ConnectionError("data pipelined after STARTTLS")
                tls = self.tls_context.wrap_socket(conn.sock, server_side=True)
                with self.lock:
                    self.live.add(tls)
                conn.sock = tls
                session.tls = True
                session.helo = None
                txn = None
            elif verb == "AUTH" and self.auth is not None:
                mech, _, initial = args.partition(" ")
                if mech.upper() != "PLAIN":
                    conn.reply("504 5.5.4 only PLAIN")
                    continue
                if not initial:
                    conn.reply("334 ")
                    initial = (conn.readline() or b"").decode("ascii", "replace")
                try:
                    _, user, password = base64.b64decode(initial, validate=True).decode().split("\0")
                except (ValueError, UnicodeDecodeError):
                    conn.reply("501 5.5.2 bad AUTH PLAIN response")
                    continue
                if self.auth.get(user) == password:
                    session.auth_user, session.auth_password = user, password
                    conn.reply("235 2.7.0 Authentication successful")
                else:
                    conn.reply("535 5.7.8 Authentication credentials invalid")
            elif verb == "MAIL":
                if self.require_auth and session.auth_user is None:
                    conn.reply("530 5.7.0 Authentication required")
                    continue
                if txn is not None:
                    conn.reply("503 5.5.1 nested MAIL")
                    continue
                if not args.upper().startswith("FROM:"):
                    conn.reply("501 5.5.4 syntax: MAIL FROM:<address>")
                    continue
                rest = args[5:]
                params = rest[rest.index(">") + 1:].strip() if ">" in rest else ""
                txn = Transaction(session, session.helo, angle_address(rest), params)
                conn.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if txn is None:
                    conn.reply("503 5.5.1 need MAIL first")
                    continue
                addr = angle_address(args[3:] if args.upper().startswith("TO:") else args)
                r = self.rcpt_replies.get(addr.lower())
                if r is not None:
                    txn.refused.append((addr, r))
                    conn.reply(r)
                else:
                    txn.recipients.append(addr)
                    conn.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if txn is None or not txn.recipients:
                    conn.reply("554 5.5.1 no valid recipients")
                    continue
                conn.reply("354 End data with <CR><LF>.<CR><LF>")
                txn.method = "DATA"
                wire, lines = [], []
                while True:
                    l = conn.readline(keep_end=True, limit=None)
                    if l is None:
                        return
                    wire.append(l)
                    if l == b".\r\n":
                        break
                    lines.append(l[1:] if l.startswith(b".") else l)
                txn.wire = b"".join(wire)
                txn.data = b"".join(lines)
                self._end_of_data(conn, txn)
                txn = None
            elif verb == "BDAT":
                m = re.match(r"^(\d+)( +LAST)? *$", args, re.I)
                if not m:
                    conn.reply("501 5.5.4 syntax: BDAT size [LAST]")
                    continue
                chunk = conn.readexact(int(m.group(1)))
                if chunk is None:
                    return
                if txn is None or not txn.recipients:
                    conn.reply("554 5.5.1 no valid recipients")
                    txn = None
                    continue
                txn.method = "BDAT"
                txn.wire += chunk
                txn.data += chunk
                txn.chunks.append(len(chunk))
                if m.group(2):
                    self._end_of_data(conn, txn)
                    txn = None
                else:
                    conn.reply("250 2.0.0 %d octets received" % len(chunk))
            elif verb == "RSET":
                txn = None
                conn.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                conn.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                conn.reply("221 2.0.0 Bye")
                return
            else:
                conn.reply("500 5.5.2 command not recognised")

    def _end_of_data(self, conn, txn):
        if self.eod_delay:
            time.sleep(self.eod_delay)
        reply = self._next_eod_reply()
        txn.code = int(reply[:3])
        txn.reply = reply
        # recorded before the answer goes out: whoever sees the answer sees
        # the record
        with self.lock:
            self.transactions.append(txn)
        conn.reply(reply)


class _Conn:
    """Buffered line reading over a socket that STARTTLS may replace."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def readline(self, keep_end=False, limit=4096):
        """One line ended by CRLF (a bare CR or LF stays inside the line);
        None at EOF."""
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 2], self.buf[i + 2:]
                return line if keep_end else line[:-2]
            if limit is not None and len(self.buf) > limit:
                raise ConnectionError("command line too long")
            if not self._fill():
                return None

    def readexact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def reply(self, text):
        self.sock.sendall(text.encode("utf-8") + b"\r\n")


def self_signed_context(directory, names=("hop.test",), ips=("127.0.0.1",)):
    """A server TLS context with a new self-signed certificate (openssl CLI).
    Returns (context, certificate path)."""
    cert = os.path.join(directory, "hop-cert.pem")
    key = os.path.join(directory, "hop-key.pem")
    san = ",".join(["DNS:%s" % n for n in names] + ["IP:%s" % i for i in ips])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=%s" % names[0],
                    "-addext", "subjectAltName=%s" % san],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx, cert
