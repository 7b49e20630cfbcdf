#!/usr/bin/env python3
"""imap-sent.py: file the sender's copy of a submitted message into Sent.

After accepting a message, submitd answers with one token per recipient and
one for the sender's own copy, on the last line of its reply:

    250 2.1.13 <me@example.org> v4.public.eyJ... Saved

An IMAP server or a webmail backend that is handed that sender token can put
the message into the user's Sent folder without the client uploading it a
second time. This program does exactly that, with nothing but the Python 3
standard library, and is meant to be read as much as run (docs/imap.md):

  0. IMAP first: log in (AUTHENTICATE PLAIN, else LOGIN). When the server
     advertises XSUBMITTOKEN (submitd's Dovecot plugin, docs/imap.md), it
     verifies and files the copy itself: find the Sent folder (below) and
     send `tag XSUBMITTOKEN <folder> <token>`; its `OK [APPENDUID v uid]`
     ends the work, a NO names the refusal in its response code, and
     `NO [TRYCREATE]` makes the folder and tries once more. No API access
     is needed then. Otherwise (or with --no-xsubmittoken, --any-role,
     --any-address, or an --address other than the IMAP user, which the
     command cannot express), the client does it all itself:
  1. POST /v1/verify: the token must be valid, its role "sender" (unless
     --any-role) and bound to the user's address (--address, by default the
     IMAP user name when it is an address; --any-address skips this);
  2. GET /v1/message: the stored copy; its length, SHA-256 and ETag must match
     what verify said (size, sha256) before anything is written;
  3. IMAP: find the Sent folder (the one the server flags \\Sent,
     RFC 6154, else --folder, created when missing), skip the append when
     a byte-identical copy is already there (running twice files once), and
     APPEND the bytes unchanged with \\Seen and the time submitd received
     the message as internal date (RFC 3501 section 6.3.11). With UIDPLUS
     (RFC 4315) the new UID is printed on standard output.

The token is read from the command line or, better (the command line is
visible to other local users), from standard input. Secrets never come from
arguments: the API bearer secret (`submitctl service add NAME`) from
$SUBMITD_API_SECRET or --api-secret-file, the IMAP password from
$IMAP_PASSWORD or --imap-password-file. Whole tokens are never printed.

Exit status:
  0   filed (or an identical copy was already there)
  2   the token was refused: result=<name> on standard error (malformed,
      bad_signature, unknown_key, expired, revoked, wrong_address,
      missing_token, or wrong_role for a recipient token without --any-role;
      with XSUBMITTOKEN, the name of the server's response code)
  3   API or integrity problem: API unreachable or answering unexpectedly,
      credential refused (result=unauthorized), copy no longer stored
      (result=purged), bytes that do not match the verified size/SHA-256;
      with XSUBMITTOKEN, the server's NO [UNAVAILABLE] or [PURGED]
  4   IMAP problem: connection, TLS, login, folder, append
  64  usage or configuration error

Example:

    export SUBMITD_API_SECRET IMAP_PASSWORD   # set beforehand, not on the command line
    printf '%s\\n' "$SENDER_TOKEN" | contrib/imap-sent.py \\
        --api-url http://127.0.0.1:8025 \\
        --imap-host imap.example.org --imap-user me@example.org
"""

import argparse
import base64
import datetime
import hashlib
import http.client
import imaplib
import json
import os
import re
import ssl
import sys
import urllib.parse

PROG = "imap-sent"

EXIT_OK = 0
EXIT_REFUSED = 2
EXIT_FETCH = 3
EXIT_IMAP = 4
EXIT_USAGE = 64

DEFAULT_API_URL = "http://127.0.0.1:8025"
API_SECRET_ENV = "SUBMITD_API_SECRET"
IMAP_PASSWORD_ENV = "IMAP_PASSWORD"

TOKEN_MAX = 4096            # the API refuses longer tokens without looking at them
MAX_JSON = 65536            # a verify answer is a few hundred octets
MAX_CANDIDATES = 100        # same-size messages compared when looking for a copy
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Results the API gives about the token itself (docs/api.md section 6):
# everything else (unauthorized, purged, bad_request, server errors) is not
# the token's fault.
TOKEN_RESULTS = {"malformed", "missing_token", "bad_signature", "unknown_key",
                 "expired", "revoked", "wrong_address"}
# XSUBMITTOKEN's NO response codes (docs/imap.md), compared in lower case
# without "-" or "_" and without an "XSUBMITTOKEN-" or "SUBMITTOKEN-"
# prefix: refusals of the token (exit 2, as result=<name>), and problems
# of the server's side (exit 3).
XCMD = "XSUBMITTOKEN"
XCODE_REFUSED = {"malformed": "malformed", "badsignature": "bad_signature", "unknownkey": "unknown_key",
                 "expired": "expired", "revoked": "revoked", "wrongaddress": "wrong_address",
                 "wrongrole": "wrong_role", "missingtoken": "missing_token", "noperm": "noperm",
                 "authorizationfailed": "authorizationfailed"}
XCODE_FETCH = {"purged": "purged", "unavailable": "unavailable", "serverbug": "serverbug"}
# The server will not hold a copy this large (its submit_token_max_size):
# the copy is still good, so fetch it here and APPEND it.
XCODE_FALLBACK = {"toobig"}


class Fallback(Exception):
    """The server cannot file this copy itself: fetch and APPEND instead."""


class Failure(Exception):
    """An expected failure: message for standard error, and the exit status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def refused(result, text):
    return Failure(EXIT_REFUSED, "token refused: result=%s (%s)" % (result, text))


def short(token):
    """What may be shown of a token: its first 22 characters, like submitd's log."""
    return token[:22] + "..."


def log(args, fmt, *a):
    if args.verbose:
        print("%s: %s" % (PROG, fmt % a if a else fmt), file=sys.stderr)


# ------------------------------------------------------------------ secrets

def read_secret_file(path, what):
    """First line of a file, without its line end."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise Failure(EXIT_USAGE, "cannot read %s from %s: %s" % (what, path, e))
    return line.rstrip("\r\n")


def api_secret(args):
    """The bearer secret, or None (then only endpoints without a credential work)."""
    if args.api_secret_file:
        s = read_secret_file(args.api_secret_file, "the API secret").strip()
    else:
        s = os.environ.get(API_SECRET_ENV, "").strip()
    if not s:
        return None
    if not re.match(r"^[\x21-\x7e]+$", s):
        raise Failure(EXIT_USAGE, "the API secret has white space or control characters")
    return s


def imap_password(args):
    if args.imap_password_file:
        p = read_secret_file(args.imap_password_file, "the IMAP password")
    else:
        p = os.environ.get(IMAP_PASSWORD_ENV)
    if not p:
        raise Failure(EXIT_USAGE, "no IMAP password: set $%s or use --imap-password-file"
                      % IMAP_PASSWORD_ENV)
    return p


def read_token(args):
    """The token from the argument, or from standard input when it is absent or "-"."""
    t = args.token
    if t is None or t == "-":
        t = sys.stdin.read(TOKEN_MAX + 2)
    t = t.strip()
    if not t:
        raise refused("missing_token", "no token given (argument or standard input)")
    # Only the characters a PASETO token can have: anything else could not
    # travel in a header, and a CR or LF would start another one.
    if len(t) > TOKEN_MAX or not TOKEN_CHARS.match(t):
        raise refused("malformed", "not a submission token")
    return t


# ---------------------------------------------------------------- the API

class Api:
    """The submitd verification API on one keep-alive HTTP(S) connection."""

    def __init__(self, args, secret):
        u = urllib.parse.urlsplit(args.api_url)
        if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment:
            raise Failure(EXIT_USAGE, "--api-url must be http:// or https://host[:port][/prefix]")
        try:
            port = u.port
        except ValueError:
            raise Failure(EXIT_USAGE, "--api-url has a bad port")
        self.prefix = u.path.rstrip("/")
        self.where = "%s://%s" % (u.scheme, u.netloc)
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=args.api_cafile)
            self.conn = http.client.HTTPSConnection(u.hostname, port, timeout=args.timeout, context=ctx)
        else:
            self.conn = http.client.HTTPConnection(u.hostname, port, timeout=args.timeout)
        self.secret = secret

    def close(self):
        self.conn.close()

    def request(self, method, path, headers, body=None):
        """Send one request; returns the response with its body not yet read."""
        h = {"Accept": "application/json, message/rfc822"}
        if self.secret:
            h["Authorization"] = "Bearer " + self.secret
        h.update(headers)
        try:
            self.conn.request(method, self.prefix + path, body=body, headers=h)
            return self.conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise Failure(EXIT_FETCH, "API %s %s%s: %s" % (method, self.where, path, e or type(e).__name__))

    @staticmethod
    def read_json(resp, what):
        try:
            raw = resp.read(MAX_JSON + 1)
            if len(raw) > MAX_JSON:
                raise ValueError("answer too long")
            doc = json.loads(raw.decode("utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            return doc
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise Failure(EXIT_FETCH, "%s: HTTP %d with an unreadable body (%s)" % (what, resp.status, e))

    @staticmethod
    def refusal(doc, status, what):
        """The Failure for a non-200 answer with a JSON {"result", "error"} body."""
        result = doc.get("result")
        text = doc.get("error") if isinstance(doc.get("error"), str) else "HTTP %d" % status
        if result in TOKEN_RESULTS:
            return refused(result, text)
        if isinstance(result, str):
            hint = ""
            if result == "unauthorized":
                hint = "; set $%s or --api-secret-file to a secret from `submitctl service add`" \
                       % API_SECRET_ENV
            return Failure(EXIT_FETCH, "%s: result=%s (%s)%s" % (what, result, text, hint))
        return Failure(EXIT_FETCH, "%s: HTTP %d %s" % (what, status, text))

    def verify(self, token, address):
        """POST /v1/verify; returns the decoded 200 answer, checked for shape."""
        req = {"token": token}
        if address is not None:
            req["address"] = address
        resp = self.request("POST", "/v1/verify", {"Content-Type": "application/json"},
                            json.dumps(req).encode("utf-8"))
        doc = self.read_json(resp, "verify")
        if resp.status != 200:
            raise self.refusal(doc, resp.status, "verify")
        if doc.get("result") != "valid":
            raise Failure(EXIT_FETCH, "verify: HTTP 200 without result=valid: %r" % doc.get("result"))
        m = doc.get("message")
        ok = (isinstance(m, dict) and isinstance(doc.get("role"), str)
              and isinstance(doc.get("token_id"), str) and isinstance(m.get("id"), str)
              and isinstance(m.get("size"), int) and not isinstance(m.get("size"), bool)
              and m["size"] >= 0 and isinstance(m.get("sha256"), str) and HEX64.match(m["sha256"])
              and isinstance(m.get("received_at"), str))
        if not ok:
            raise Failure(EXIT_FETCH, "verify: the answer lacks role, token_id or message "
                          "id/size/sha256/received_at")
        return doc

    def fetch(self, token, address, verified):
        """GET /v1/message; returns the bytes once they match what verify said."""
        h = {"Submit-Token": token}
        if address is not None:
            h["Submit-Address"] = address
        resp = self.request("GET", "/v1/message", h)
        if resp.status != 200:
            raise self.refusal(self.read_json(resp, "fetch"), resp.status, "fetch")
        m = verified["message"]
        size, sha = m["size"], m["sha256"]
        problems = []
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "message/rfc822":
            problems.append("Content-Type is %r, not message/rfc822" % ctype)
        if resp.getheader("ETag") != '"%s"' % sha:
            problems.append("ETag %r is not the verified SHA-256" % resp.getheader("ETag"))
        if resp.getheader("X-Submit-Message-Id") != m["id"]:
            problems.append("X-Submit-Message-Id %r is not the verified message %s"
                            % (resp.getheader("X-Submit-Message-Id"), m["id"]))
        if resp.length is not None and resp.length != size:
            problems.append("Content-Length %d is not the verified size %d" % (resp.length, size))
        if problems:
            resp.close()
            raise Failure(EXIT_FETCH, "fetch: " + "; ".join(problems))
        try:
            data = resp.read(size + 1)
        except (OSError, http.client.HTTPException) as e:
            raise Failure(EXIT_FETCH, "fetch: reading the message: %s" % (e or type(e).__name__))
        if len(data) != size:
            raise Failure(EXIT_FETCH, "fetch: got %d octets, verify said %d" % (len(data), size))
        got = hashlib.sha256(data).hexdigest()
        if got != sha:
            raise Failure(EXIT_FETCH, "fetch: SHA-256 of the octets is %s, verify said %s" % (got, sha))
        return data


def parse_received_at(s):
    """received_at ("2026-11-29T02:48:12.123Z", UTC) as an aware datetime."""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(s, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            pass
    raise Failure(EXIT_FETCH, "verify: received_at %r is not YYYY-MM-DDTHH:MM:SS[.sss]Z" % s)


# ---------------------------------------------------------------- IMAP

def utf7_encode(name):
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 section 5.1.3)."""
    out, run = [], []

    def flush():
        if run:
            b = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def utf7_decode(name):
    """For messages only: a modified UTF-7 name made readable (best effort)."""

    def dec(m):
        s = m.group(1)
        if not s:
            return "&"
        try:
            return base64.b64decode(s.replace(",", "/") + "=" * (-len(s) % 4)).decode("utf-16-be")
        except ValueError:
            return m.group(0)
    return re.sub(r"&([A-Za-z0-9+,]*)-", dec, name)


def quote(name):
    """A mailbox name as an IMAP quoted string (RFC 3501 section 4.3)."""
    if any(c in name for c in "\r\n\0"):
        raise Failure(EXIT_USAGE, "a folder name cannot hold CR, LF or NUL")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") ?(?P<name>.*)$', re.S | re.I)


def parse_list(data):
    """LIST answers as [(set of lower-case attributes, raw name)]. imaplib gives
    a bytes line per mailbox, or a (line, literal) pair when the name is a literal."""
    out = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            line, name = item[0], item[1]
            m = LIST_RE.match(line)
        else:
            m = LIST_RE.match(item)
            name = None
            if m:
                raw = m.group("name")
                if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
                    name = re.sub(rb'\\(.)', rb'\1', raw[1:-1])
                else:
                    name = raw
        if not m or name is None:
            continue
        attrs = {a.lower() for a in m.group("attrs").decode("ascii", "replace").split()}
        out.append((attrs, name.decode("utf-8", "replace")))
    return out


def imap_text(e):
    """An imaplib exception as text: its argument is often a bytes object."""
    if isinstance(e, OSError):
        return e.strerror or str(e) or type(e).__name__
    a = e.args[0] if e.args else ""
    if isinstance(a, bytes):
        a = a.decode("utf-8", "replace")
    return str(a) or type(e).__name__


def check(resp, what):
    """An imaplib (typ, data) pair that must be OK; returns data."""
    typ, data = resp
    if typ != "OK":
        text = b" ".join(d if isinstance(d, bytes) else b"" for d in data or []).decode("utf-8", "replace")
        raise Failure(EXIT_IMAP, "IMAP %s: %s %s" % (what, typ, text))
    return data


def xcode_failure(code, text, typ="NO"):
    """The Failure for an XSUBMITTOKEN refusal with response code code."""
    key = re.sub(r"[-_]", "", code.lower())
    for prefix in ("xsubmittoken", "submittoken"):
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix):]
    if key in XCODE_REFUSED:
        return refused(XCODE_REFUSED[key], text)
    if key in XCODE_FALLBACK:
        return Fallback(text)
    if key in XCODE_FETCH:
        return Failure(EXIT_FETCH, "IMAP %s: result=%s (%s)" % (XCMD, XCODE_FETCH[key], text))
    return Failure(EXIT_IMAP, "IMAP %s: %s %s%s" % (XCMD, typ, "[%s] " % code if code else "", text))


class Imap:
    """One IMAP session, as the user whose Sent folder receives the copy."""

    def __init__(self, args, password):
        self.args = args
        port = args.imap_port or (993 if args.imap_tls == "implicit" else 143)
        ctx = ssl.create_default_context(cafile=args.imap_cafile) if args.imap_tls != "none" else None
        if args.imap_tls == "implicit":
            self.m = imaplib.IMAP4_SSL(args.imap_host, port, ssl_context=ctx, timeout=args.timeout)
        else:
            self.m = imaplib.IMAP4(args.imap_host, port, timeout=args.timeout)
            if args.imap_tls == "starttls":
                check(self.m.starttls(ssl_context=ctx), "STARTTLS")
        if "LOGINDISABLED" in self.m.capabilities:
            raise Failure(EXIT_IMAP, "IMAP: the server refuses LOGIN on this connection "
                          "(LOGINDISABLED): use --imap-tls starttls or implicit")
        try:
            if "AUTH=PLAIN" in self.m.capabilities:
                # RFC 4616: UTF-8 user names and passwords, where LOGIN is ASCII only
                creds = b"\0" + args.imap_user.encode("utf-8") + b"\0" + password.encode("utf-8")
                check(self.m.authenticate("PLAIN", lambda _: creds), "AUTHENTICATE PLAIN")
            else:
                check(self.m.login(args.imap_user, password), "LOGIN")
        except imaplib.IMAP4.error as e:
            raise Failure(EXIT_IMAP, "IMAP login as %s refused: %s" % (args.imap_user, imap_text(e)))
        except UnicodeEncodeError:
            raise Failure(EXIT_IMAP, "IMAP login as %s: the server offers only LOGIN, which cannot "
                          "carry non-ASCII user names or passwords" % args.imap_user)
        # The capabilities change after login (RFC 3501 section 6.2.3): ask again.
        self.caps = set(check(self.m.capability(), "CAPABILITY")[-1].decode("ascii", "replace").upper().split())

    def logout(self):
        try:
            self.m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def sent_folder(self):
        """(raw name, created): the \\Sent folder the server announces (RFC 6154),
        preferring one named --folder; else --folder, created when missing."""
        want = utf7_encode(self.args.folder)
        if not self.args.ignore_special_use:
            # RFC 6154 section 2: the attributes MAY come with a plain LIST,
            # and MUST when asked for with LIST-EXTENDED's RETURN (SPECIAL-USE)
            if "SPECIAL-USE" in self.caps and "LIST-EXTENDED" in self.caps:
                data = check(self.m.list('""', '"*" RETURN (SPECIAL-USE)'), "LIST RETURN (SPECIAL-USE)")
            else:
                data = check(self.m.list('""', '"*"'), "LIST")
            sent = [n for attrs, n in parse_list(data)
                    if "\\sent" in attrs and not attrs & {"\\noselect", "\\nonexistent"}]
            if sent:
                return (want if want in sent else sent[0]), False
        data = check(self.m.list('""', quote(want)), "LIST")
        if any(n == want for _, n in parse_list(data)):
            return want, False
        if "CREATE-SPECIAL-USE" in self.caps and not self.args.ignore_special_use:
            # RFC 6154 section 3: mark it \Sent while creating it
            check(self.m.xatom("CREATE", quote(want), "(USE (\\Sent))"), "CREATE %s" % self.args.folder)
        else:
            check(self.m.create(quote(want)), "CREATE %s" % self.args.folder)
        # Subscribed, so that mail clients show it; not fatal if refused.
        self.m.subscribe(quote(want))
        return want, True

    def find_copy(self, folder, data):
        """UID of a message in folder with exactly these octets, or None. Only
        messages of the same size (SEARCH LARGER/SMALLER) are fetched."""
        check(self.m.select(quote(folder), readonly=True), "EXAMINE %s" % utf7_decode(folder))
        n = len(data)
        crit = ["SMALLER", str(n + 1)] + (["LARGER", str(n - 1)] if n > 0 else [])
        found = check(self.m.uid("SEARCH", *crit), "UID SEARCH")
        uids = [u for u in b" ".join(x for x in found if isinstance(x, bytes)).split() if u.isdigit()]
        want = hashlib.sha256(data).digest()
        for uid in uids[-MAX_CANDIDATES:]:
            got = check(self.m.uid("FETCH", uid, "(BODY.PEEK[])"), "UID FETCH")
            for part in got:
                if isinstance(part, tuple) and hashlib.sha256(part[1]).digest() == want:
                    return uid.decode()
        return None

    def xsubmittoken(self, folder, token):
        """tag XSUBMITTOKEN <folder> <token>: the server verifies the token,
        fetches the copy and files it. Returns (uidvalidity, uid) or None;
        a NO becomes a Failure named after its response code."""
        for attempt in (1, 2):
            # the token is an atom (TOKEN_CHARS); the folder a quoted string
            typ, data = self.m.xatom(XCMD, quote(folder), token)
            text = b" ".join(d for d in data or [] if isinstance(d, bytes)).decode("utf-8", "replace")
            if typ == "OK":
                m = re.search(r"\[APPENDUID (\d+) (\d+)\]", text, re.I)
                return (m.group(1), m.group(2)) if m else None
            m = re.match(r"^\[([^\] ]+)[^\]]*\]\s*(.*)$", text)
            code = m.group(1).upper() if m else ""
            if code == "TRYCREATE" and attempt == 1:
                # the folder went away since the LIST: make it, once
                check(self.m.create(quote(folder)), "CREATE %s" % utf7_decode(folder))
                continue
            raise xcode_failure(code, m.group(2) if m else text, typ)
        raise Failure(EXIT_IMAP, "IMAP %s: [TRYCREATE] again after CREATE" % XCMD)

    def append(self, folder, data, when):
        """APPEND with \\Seen and internal date; returns (uidvalidity, uid) or None."""
        # imaplib rewrites bare CR and LF into CRLF, and a literal cannot hold
        # NUL (RFC 3501 section 4.3): refuse rather than file altered octets.
        if imaplib.MapCRLF.sub(b"\r\n", data) != data or b"\0" in data:
            raise Failure(EXIT_FETCH, "the stored message has bare CR, bare LF or NUL octets: "
                          "it cannot be appended over IMAP unchanged")
        typ, resp = self.m.append(quote(folder), "(\\Seen)", when, data)
        check((typ, resp), "APPEND to %s" % utf7_decode(folder))
        text = b" ".join(r for r in resp if isinstance(r, bytes))
        m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", text, re.I)   # RFC 4315 section 3
        return (m.group(1).decode(), m.group(2).decode()) if m else None


# ---------------------------------------------------------------- main

class Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse exits 2 on usage errors, which here means "token refused"
        self.print_usage(sys.stderr)
        print("%s: error: %s" % (PROG, message), file=sys.stderr)
        sys.exit(EXIT_USAGE)


def parse_args(argv):
    p = Parser(prog=PROG, description="File the sender's copy of a message submitted to submitd "
               "into the user's IMAP Sent folder, from its sender token.",
               epilog="Secrets: $%s or --api-secret-file (API bearer secret), $%s or "
               "--imap-password-file (IMAP password). Exit status: 0 filed, 2 token refused, "
               "3 API/integrity problem, 4 IMAP problem, 64 usage." % (API_SECRET_ENV, IMAP_PASSWORD_ENV))
    p.add_argument("token", nargs="?", help="the token; read from standard input when absent or '-' "
                   "(preferred: arguments are visible to other local users)")
    a = p.add_argument_group("submitd API")
    a.add_argument("--api-url", default=DEFAULT_API_URL, help="default %(default)s")
    a.add_argument("--api-secret-file", metavar="FILE",
                   help="file whose first line is the bearer secret (default: $%s)" % API_SECRET_ENV)
    a.add_argument("--api-cafile", metavar="FILE", help="CA certificates for an https:// API URL")
    a.add_argument("--address", help="the address the token must be bound to, the authenticated "
                   "user's (default: --imap-user when it has an @); another gives wrong_address")
    a.add_argument("--any-address", action="store_true",
                   help="do not check the address binding (a backend that checked it already)")
    a.add_argument("--any-role", action="store_true",
                   help="also accept a recipient token (default: sender tokens only)")
    i = p.add_argument_group("IMAP")
    i.add_argument("--imap-host", default="127.0.0.1", help="default %(default)s")
    i.add_argument("--imap-port", type=int, help="default 143, or 993 with --imap-tls implicit")
    i.add_argument("--imap-tls", choices=("starttls", "implicit", "none"), default="starttls",
                   help="default %(default)s; 'none' sends the password in clear")
    i.add_argument("--imap-cafile", metavar="FILE", help="CA certificates for the IMAP server")
    i.add_argument("--imap-user", required=True)
    i.add_argument("--imap-password-file", metavar="FILE",
                   help="file whose first line is the password (default: $%s)" % IMAP_PASSWORD_ENV)
    i.add_argument("--folder", default="Sent", help="folder to use when the server flags none "
                   "\\Sent; created if missing (default %(default)s)")
    i.add_argument("--ignore-special-use", action="store_true",
                   help="always use --folder, even if another folder is flagged \\Sent")
    i.add_argument("--allow-duplicate", action="store_true",
                   help="append even if the folder already holds identical octets")
    i.add_argument("--no-xsubmittoken", action="store_true",
                   help="fetch and APPEND even when the server offers XSUBMITTOKEN")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds (default 60)")
    p.add_argument("-v", "--verbose", action="store_true", help="say what is done, on standard error")
    return p.parse_args(argv)


def expected_address(args):
    """The address the token must be bound to, or None with --any-address.
    Without it, whoever holds a sender token could file another user's message."""
    if args.any_address:
        return None
    if args.address:
        return args.address
    if "@" in args.imap_user:
        return args.imap_user
    raise Failure(EXIT_USAGE, "cannot tell which address the token must be bound to: give "
                  "--address (or --any-address to skip the check)")


def use_command(args, imap):
    """Whether to let the IMAP server file the copy (XSUBMITTOKEN): when it
    offers the command and nothing asked for what the command cannot do
    (another role, no or another address binding than the logged-in user's)."""
    if XCMD not in imap.caps or args.no_xsubmittoken or args.any_role or args.any_address:
        return False
    return args.address is None or args.address == args.imap_user


def open_imap(args, password):
    try:
        return Imap(args, password)
    except (OSError, imaplib.IMAP4.error) as e:
        raise Failure(EXIT_IMAP, "IMAP %s: %s" % (args.imap_host, imap_text(e)))


def run_command(args, imap, token):
    """The server verifies, fetches and files: one command."""
    try:
        folder, created = imap.sent_folder()
        log(args, "folder %s%s; %s %s", utf7_decode(folder), " (created)" if created else "", XCMD, short(token))
        res = imap.xsubmittoken(folder, token)
    except (OSError, imaplib.IMAP4.error) as e:
        raise Failure(EXIT_IMAP, "IMAP: %s" % imap_text(e))
    if res:
        log(args, "filed by the server into %s: UIDVALIDITY %s UID %s", utf7_decode(folder), *res)
        print(res[1])
    else:
        log(args, "filed by the server into %s (no APPENDUID)", utf7_decode(folder))
    return EXIT_OK


def run(args):
    address = expected_address(args)
    secret = api_secret(args)
    password = imap_password(args)
    token = read_token(args)

    imap = open_imap(args, password)
    try:
        if use_command(args, imap):
            try:
                return run_command(args, imap, token)
            except Fallback as e:
                log(args, "the server does not file this copy (%s): fetching it", e)
                return run_fetch_append(args, imap, address, secret, token)
        log(args, "the server does not file by token%s: fetching the copy",
            "" if XCMD not in imap.caps else " for this request")
        return run_fetch_append(args, imap, address, secret, token)
    finally:
        imap.logout()


def run_fetch_append(args, imap, address, secret, token):
    """Verify and fetch with the API, then APPEND."""
    api = Api(args, secret)
    try:
        log(args, "verify %s at %s", short(token), api.where)
        v = api.verify(token, address)
        m = v["message"]
        log(args, "valid: token_id=%s role=%s message=%s size=%d sha256=%s",
            v["token_id"], v["role"], m["id"], m["size"], m["sha256"])
        if v["role"] != "sender" and not args.any_role:
            raise refused("wrong_role", "a %s token; this files the sender's copy "
                          "(--any-role to accept it)" % v["role"])
        when = parse_received_at(m["received_at"])
        data = api.fetch(token, address, v)
        log(args, "fetched message %s: %d octets, SHA-256 and ETag match", m["id"], len(data))
    finally:
        api.close()

    try:
        folder, created = imap.sent_folder()
        log(args, "folder %s%s", utf7_decode(folder), " (created)" if created else "")
        if not created and not args.allow_duplicate:
            uid = imap.find_copy(folder, data)
            if uid is not None:
                log(args, "message %s is already in %s as UID %s: not appended again",
                    m["id"], utf7_decode(folder), uid)
                print(uid)
                return EXIT_OK
        res = imap.append(folder, data, when)
        if res:
            log(args, "appended message %s to %s: UIDVALIDITY %s UID %s", m["id"], utf7_decode(folder), *res)
            print(res[1])
        else:
            log(args, "appended message %s to %s (no APPENDUID from the server)", m["id"], utf7_decode(folder))
    except (OSError, imaplib.IMAP4.error) as e:
        raise Failure(EXIT_IMAP, "IMAP: %s" % imap_text(e))
    return EXIT_OK


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except Failure as f:
        print("%s: %s" % (PROG, f), file=sys.stderr)
        return f.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
