"""dovecot.py: a private, real Dovecot (Debian's dovecot-core and
dovecot-imapd) for the integration tests.

Everything of one instance lives in one temporary directory: its
configuration, base_dir, state, log, a passwd-file of users and their
maildirs. IMAP listens on a free loopback port, without TLS. Optionally:
- master users (a second passdb with `master = yes`), so that a service can
  log in on behalf of a user with SASL PLAIN and the user as authorisation
  id, as submitd's Sent filing does;
- an auth-client listener (a UNIX socket in `service auth`) for submitd's
  Dovecot authentication backend;
- an `auth_username_format`, to test logins that Dovecot rewrites.

Dovecot runs as root in the foreground (`dovecot -F -c CONFIG`) and switches
to `nobody`/`nogroup` for the mail processes, so the tests that use it need
root (CI runs as root). Its temporary directory (under $TMPDIR, if set) must
be reachable by those users. SUBMITD_KEEP=1 keeps it (dovecot.log).
"""

import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

from harness import free_port, which

MAIL_USER, MAIL_GROUP = "nobody", "nogroup"   # Dovecot refuses uid 0 for mail
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def dovecot_bin():
    """dovecot lives in /usr/sbin, which a non-login PATH may lack."""
    return which("dovecot") or next((p for p in ("/usr/sbin/dovecot",) if os.access(p, os.X_OK)), None)


def dovecot_version():
    p = subprocess.run([dovecot_bin(), "--version"], capture_output=True, text=True, timeout=30)
    m = re.match(r"^(\d+)\.(\d+)", p.stdout.strip())
    if p.returncode != 0 or not m:
        raise AssertionError("dovecot --version: %r %r" % (p.stdout, p.stderr))
    return int(m.group(1)), int(m.group(2))


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class Dovecot:
    """A private Dovecot: its own configuration, base_dir, state, log, users
    and maildirs in one temporary directory, IMAP on a free loopback port.

    users: {login: password}; masters: {master login: password} (a master
    passdb); auth_socket: True for an auth-client listener at
    self.auth_socket_path (mode 0666: the tests' submitd drops to its own
    user); username_format: Dovecot's auth_username_format (e.g. "%Lu");
    extra: more configuration text, appended as it is; user_fields: {login:
    "userdb_KEY=VALUE ..."}, the passwd-file's extra fields of a user (a
    userdb_ field that is no mail setting becomes a plugin {} setting of
    that user; values without ':' or spaces)."""

    def __init__(self, users, masters=None, auth_socket=False, username_format=None, extra="",
                 user_fields=None):
        self.users = dict(users)
        user_fields = dict(user_fields or {})
        self.masters = dict(masters or {})
        self.tmp = tempfile.mkdtemp(prefix="submitd-dovecot-")
        # Dovecot's unprivileged processes (auth as dovecot, mail as nobody,
        # login as dovenull) must reach files in here.
        os.chmod(self.tmp, 0o755)
        self.port = free_port()
        self.conf = os.path.join(self.tmp, "dovecot.conf")
        self.log_path = os.path.join(self.tmp, "dovecot.log")
        self.passwd = os.path.join(self.tmp, "passwd")
        self.master_passwd = os.path.join(self.tmp, "master-passwd")
        self.mail = os.path.join(self.tmp, "mail")
        self.auth_socket_path = os.path.join(self.tmp, "run", "auth-submitd") if auth_socket else None
        self.keep = bool(os.environ.get("SUBMITD_KEEP"))
        self.proc = None
        uid, gid = pwd.getpwnam(MAIL_USER).pw_uid, grp.getgrnam(MAIL_GROUP).gr_gid
        os.mkdir(self.mail, 0o755)
        os.chown(self.mail, uid, gid)     # Dovecot creates each maildir as the user
        with open(self.passwd, "w", encoding="utf-8") as f:
            # passwd-file: user:password:uid:gid:(gecos):home:(shell):extra
            for user, password in self.users.items():
                f.write("%s:{PLAIN}%s:%d:%d::%s/%s::%s\n"
                        % (user, password, uid, gid, self.mail, user, user_fields.get(user, "")))
        os.chmod(self.passwd, 0o644)      # read by the auth process (user dovecot)
        with open(self.master_passwd, "w", encoding="utf-8") as f:
            for user, password in self.masters.items():
                f.write("%s:{PLAIN}%s\n" % (user, password))
        os.chmod(self.master_passwd, 0o644)

        major, minor = dovecot_version()
        if (major, minor) >= (2, 4):
            cleartext = "auth_allow_cleartext = yes"
        else:
            cleartext = "disable_plaintext_auth = no"
        internal = [(k, u) for k, u in (("default_login_user", "dovenull"),
                                        ("default_internal_user", "dovecot")) if _user_exists(u)]
        master = ""
        if self.masters:
            # before the users' passdb, as Dovecot's documentation has it;
            # pass = yes: the user must exist in the passdb below
            master = """passdb {
  driver = passwd-file
  master = yes
  pass = yes
  args = scheme=PLAIN username_format=%%u %s
}
""" % self.master_passwd
        auth_service = ""
        if self.auth_socket_path:
            auth_service = """service auth {
  unix_listener auth-submitd {
    mode = 0666
  }
}
"""
        t = self.tmp
        with open(self.conf, "w") as f:
            f.write("""# written by the tests (dovecot.py): a private IMAP server, loopback only, no TLS
instance_name = submitd-test-%(inst)s
base_dir = %(t)s/run
state_dir = %(t)s/state
protocols = imap
listen = 127.0.0.1
ssl = no
%(cleartext)s
auth_mechanisms = plain login
auth_verbose = yes
%(username_format)s
log_path = %(t)s/dovecot.log
info_log_path = %(t)s/dovecot.log
%(internal)s
mail_location = maildir:%(t)s/mail/%%u
%(master)s
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %(t)s/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%%u %(t)s/passwd
}
namespace inbox {
  inbox = yes
  separator = /
  # as Debian's 15-mailboxes.conf: both names are the \\Sent folder (RFC 6154)
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox "Sent Messages" {
    special_use = \\Sent
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %(port)d
  }
  inet_listener imaps {
    port = 0
  }
}
%(auth_service)s
%(extra)s
""" % {"t": t, "inst": uuid.uuid4().hex[:8], "cleartext": cleartext, "port": self.port,
       "internal": "\n".join("%s = %s" % kv for kv in internal), "master": master,
       "auth_service": auth_service, "extra": extra,
       "username_format": "auth_username_format = %s" % username_format if username_format else ""})

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stderr(self):
        try:
            with open(os.path.join(self.tmp, "dovecot.stderr"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self):
        # -n first: a configuration error is reported plainly, not as a dead process
        p = subprocess.run([dovecot_bin(), "-c", self.conf, "-n"], capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError("dovecot -n refuses the test configuration:\n%s%s" % (p.stdout, p.stderr))
        out = open(os.path.join(self.tmp, "dovecot.stderr"), "wb")
        try:
            # its own session: on cleanup the whole group (master and children) can be killed
            self.proc = subprocess.Popen([dovecot_bin(), "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out, cwd=self.tmp, start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited with %s\n--- log ---\n%s\n--- stderr ---\n%s"
                                     % (self.proc.returncode, self.log(), self.stderr()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    if s.recv(256).startswith(b"* OK") and (
                            self.auth_socket_path is None or os.path.exists(self.auth_socket_path)):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("dovecot not answering on port %d after %.0f s\n--- log ---\n%s"
                             % (self.port, READY_TIMEOUT, self.log()))

    def stop(self, remove=True):
        """SIGTERM to the master (it stops its children), SIGKILL to the group
        if it does not go; then, with remove, the temporary directory is
        removed (without: it stays, and start() runs the same instance
        again)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)   # stragglers of this instance only
            except ProcessLookupError:
                pass
            if self.proc.poll() is None:
                self.proc.wait(STOP_TIMEOUT)
            self.proc = None
        if remove and not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- reading back, as the user, with Python's imaplib
    def connect(self, user, password=None):
        m = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        if password is None:
            password = self.users[user]
        creds = b"\0" + user.encode() + b"\0" + password.encode()   # RFC 4616, UTF-8
        m.authenticate("PLAIN", lambda _: creds)
        return m

    def folder(self, user, name="Sent"):
        """{uid: (flags, internaldate, body)} of a user's mailbox, or None
        when it does not exist."""
        m = self.connect(user)
        try:
            typ, _ = m.select(quote(name), readonly=True)
            if typ != "OK":
                return None
            typ, data = m.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            if typ != "OK":
                raise AssertionError("UID FETCH: %r" % data)
            out = {}
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head = item[0].decode()
                uid = int(re.search(r"UID (\d+)", head).group(1))
                flags = re.search(r"FLAGS \(([^)]*)\)", head).group(1).split()
                idate = re.search(r'INTERNALDATE "([^"]+)"', head).group(1)
                out[uid] = (flags, idate, item[1])
            return out
        finally:
            m.logout()

    def folder_names(self, user):
        m = self.connect(user)
        try:
            typ, data = m.list()
            names = []
            for line in data:
                mm = re.match(rb'^\([^)]*\) "[^"]*" (?:"(.*)"|(.*))$', line)
                names.append((mm.group(1) or mm.group(2)).decode())
            return sorted(names)
        finally:
            m.logout()

    def create_folder(self, user, name):
        m = self.connect(user)
        try:
            typ, data = m.create(quote(name))
            if typ != "OK":
                raise AssertionError("CREATE %s: %r" % (name, data))
        finally:
            m.logout()


def quote(name):
    """An IMAP quoted string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
