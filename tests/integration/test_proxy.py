"""test_proxy.py: the PROXY protocol on the SMTP listeners
(smtp.proxy_networks, docs/smtp.md#proxy-protocol), end to end with a real
HAProxy (Debian's haproxy, started by haproxy.py on loopback) in front of a
real submitd.

Clients bound to 127.0.0.2 (and 127.0.0.3) reach submitd through HAProxy,
whose own connections come from 127.0.0.1, the only proxy network. The
node must log, store, relay (Received:) and throttle the client's address,
not HAProxy's, with send-proxy-v2 and send-proxy (v1), on the STARTTLS and
the implicit TLS listener; HAProxy's health checks keep the node UP and
log nothing at level err. Raw sockets check the refusals: no header, a
truncated, oversized, wrong-signature or slow header from the proxy
network is closed without a greeting; a header from anywhere else is
refused with 554.
Run: SUBMITD_BUILD_DIR=/path/to/build python3 -m unittest -v test_proxy
"""

import re
import smtplib
import socket
import struct
import time
import unittest
import uuid

import haproxy
import harness
from harness import TIMEOUT_SCALE, RawSMTP, Submitd, client_tls_context
from nexthop import ScriptedHop

ALICE = "alice@example.org"
PASSWORD = "proxy test password"
WAIT = 30.0 * TIMEOUT_SCALE
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst, dport, command=1, tlvs=b""):
    """A PROXY v2 header for TCP over IPv4 (command 1: PROXY, 0: LOCAL)."""
    addr = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(addr)) + addr


def message(marker):
    return ("From: <%s>\r\nTo: <bob@example.net>\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n"
            "hello through the proxy\r\n" % (ALICE, marker, marker)).encode()


def connect_from(source, port, timeout=10.0):
    """A TCP connection to 127.0.0.1:port from the loopback address source."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def wait_for(predicate, what, timeout=WAIT):
    return harness.wait_for(what, predicate, timeout, every=0.05)


def closed_silently(sock, timeout=10.0):
    """True when the peer closes (EOF or reset) without sending an octet."""
    sock.settimeout(timeout * TIMEOUT_SCALE)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return True
    except (socket.timeout, TimeoutError):
        return False
    return data == b""


@unittest.skipUnless(haproxy.available(), "haproxy is not installed")
class ProxyCase(unittest.TestCase):
    """One submitd with a next hop, behind HAProxy with send-proxy-v2 (587
    and 465) and send-proxy (587)."""

    @classmethod
    def setUpClass(cls):
        cls.hop = ScriptedHop().start()
        cls.srv = Submitd({
            "smtp.proxy_networks": "127.0.0.1/32",
            "smtp.command_timeout": "2",
            "relay.host": "127.0.0.1", "relay.port": str(cls.hop.port), "relay.tls": "none",
            "relay.show_client_address": "true", "relay.poll_interval": "1",
        })
        try:
            cls.srv.start()
            cls.srv.add_user(ALICE, PASSWORD)
            hp = cls.hp = haproxy.HAProxy()
            plain = [("n1", "127.0.0.1", cls.srv.port)]
            tls = [("n1", "127.0.0.1", cls.srv.tls_port)]
            cls.fe_v2 = hp.frontend(hp.backend("smtp_v2", plain, send_proxy="v2"))
            cls.fe_v2_tls = hp.frontend(hp.backend("smtps_v2", tls, send_proxy="v2"))
            cls.fe_v1 = hp.frontend(hp.backend("smtp_v1", plain, send_proxy="v1"))
            cls.fe_v1_tls = hp.frontend(hp.backend("smtps_v1", tls, send_proxy="v1"))
            hp.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "hp", None):
            cls.hp.stop()
        try:
            # exit status 0 after SIGTERM: a sanitizer report fails here
            cls.srv.stop()
        finally:
            cls.srv.cleanup()
            cls.hop.stop()

    # -- helpers
    def submit(self, port, implicit_tls=False, source="127.0.0.2"):
        """Log in and send one message through HAProxy from source; the
        stored row."""
        marker = "proxy-" + uuid.uuid4().hex
        if implicit_tls:
            c = smtplib.SMTP_SSL("127.0.0.1", port, context=client_tls_context(), source_address=(source, 0),
                                 timeout=30, local_hostname="client.test")
        else:
            c = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30,
                             local_hostname="client.test")
            c.starttls(context=client_tls_context())
        c.login(ALICE, PASSWORD)
        c.sendmail(ALICE, ["bob@example.net"], message(marker))
        c.quit()
        return marker, self.srv.message_with_marker(marker)

    def relayed(self, marker):
        return wait_for(lambda: [m for m in self.hop.messages() if marker.encode() in m.data],
                        "the relay of %s" % marker)[0]

    def log_since(self, mark):
        return self.srv.log()[mark:]

    def assert_client_everywhere(self, marker, row, source="127.0.0.2"):
        self.assertEqual(row["client_address"], source)
        m = self.relayed(marker)
        received = m.data.split(b"\r\n\r\n", 1)[0].decode()
        self.assertRegex(received, r"Received: from client\.test \(\[%s\]\)" % re.escape(source))
        self.assertNotIn("127.0.0.1", received)

    # -- through HAProxy
    def test_v2_starttls_client_address(self):
        mark = len(self.srv.log())
        marker, row = self.submit(self.fe_v2)
        self.assert_client_everywhere(marker, row)
        log = self.log_since(mark)
        self.assertRegex(log, r"event=connect session=\S+ ip=127\.0\.0\.2 proxy=127\.0\.0\.1 tls=no")
        self.assertRegex(log, r"event=auth_ok[^\n]*")

    def test_v2_implicit_tls_client_address(self):
        mark = len(self.srv.log())
        marker, row = self.submit(self.fe_v2_tls, implicit_tls=True)
        self.assert_client_everywhere(marker, row)
        self.assertRegex(self.log_since(mark), r"event=connect session=\S+ ip=127\.0\.0\.2 proxy=127\.0\.0\.1 "
                                                r"tls=implicit")

    def test_v1_client_address(self):
        mark = len(self.srv.log())
        marker, row = self.submit(self.fe_v1, source="127.0.0.3")
        self.assert_client_everywhere(marker, row, source="127.0.0.3")
        marker, row = self.submit(self.fe_v1_tls, implicit_tls=True)
        self.assertEqual(row["client_address"], "127.0.0.2")
        self.assertRegex(self.log_since(mark), r"ip=127\.0\.0\.3 proxy=127\.0\.0\.1")

    def test_auth_failures_counted_per_client(self):
        mark = len(self.srv.log())
        c = smtplib.SMTP("127.0.0.1", self.fe_v2, source_address=("127.0.0.3", 0), timeout=30)
        c.starttls(context=client_tls_context())
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            c.login(ALICE, "wrong")
        c.quit()
        self.assertRegex(self.log_since(mark), r"event=auth_failed[^\n]* ip=127\.0\.0\.3")

    def test_health_checks_keep_node_up_quietly(self):
        """HAProxy's checks of a send-proxy-v2 server send a v2 LOCAL header
        and close: a connect check, and option smtpchk, which wants the
        greeting and a 250 to EHLO. Both see the node UP; the log has them
        at info, never at err."""
        mark = len(self.srv.log())
        hp = haproxy.HAProxy()
        hp.frontend(hp.backend("checked", [("n1", "127.0.0.1", self.srv.port)], send_proxy="v2", check=True))
        hp.frontend(hp.backend("smtpchk", [("n1", "127.0.0.1", self.srv.port)], send_proxy="v2", check=True,
                               smtpchk=True))
        hp.frontend(hp.backend("tls", [("n1", "127.0.0.1", self.srv.tls_port)], send_proxy="v2", check=True))
        hp.start()
        try:
            hp.wait_state("checked", "n1", "UP")
            hp.wait_state("smtpchk", "n1", "UP")
            hp.wait_state("tls", "n1", "UP")
            # a few rounds of checks (inter 500ms), then look at the log
            wait_for(lambda: self.log_since(mark).count("event=proxy_local") >= 6, "six health checks")
            self.assertTrue(hp.server_states("smtpchk")["n1"].startswith("UP"))
        finally:
            hp.stop()
        log = self.log_since(mark)
        for port in (self.srv.port, self.srv.tls_port):
            self.assertIn("event=proxy_local proxy=127.0.0.1 listener=127.0.0.1:%d" % port, log)
        self.assertRegex(log, r"event=connect session=\S+ ip=127\.0\.0\.1 proxy=127\.0\.0\.1")
        self.assertNotIn("level=err", log)
        self.assertNotIn("event=proxy_refused", log)

    # -- raw sockets on the proxy network (127.0.0.1)
    def refused(self, data, reason, pause=None):
        mark = len(self.srv.log())
        s = connect_from("127.0.0.1", self.srv.port)
        try:
            if pause is None:
                s.sendall(data)
            else:
                for b in data:
                    s.sendall(bytes([b]))
                    time.sleep(pause)
                    if self.srv.log()[mark:].count("event=proxy_refused"):
                        break
            self.assertTrue(closed_silently(s), "expected a close without a greeting")
        finally:
            s.close()
        log = wait_for(lambda: re.search(r"event=proxy_refused proxy=127\.0\.0\.1 [^\n]*reason=(\S+)",
                                         self.log_since(mark)), "the refusal in the log")
        self.assertEqual(log.group(1), reason)

    def test_no_header_closed(self):
        self.refused(b"EHLO client.test\r\n", "bad_signature")

    def test_nothing_sent_closed_at_command_timeout(self):
        self.refused(b"", "timeout")

    def test_truncated_header_closed(self):
        self.refused(b"PROXY TCP4 127.0.0.9 127.0.0.1 4000", "timeout")
        self.refused(v2_header("127.0.0.9", 4000, "127.0.0.1", 587)[:20], "timeout")

    def test_oversized_header_closed(self):
        self.refused(b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n", "v1_too_long")
        # a v2 header longer than smtp.max_line_length (512): refused from its length field
        self.refused(V2_SIG + b"\x21\x11\x02\x00" + b"\x00" * 40, "v2_too_long")

    def test_wrong_signature_closed(self):
        self.refused(b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + b"\x00" * 12, "bad_signature")
        self.refused(b"PROXY TCP4 127.0.0.999 127.0.0.1 1 2\r\n", "v1_bad_address")

    def test_unix_and_datagram_refused(self):
        self.refused(V2_SIG + b"\x21\x31\x00\xd8" + b"\x00" * 216, "v2_unix")
        self.refused(V2_SIG + b"\x21\x12\x00\x0c" + b"\x00" * 12, "v2_dgram")

    def test_slow_header_closed(self):
        # one octet every half second: the header's clock is the command's (2 s here)
        self.refused(b"PROXY TCP4 127.0.0.9 127.0.0.1 4000 587\r\n", "timeout", pause=0.5)

    def test_raw_header_then_starttls(self):
        """A header written by hand, then STARTTLS and AUTH: the session is
        the client's (127.0.0.9), over TLS, with the rest of the dialogue."""
        mark = len(self.srv.log())
        s = connect_from("127.0.0.1", self.srv.port)
        s.sendall(v2_header("127.0.0.9", 40000, "127.0.0.1", self.srv.port, tlvs=b"\x04\x00\x02\x00\x00"))
        c = RawSMTP.__new__(RawSMTP)
        c.sock, c.buf = s, b""
        c.greeting = c.reply()
        self.assertEqual(c.greeting.code, 220)
        c.login_session(ALICE, PASSWORD)
        c.quit()
        self.assertRegex(self.log_since(mark), r"ip=127\.0\.0\.9 proxy=127\.0\.0\.1 tls=no")
        self.assertRegex(self.log_since(mark), r"event=tls_established")

    def test_second_header_from_the_client_refused(self):
        """A client behind the balancer that sends a PROXY header of its own
        (to pick its address) is refused like one from outside."""
        mark = len(self.srv.log())
        s = connect_from("127.0.0.1", self.srv.port)
        s.sendall(v2_header("127.0.0.9", 40000, "127.0.0.1", self.srv.port))
        c = RawSMTP.__new__(RawSMTP)
        c.sock, c.buf = s, b""
        self.assertEqual(c.reply().code, 220)
        r = c.cmd(b"PROXY TCP4 10.9.9.9 127.0.0.1 4000 587")
        self.assertEqual(r.code, 554)
        self.assertTrue(c.closed_by_peer())
        s.close()
        log = wait_for(lambda: "event=proxy_refused" in self.log_since(mark) and self.log_since(mark), "the refusal")
        self.assertRegex(log, r"event=proxy_refused session=\S+ ip=127\.0\.0\.9 reason=not_proxy_network")

    def test_raw_header_then_implicit_tls(self):
        mark = len(self.srv.log())
        s = connect_from("127.0.0.1", self.srv.tls_port)
        # v1 and the ClientHello in quick succession: not an octet of it is lost
        s.sendall(b"PROXY TCP4 127.0.0.10 127.0.0.1 40000 465\r\n")
        t = client_tls_context().wrap_socket(s)
        c = RawSMTP.__new__(RawSMTP)
        c.sock, c.buf = t, b""
        self.assertEqual(c.reply().code, 220)
        c.login_session(ALICE, PASSWORD)
        c.quit()
        self.assertRegex(self.log_since(mark), r"ip=127\.0\.0\.10 proxy=127\.0\.0\.1 tls=implicit")

    def test_local_command_is_the_proxy_itself(self):
        """v2 LOCAL (check-send-proxy health checks): the connection is the
        balancer's own, greeted like any other."""
        mark = len(self.srv.log())
        s = connect_from("127.0.0.1", self.srv.port)
        s.sendall(v2_header("0.0.0.0", 0, "0.0.0.0", 0, command=0))
        c = RawSMTP.__new__(RawSMTP)
        c.sock, c.buf = s, b""
        self.assertEqual(c.reply().code, 220)
        c.quit()
        log = self.log_since(mark)
        self.assertIn("event=proxy_local proxy=127.0.0.1", log)
        self.assertRegex(log, r"event=connect session=\S+ ip=127\.0\.0\.1 proxy=127\.0\.0\.1")

    # -- a PROXY header from outside the proxy networks
    def test_header_from_elsewhere_refused(self):
        for header in (b"PROXY TCP4 10.9.9.9 127.0.0.1 4000 587\r\n", v2_header("10.9.9.9", 4000, "127.0.0.1", 587)):
            mark = len(self.srv.log())
            s = connect_from("127.0.0.3", self.srv.port)
            c = RawSMTP.__new__(RawSMTP)
            c.sock, c.buf = s, b""
            self.assertEqual(c.reply().code, 220)
            if header.startswith(b"PROXY"):
                # in two segments: "PRO" alone is not yet a header, nor a refusal
                s.sendall(header[:3])
                time.sleep(0.2)
                s.sendall(header[3:] + b"EHLO x\r\n")
            else:
                s.sendall(header + b"EHLO x\r\n")
            r = c.reply()
            self.assertEqual(r.code, 554)
            self.assertIn("5.7.0", r.text)
            self.assertTrue(c.closed_by_peer())
            s.close()
            log = wait_for(lambda: "event=proxy_refused" in self.log_since(mark) and self.log_since(mark),
                           "the refusal")
            self.assertRegex(log, r"event=proxy_refused session=\S+ ip=127\.0\.0\.3 reason=not_proxy_network")
            # the address it claimed is nobody's
            self.assertNotRegex(log, r"ip=10\.9\.9\.9")

    def test_header_before_greeting_from_elsewhere_refused(self):
        """Sent at once, as a load balancer does: refused as a PROXY header,
        not as pipelining."""
        mark = len(self.srv.log())
        s = connect_from("127.0.0.3", self.srv.port)
        s.sendall(v2_header("10.9.9.9", 4000, "127.0.0.1", 587))
        data = b""
        s.settimeout(10)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        s.close()
        self.assertIn(b"554 5.7.0", data)
        wait_for(lambda: "reason=not_proxy_network" in self.log_since(mark), "the refusal")


@unittest.skipUnless(haproxy.available(), "haproxy is not installed")
class ProxyThrottleCase(unittest.TestCase):
    def test_connections_per_client_not_per_proxy(self):
        """server.max_connections_per_ip=1 through HAProxy: a second
        connection from 127.0.0.2 is refused while 127.0.0.3 is served, and
        HAProxy's address (which carries both) is not one client."""
        with Submitd({"smtp.proxy_networks": "127.0.0.1", "server.max_connections_per_ip": "1"}) as srv:
            hp = haproxy.HAProxy()
            fe = hp.frontend(hp.backend("smtp", [("n1", "127.0.0.1", srv.port)], send_proxy="v2", check=False))
            hp.start()
            try:
                first = connect_from("127.0.0.2", fe)
                c1 = RawSMTP.__new__(RawSMTP)
                c1.sock, c1.buf = first, b""
                self.assertEqual(c1.reply().code, 220)
                second = connect_from("127.0.0.2", fe)
                c2 = RawSMTP.__new__(RawSMTP)
                c2.sock, c2.buf = second, b""
                r = c2.reply()
                self.assertEqual(r.code, 421)
                self.assertIn("Too many connections from your address", r.text)
                other = connect_from("127.0.0.3", fe)
                c3 = RawSMTP.__new__(RawSMTP)
                c3.sock, c3.buf = other, b""
                self.assertEqual(c3.reply().code, 220)
                c3.ehlo()
                c3.quit()
                c1.quit()
                second.close()
                self.assertRegex(srv.log(), r"event=connection_refused ip=127\.0\.0\.2 proxy=127\.0\.0\.1 "
                                            r"reason=max_connections_per_ip")
                # HAProxy's own address was never throttled
                self.assertNotRegex(srv.log(), r"connection_refused ip=127\.0\.0\.1 ")
            finally:
                hp.stop()


class ProxyShutdownCase(unittest.TestCase):
    def test_sigterm_with_headers_pending(self):
        """Connections still owing their header at SIGTERM are closed at the
        exit, which stays clean (exit status 0; leaks fail it under ASan)."""
        srv = Submitd({"smtp.proxy_networks": "127.0.0.1"})
        srv.start()
        try:
            socks = [connect_from("127.0.0.1", srv.port), connect_from("127.0.0.1", srv.tls_port)]
            socks[0].sendall(b"PROXY TCP4 127.0.0.9")
            time.sleep(0.2)
            self.assertEqual(srv.stop(), 0)
            for s in socks:
                self.assertTrue(closed_silently(s))
                s.close()
        finally:
            srv.cleanup()


if __name__ == "__main__":
    unittest.main()
