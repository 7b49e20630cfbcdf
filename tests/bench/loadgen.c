/*
 * loadgen.c: the SMTP load generator of scripts/bench (see
 * docs/performance.md). One process, one libevent loop, many sessions.
 *
 * Submit mode (the default) runs -n sessions in total, -c at once, each:
 * connect, EHLO, [STARTTLS, EHLO,] [AUTH PLAIN,] MAIL, -R x RCPT, DATA,
 * the message (-s octets), QUIT. It times each session's end of data (the
 * moment the final "." has left the client's buffer) to the final reply,
 * and prints one key=value line: sessions/s, p50/p99 of that latency,
 * tokens seen in the final replies, MB/s of message data. Each message
 * has its own Message-ID, so that none is a resubmission of another.
 * With -r RATE, sessions start at RATE per second (open loop, still at
 * most -c at once), to measure latency below the peak rate.
 *
 * Idle mode (-i) opens -n sessions (-c connecting at once), takes each
 * through EHLO (and STARTTLS with -t), then holds them all without a
 * word, prints "loadgen: idle ready=N", and waits for SIGTERM or -w.
 *
 * Sockets are TCP_NODELAY and acknowledge at once (TCP_QUICKACK), so that
 * no figure includes a Nagle / delayed-ACK stall of 40 ms, whatever the
 * server's write pattern. Only loopback addresses are accepted as targets,
 * and every run ends after -w seconds at the latest.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define LG_HELO          "loadgen.example.org"
#define LG_LINE_MAX      4096   /* longest reply line we accept */
#define LG_TICK_US       1000   /* rate mode: how often the starter runs */
#define LG_MAX_ERRORS    5      /* failures described on stderr */
#define LG_BODY_LINE     78     /* 'x' per body line, CRLF not counted */
#define LG_MIN_SIZE      512
/* fixed width, so that every message is exactly -s octets */
#define LG_MSGID_FMT     "Message-ID: <loadgen.%010ld.%012ld@example.org>\r\n"

enum lg_state {
	ST_GREETING, ST_EHLO1, ST_STARTTLS, ST_EHLO2, ST_AUTH, ST_MAIL, ST_RCPT,
	ST_DATA, ST_BODY, ST_QUIT, ST_IDLE
};

static const char *const lg_state_names[] = {
	"greeting", "ehlo", "starttls", "ehlo2", "auth", "mail", "rcpt",
	"data", "body", "quit", "idle"
};

struct lg_opts {
	struct sockaddr_in addr;
	long total;          /* -n */
	int concurrency;     /* -c */
	double rate;         /* -r, sessions/s; 0: as fast as -c allows */
	size_t size;         /* -s, message octets */
	int rcpts;           /* -R */
	bool tls;            /* -t */
	const char *user;    /* -a USER:PASS */
	const char *pass;
	const char *from;    /* -f */
	const char *token_file; /* -T */
	bool idle;           /* -i */
	double wait;         /* -w, seconds */
};

struct lg;

struct lg_session {
	struct lg *lg;
	struct bufferevent *bev;
	enum lg_state state;
	int rcpt_sent;
	bool body_queued;    /* the body is in the output buffer */
	double t_data_end;   /* when it left the buffer; 0 until then */
	bool counted_idle;
	long seq;            /* this session's number, for its Message-ID */
};

struct lg {
	struct lg_opts o;
	struct event_base *base;
	SSL_CTX *ssl_ctx;
	char *message;       /* the message, headers included, then ".\r\n" */
	size_t message_len;
	size_t msgid_len;    /* the Message-ID line, not in message */
	char *auth_line;     /* "AUTH PLAIN base64\r\n" */
	long started, finished, ok, failed, active, idle_ready;
	long tokens;
	double *latency;     /* seconds, one per successful session */
	long nlatency;
	double t0, t_end;
	FILE *token_out;
	struct lg_session **sessions; /* idle mode: every session, to free them */
	struct event *tick, *deadline, *sigterm, *sigint;
	bool stopping;
	int errors_shown;
	long rss_start_kb;   /* idle mode: before the first session */
};

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL) {
		fprintf(stderr, "loadgen: out of memory\n");
		abort();
	}
	return p;
}

static void lg_start_more(struct lg *lg);

/* This process's resident set, from /proc (kB; -1 if unknown). */
static long
self_rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}
static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);

/* Base64 (RFC 4648 section 4, padded) of len octets into a new string. */
static char *
base64(const unsigned char *in, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xmalloc((len + 2) / 3 * 4 + 1), *o = out;

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/*
 * The message: a few header lines, then lines of LG_BODY_LINE 'x' so that
 * the whole is exactly o->size octets, then the end-of-data line. No line
 * starts with '.', so no dot-stuffing is needed.
 */
static void
build_message(struct lg *lg)
{
	char head[512];
	int hn = snprintf(head, sizeof(head),
	    LG_MSGID_FMT "From: <%s>\r\nTo: <rcpt1@example.net>\r\nSubject: loadgen %zu octets\r\n\r\n",
	    0L, 0L, lg->o.from, lg->o.size);
	size_t rest = lg->o.size - (size_t)hn, full = LG_BODY_LINE + 2;
	size_t nfull = rest / full, last = rest % full;
	char *p;

	if (hn < 0 || (size_t)hn + 3 > lg->o.size) {
		fprintf(stderr, "loadgen: -s %zu is too small for the header\n", lg->o.size);
		exit(2);
	}
	/* a last line of 1 or 2 octets cannot hold CRLF: lengthen the one before */
	if (last > 0 && last < 3) {
		nfull--;
		last += full;
	}
	/* the Message-ID line is each session's own (see session_reply) */
	lg->msgid_len = (size_t)snprintf(NULL, 0, LG_MSGID_FMT, 0L, 0L);
	lg->message = xmalloc(lg->o.size + 4);
	memcpy(lg->message, head + lg->msgid_len, (size_t)hn - lg->msgid_len);
	p = lg->message + (size_t)hn - lg->msgid_len;
	for (size_t i = 0; i <= nfull; i++) {
		size_t line = i < nfull ? full : last;
		if (line == 0)
			break;
		memset(p, 'x', line - 2);
		p[line - 2] = '\r';
		p[line - 1] = '\n';
		p += line;
	}
	memcpy(p, ".\r\n", 3);
	p += 3;
	lg->message_len = (size_t)(p - lg->message);
}

static void
session_send(struct lg_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_send(struct lg_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

static void
session_free(struct lg_session *s)
{
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	s->bev = NULL;
	free(s);
}

/* Ends a session in submit mode (ok or not), or drops one in idle mode. */
static void
session_end(struct lg_session *s, bool ok, const char *why, const char *line)
{
	struct lg *lg = s->lg;

	if (!ok && lg->errors_shown < LG_MAX_ERRORS && !lg->stopping) {
		lg->errors_shown++;
		fprintf(stderr, "loadgen: session failed in state %s: %s%s%.200s\n",
		    lg_state_names[s->state], why, line ? ": " : "", line ? line : "");
	}
	if (lg->o.idle) {
		/* idle sessions stay in lg->sessions; only count the loss */
		if (s->counted_idle)
			lg->idle_ready--;
		else
			lg->active--;
		lg->failed++;
		if (s->bev != NULL)
			bufferevent_free(s->bev);
		s->bev = NULL;
		s->state = ST_IDLE;
		s->counted_idle = false;
		lg_start_more(lg);
		return;
	}
	lg->active--;
	lg->finished++;
	if (ok)
		lg->ok++;
	else
		lg->failed++;
	session_free(s);
	if (lg->finished == lg->o.total) {
		lg->t_end = now_s();
		event_base_loopexit(lg->base, NULL);
		return;
	}
	lg_start_more(lg);
}

static void
session_mail(struct lg_session *s)
{
	session_send(s, "MAIL FROM:<%s>\r\n", s->lg->o.from);
	s->state = ST_MAIL;
}

/* After EHLO (the second one with TLS): idle, AUTH or MAIL. */
static void
session_after_ehlo(struct lg_session *s)
{
	struct lg *lg = s->lg;

	if (lg->o.idle) {
		s->state = ST_IDLE;
		s->counted_idle = true;
		lg->active--;
		lg->idle_ready++;
		if (lg->idle_ready + lg->failed == lg->o.total) {
			printf("loadgen: idle ready=%ld failed=%ld seconds=%.3f rss_start_kb=%ld rss_kb=%ld\n",
			    lg->idle_ready, lg->failed, now_s() - lg->t0, lg->rss_start_kb, self_rss_kb());
			fflush(stdout);
		}
		lg_start_more(lg);
		return;
	}
	if (lg->auth_line != NULL) {
		evbuffer_add(bufferevent_get_output(s->bev), lg->auth_line, strlen(lg->auth_line));
		s->state = ST_AUTH;
		return;
	}
	session_mail(s);
}

static bool
session_starttls(struct lg_session *s)
{
	struct lg *lg = s->lg;
	SSL *ssl = SSL_new(lg->ssl_ctx);
	struct bufferevent *tls;

	if (ssl == NULL)
		return false;
	SSL_set_tlsext_host_name(ssl, "localhost");
	tls = bufferevent_openssl_filter_new(lg->base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL) {
		SSL_free(ssl);
		return false;
	}
	s->bev = tls;
	bufferevent_setcb(tls, session_read_cb, session_write_cb, session_event_cb, s);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	session_send(s, "EHLO %s\r\n", LG_HELO);
	s->state = ST_EHLO2;
	return true;
}

/* A token line of the final reply: "250-2.1.13 [<address>] v4.public...". */
static void
note_token(struct lg *lg, const char *line)
{
	const char *tok = strstr(line, "v4.public."), *lt, *gt, *end;

	if (tok == NULL)
		return;
	lg->tokens++;
	if (lg->token_out == NULL)
		return;
	end = tok + strcspn(tok, " \r\n");
	lt = strchr(line, '<');
	gt = lt ? strchr(lt, '>') : NULL;
	if (lt != NULL && gt != NULL && gt < tok)
		fprintf(lg->token_out, "%.*s %.*s\n", (int)(gt - lt - 1), lt + 1,
		    (int)(end - tok), tok);
	else
		fprintf(lg->token_out, "- %.*s\n", (int)(end - tok), tok);
}

/*
 * One complete reply (its last line and its code): the next step of the
 * dialogue. Returns false when the session was ended or its bufferevent
 * replaced (STARTTLS), so the caller stops reading from the old one.
 */
static bool
session_reply(struct lg_session *s, int code, const char *line)
{
	struct lg *lg = s->lg;

	switch (s->state) {
	case ST_GREETING:
		if (code != 220)
			break;
		session_send(s, "EHLO %s\r\n", LG_HELO);
		s->state = ST_EHLO1;
		return true;
	case ST_EHLO1:
		if (code != 250)
			break;
		if (lg->o.tls) {
			session_send(s, "STARTTLS\r\n");
			s->state = ST_STARTTLS;
			return true;
		}
		session_after_ehlo(s);
		return true;
	case ST_STARTTLS:
		if (code != 220)
			break;
		if (!session_starttls(s)) {
			session_end(s, false, "cannot start TLS", NULL);
			return false;
		}
		return false;
	case ST_EHLO2:
		if (code != 250)
			break;
		session_after_ehlo(s);
		return true;
	case ST_AUTH:
		if (code != 235)
			break;
		session_mail(s);
		return true;
	case ST_MAIL:
	case ST_RCPT:
		if (code != 250)
			break;
		if (s->rcpt_sent < lg->o.rcpts) {
			s->rcpt_sent++;
			session_send(s, "RCPT TO:<rcpt%d@example.net>\r\n", s->rcpt_sent);
			s->state = ST_RCPT;
			return true;
		}
		session_send(s, "DATA\r\n");
		s->state = ST_DATA;
		return true;
	case ST_DATA:
		if (code != 354)
			break;
		/* its own Message-ID first (submitd answers a resubmission
		 * with the stored copy's tokens and stores nothing), then the
		 * rest, which is shared and outlives every session */
		session_send(s, LG_MSGID_FMT, (long)getpid() % 10000000000L, s->seq);
		evbuffer_add_reference(bufferevent_get_output(s->bev), lg->message,
		    lg->message_len, NULL, NULL);
		s->body_queued = true;
		s->state = ST_BODY;
		return true;
	case ST_BODY:
		if (code != 250)
			break;
		if (s->t_data_end == 0)
			s->t_data_end = now_s();  /* reply before the write callback ran */
		lg->latency[lg->nlatency++] = now_s() - s->t_data_end;
		session_send(s, "QUIT\r\n");
		s->state = ST_QUIT;
		return true;
	case ST_QUIT:
		session_end(s, code == 221, "unexpected reply to QUIT", line);
		return false;
	case ST_IDLE:
		break;
	}
	session_end(s, false, "unexpected reply", line);
	return false;
}

/*
 * Acknowledges every segment at once (Linux clears TCP_QUICKACK as it goes,
 * so it is set again each time data arrives on the socket, TLS or not). A
 * server that writes one answer in two small segments, such as two TLS 1.3
 * session tickets, would otherwise have the second held back by Nagle's
 * algorithm until the client's delayed ACK, 40 ms later: a cost of the
 * pair of TCP stacks, not of the server's work.
 */
static void
quickack_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct bufferevent *sock = arg;
	int one = 1;
	evutil_socket_t fd;

	(void)buf;
	if (info->n_added == 0 || (fd = bufferevent_getfd(sock)) < 0)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	struct lg_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		bool go_on = true;
		if (len < 3 || len > LG_LINE_MAX) {
			session_end(s, false, "malformed reply", line);
			free(line);
			return;
		}
		if (s->state == ST_BODY)
			note_token(s->lg, line);
		if (len == 3 || line[3] == ' ')
			go_on = session_reply(s, atoi(line), line);
		free(line);
		if (!go_on)
			return;
	}
	if (evbuffer_get_length(in) > LG_LINE_MAX)
		session_end(s, false, "reply line too long", NULL);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct lg_session *s = arg;

	if (s->body_queued && s->t_data_end == 0 &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		s->t_data_end = now_s();
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lg_session *s = arg;
	char why[160];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_EOF) {
		session_end(s, false, "connection closed by the server", NULL);
		return;
	}
	unsigned long e = bufferevent_get_openssl_error(s->bev);
	if (e != 0)
		ERR_error_string_n(e, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "%s", strerror(EVUTIL_SOCKET_ERROR()));
	session_end(s, false, "connection error", why);
}

static void
session_start(struct lg *lg)
{
	struct lg_session *s = xmalloc(sizeof(*s));
	evutil_socket_t fd;
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->lg = lg;
	s->state = ST_GREETING;
	s->seq = lg->started;
	s->bev = bufferevent_socket_new(lg->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (lg->o.idle)
		lg->sessions[lg->started] = s;
	lg->started++;
	lg->active++;
	if (s->bev == NULL) {
		session_end(s, false, "cannot create a socket", NULL);
		return;
	}
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	evbuffer_add_cb(bufferevent_get_input(s->bev), quickack_cb, s->bev);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&lg->o.addr,
	    sizeof(lg->o.addr)) != 0) {
		session_end(s, false, "cannot connect", strerror(errno));
		return;
	}
	/* the end of a message is a small segment: send it without waiting
	 * for the server's (delayed) ACK of the one before */
	fd = bufferevent_getfd(s->bev);
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Starts sessions while the concurrency, the total and the rate allow. */
static void
lg_start_more(struct lg *lg)
{
	long due = lg->o.total;

	if (lg->stopping)
		return;
	if (lg->o.rate > 0) {
		due = (long)((now_s() - lg->t0) * lg->o.rate) + 1;
		if (due > lg->o.total)
			due = lg->o.total;
	}
	while (lg->started < due && lg->active < lg->o.concurrency)
		session_start(lg);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	lg_start_more(arg);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lg *lg = arg;

	(void)fd;
	(void)what;
	lg->stopping = true;
	if (lg->t_end == 0)
		lg->t_end = now_s();
	event_base_loopbreak(lg->base);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, in milliseconds. */
static double
percentile_ms(const double *v, long n, double q)
{
	long i;

	if (n == 0)
		return 0;
	i = (long)ceil(q * (double)n) - 1;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return v[i] * 1000.0;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen [options] 127.x.y.z:PORT\n"
	    "  -n N          sessions in total (default 100)\n"
	    "  -c C          sessions at once (default 1)\n"
	    "  -r RATE       start RATE sessions per second (default: as fast as -c allows)\n"
	    "  -s OCTETS     message size, headers included (default 4096, at least %d)\n"
	    "  -R N          recipients per message (default 1)\n"
	    "  -t            STARTTLS after the first EHLO (the certificate is not checked)\n"
	    "  -a USER:PASS  AUTH PLAIN after EHLO\n"
	    "  -f FROM       envelope sender (default: USER of -a, else a@example.org)\n"
	    "  -T FILE       write each token of the final replies to FILE: \"address token\"\n"
	    "  -i            idle mode: hold -n sessions after EHLO until SIGTERM or -w\n"
	    "  -w SECONDS    stop after this long whatever happens (default 300)\n",
	    LG_MIN_SIZE);
	exit(2);
}

static bool
parse_target(const char *arg, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(arg, ':');
	long port;

	if (colon == NULL || (size_t)(colon - arg) >= sizeof(host))
		return false;
	memcpy(host, arg, (size_t)(colon - arg));
	host[colon - arg] = '\0';
	port = strtol(colon + 1, NULL, 10);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)port);
	if (port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return false;
	/* loopback only: this tool is never pointed at another machine */
	return (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
}

static void
parse_args(struct lg_opts *o, int argc, char **argv)
{
	int ch;

	memset(o, 0, sizeof(*o));
	o->total = 100;
	o->concurrency = 1;
	o->size = 4096;
	o->rcpts = 1;
	o->wait = 300;
	while ((ch = getopt(argc, argv, "n:c:r:s:R:ta:f:T:iw:")) != -1) {
		switch (ch) {
		case 'n': o->total = strtol(optarg, NULL, 10); break;
		case 'c': o->concurrency = (int)strtol(optarg, NULL, 10); break;
		case 'r': o->rate = strtod(optarg, NULL); break;
		case 's': o->size = (size_t)strtoull(optarg, NULL, 10); break;
		case 'R': o->rcpts = (int)strtol(optarg, NULL, 10); break;
		case 't': o->tls = true; break;
		case 'a': {
			char *colon = strchr(optarg, ':');
			if (colon == NULL)
				usage();
			*colon = '\0';
			o->user = optarg;
			o->pass = colon + 1;
			break;
		}
		case 'f': o->from = optarg; break;
		case 'T': o->token_file = optarg; break;
		case 'i': o->idle = true; break;
		case 'w': o->wait = strtod(optarg, NULL); break;
		default: usage();
		}
	}
	if (optind + 1 != argc || !parse_target(argv[optind], &o->addr)) {
		fprintf(stderr, "loadgen: the target must be one 127.x.y.z:PORT address\n");
		usage();
	}
	if (o->total < 1 || o->concurrency < 1 || o->rate < 0 || o->rcpts < 1 ||
	    o->size < LG_MIN_SIZE || o->wait <= 0)
		usage();
	if (o->from == NULL)
		o->from = o->user ? o->user : "a@example.org";
}

/* Raises the open-file limit to its hard limit (idle mode needs thousands). */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
report(struct lg *lg)
{
	double secs = (lg->t_end ? lg->t_end : now_s()) - lg->t0;
	long unfinished = lg->o.total - lg->finished;

	qsort(lg->latency, (size_t)lg->nlatency, sizeof(double), cmp_double);
	printf("loadgen: sessions=%ld ok=%ld failed=%ld unfinished=%ld seconds=%.3f "
	    "sessions_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f tokens=%ld mb_per_s=%.2f\n",
	    lg->o.total, lg->ok, lg->failed, unfinished, secs,
	    secs > 0 ? (double)lg->ok / secs : 0,
	    percentile_ms(lg->latency, lg->nlatency, 0.50),
	    percentile_ms(lg->latency, lg->nlatency, 0.99),
	    percentile_ms(lg->latency, lg->nlatency, 1.0),
	    lg->tokens,
	    secs > 0 ? (double)lg->ok * (double)lg->o.size / 1e6 / secs : 0);
}

int
main(int argc, char **argv)
{
	struct lg lg;
	struct timeval tv;
	int rc;

	memset(&lg, 0, sizeof(lg));
	parse_args(&lg.o, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	lg.base = event_base_new();
	lg.ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (lg.base == NULL || lg.ssl_ctx == NULL) {
		fprintf(stderr, "loadgen: cannot set up libevent or OpenSSL\n");
		return 1;
	}
	SSL_CTX_set_verify(lg.ssl_ctx, SSL_VERIFY_NONE, NULL);
	/* every session is a new client: no resumption */
	SSL_CTX_set_session_cache_mode(lg.ssl_ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(lg.ssl_ctx, SSL_OP_NO_TICKET);

	if (lg.o.user != NULL) {
		size_t ul = strlen(lg.o.user), pl = strlen(lg.o.pass);
		unsigned char *raw = xmalloc(ul + pl + 2);
		char *b64;
		raw[0] = '\0';
		memcpy(raw + 1, lg.o.user, ul);
		raw[ul + 1] = '\0';
		memcpy(raw + ul + 2, lg.o.pass, pl);
		b64 = base64(raw, ul + pl + 2);
		lg.auth_line = xmalloc(strlen(b64) + 16);
		sprintf(lg.auth_line, "AUTH PLAIN %s\r\n", b64);
		free(b64);
		free(raw);
	}
	build_message(&lg);
	lg.latency = xmalloc(sizeof(double) * (size_t)lg.o.total);
	if (lg.o.idle) {
		lg.sessions = xmalloc(sizeof(*lg.sessions) * (size_t)lg.o.total);
		memset(lg.sessions, 0, sizeof(*lg.sessions) * (size_t)lg.o.total);
	}
	if (lg.o.token_file != NULL && (lg.token_out = fopen(lg.o.token_file, "w")) == NULL) {
		fprintf(stderr, "loadgen: %s: %s\n", lg.o.token_file, strerror(errno));
		return 1;
	}

	tv.tv_sec = (time_t)lg.o.wait;
	tv.tv_usec = (suseconds_t)((lg.o.wait - (double)tv.tv_sec) * 1e6);
	lg.deadline = evtimer_new(lg.base, stop_cb, &lg);
	evtimer_add(lg.deadline, &tv);
	lg.sigterm = evsignal_new(lg.base, SIGTERM, stop_cb, &lg);
	lg.sigint = evsignal_new(lg.base, SIGINT, stop_cb, &lg);
	event_add(lg.sigterm, NULL);
	event_add(lg.sigint, NULL);
	if (lg.o.rate > 0) {
		struct timeval tick = { 0, LG_TICK_US };
		lg.tick = event_new(lg.base, -1, EV_PERSIST, tick_cb, &lg);
		event_add(lg.tick, &tick);
	}

	lg.rss_start_kb = self_rss_kb();
	lg.t0 = now_s();
	lg_start_more(&lg);
	event_base_dispatch(lg.base);
	lg.stopping = true;

	if (lg.o.idle) {
		printf("loadgen: idle held=%ld failed=%ld\n", lg.idle_ready, lg.failed);
		for (long i = 0; i < lg.started; i++)
			if (lg.sessions[i] != NULL)
				session_free(lg.sessions[i]);
		rc = lg.failed == 0 && lg.idle_ready == lg.o.total ? 0 : 1;
	} else {
		report(&lg);
		rc = lg.ok == lg.o.total ? 0 : 1;
	}
	fflush(stdout);
	if (lg.token_out != NULL)
		fclose(lg.token_out);
	if (lg.tick != NULL)
		event_free(lg.tick);
	event_free(lg.deadline);
	event_free(lg.sigterm);
	event_free(lg.sigint);
	SSL_CTX_free(lg.ssl_ctx);
	event_base_free(lg.base);
	free(lg.latency);
	free(lg.sessions);
	free(lg.message);
	free(lg.auth_line);
	return rc;
}
