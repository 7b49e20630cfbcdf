/*
 * http_api.c: see http_api.h and docs/api.md. The threads and their
 * listeners, the routing table, service credentials and the JSON replies;
 * the handlers are in api_tokens.c, api_delivery.c and api_status.c (see
 * http_api_internal.h for where a new endpoint goes).
 *
 * Every request is routed by path, then checked for its method, then for
 * a credential when the endpoint needs one.
 */
#include "server/api/http_api_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <sodium.h>

#include "server/base/log.h"
#include "server/base/netaddr.h"
#include "server/base/util.h"

/* Both kinds of reply: the headers, then text (len octets) and a newline. */
static void
reply_text(struct evhttp_request *req, int code, const char *reason, const char *text, size_t len)
{
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	evhttp_add_header(oh, "Content-Type", "application/json");
	evhttp_add_header(oh, "Cache-Control", "no-store");
	if (text) {
		evbuffer_add(out, text, len);
		evbuffer_add(out, "\n", 1);
	}
	evhttp_send_reply(req, code, reason, NULL);
}

void
api_reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);

	reply_text(req, code, reason, text, text ? strlen(text) : 0);
	free(text);
	json_decref(body);
}

/* --- answers written in place ------------------------------------------ */

static void
jw_reserve(struct api_json *j, size_t n)
{
	size_t cap;

	if (j->len + n <= j->cap)
		return;
	cap = j->cap * 2 > j->len + n ? j->cap * 2 : j->len + n;
	if (j->p == j->small) {
		j->p = xmalloc(cap);
		memcpy(j->p, j->small, j->len);
	} else {
		j->p = xrealloc(j->p, cap);
	}
	j->cap = cap;
}

static void
jw_raw(struct api_json *j, const char *s, size_t n)
{
	jw_reserve(j, n);
	memcpy(j->p + j->len, s, n);
	j->len += n;
}

/* The length of the UTF-8 sequence at s (at most n octets), 0 if it is
 * not one (RFC 3629 4: no overlong forms, no surrogates, at most U+10FFFF). */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* s as a JSON string (RFC 8259 7): quotes, backslashes and control
 * characters escaped, an octet that is not UTF-8 written as U+FFFD. */
static void
jw_string(struct api_json *j, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s);

	/* at most 6 octets out per octet in ("\u00XX", or U+FFFD's escape) */
	jw_reserve(j, 6 * n + 2);
	j->p[j->len++] = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = u[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			j->p[j->len++] = (char)c;
			i++;
		} else if (c == '"' || c == '\\') {
			j->p[j->len++] = '\\';
			j->p[j->len++] = (char)c;
			i++;
		} else if (c < 0x20) {
			memcpy(j->p + j->len, "\\u00", 4);
			j->p[j->len + 4] = hex[c >> 4];
			j->p[j->len + 5] = hex[c & 15];
			j->len += 6;
			i++;
		} else {
			size_t l = utf8_len(u + i, n - i);
			if (l == 0) {
				memcpy(j->p + j->len, "\\ufffd", 6);
				j->len += 6;
				i++;
			} else {
				memcpy(j->p + j->len, u + i, l);
				j->len += l;
				i += l;
			}
		}
	}
	j->p[j->len++] = '"';
}

void
api_json_begin(struct api_json *j)
{
	j->p = j->small;
	j->cap = sizeof(j->small);
	j->len = 0;
	j->first = true;
	jw_raw(j, "{", 1);
}

static void
jw_key(struct api_json *j, const char *key)
{
	if (!j->first)
		jw_raw(j, ",", 1);
	j->first = false;
	jw_string(j, key);
	jw_raw(j, ":", 1);
}

void
api_json_str(struct api_json *j, const char *key, const char *value)
{
	jw_key(j, key);
	jw_string(j, value);
}

void
api_json_int(struct api_json *j, const char *key, long long value)
{
	char num[24];

	jw_key(j, key);
	jw_raw(j, num, (size_t)snprintf(num, sizeof(num), "%lld", value));
}

void
api_json_open(struct api_json *j, const char *key)
{
	jw_key(j, key);
	jw_raw(j, "{", 1);
	j->first = true;
}

void
api_json_close(struct api_json *j)
{
	jw_raw(j, "}", 1);
	j->first = false;
}

void
api_json_reply(struct evhttp_request *req, int code, const char *reason, struct api_json *j)
{
	api_json_close(j);
	reply_text(req, code, reason, j->p, j->len);
	if (j->p != j->small)
		free(j->p);
	j->p = NULL;
}

void
api_json_end(struct api_json *j, struct evbuffer *out)
{
	api_json_close(j);
	evbuffer_add(out, j->p, j->len);
	if (j->p != j->small)
		free(j->p);
	j->p = NULL;
}

void
api_reply_error(struct evhttp_request *req, int code, const char *reason, const char *result, const char *text)
{
	struct api_json j;

	api_json_begin(&j);
	if (result)
		api_json_str(&j, "result", result);
	api_json_str(&j, "error", text);
	api_json_reply(req, code, reason, &j);
}

const char *
api_peer_of(struct evhttp_request *req, char *buf, size_t len)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;

	snprintf(buf, len, "unknown");
	if (c) {
		evhttp_connection_get_peer(c, &addr, &port);
		if (addr)
			snprintf(buf, len, "%s", addr);
	}
	return buf;
}

bool
api_check_credential(struct api_worker *w, struct evhttp_request *req, bool required, char *service, size_t len)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	unsigned char digest[crypto_hash_sha256_BYTES];
	char hex[65];
	int found;

	service[0] = '\0';
	if (h == NULL && !required)
		return true;
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) == 0 || strlen(h + 7) > 256) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer realm=\"submitd\"");
		api_reply_error(req, 401, "Unauthorized", "unauthorized", "a service credential is required (Authorization: Bearer)");
		return false;
	}
	crypto_hash_sha256(digest, (const unsigned char *)h + 7, strlen(h + 7));
	hex_encode(digest, sizeof(digest), hex);
	found = store_service_find(w->db, hex, service, len);
	if (found != 1) {
		service[0] = '\0';
		if (found == -1)
			log_err("event=http_db_failed error=\"%s\"", sqlite3_errmsg(w->db));
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		    "Bearer realm=\"submitd\", error=\"invalid_token\"");
		api_reply_error(req, 401, "Unauthorized", "unauthorized", "unknown service credential");
		return false;
	}
	return true;
}

/* --- routing --------------------------------------------------------- */

/* One line per endpoint; the handlers are declared in http_api_internal.h. */
enum { M_GET = 1, M_HEAD = 2, M_POST = 4 };

static const struct route {
	const char *path;
	unsigned methods;
	const char *allow;
	void (*handler)(struct api_worker *, struct evhttp_request *);
} routes[] = {
	{ "/v1/verify", M_GET | M_POST, "GET, POST", api_handle_verify },
	{ "/v1/message", M_GET | M_HEAD, "GET, HEAD", api_handle_fetch },
	{ "/v1/status", M_GET | M_POST, "GET, POST", api_handle_status },
	{ "/v1/keys", M_GET, "GET", api_handle_keys },
	{ "/healthz", M_GET, "GET", api_handle_health },
	{ "/metrics", M_GET, "GET", api_handle_metrics },
};

/*
 * The size limits and everything else libevent's parser would refuse
 * itself (in HTML) are checked before it parses, by api_guard.c, and
 * answered there in JSON. evhttp's own limits stay as a backstop it never
 * reaches, API_LIMIT_SLACK times the configured ones.
 */
#define API_LIMIT_SLACK 4

static void
dispatch(struct evhttp_request *req, void *arg)
{
	struct api_worker *w = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	unsigned m = cmd == EVHTTP_REQ_GET ? M_GET : cmd == EVHTTP_REQ_HEAD ? M_HEAD : cmd == EVHTTP_REQ_POST ? M_POST : 0;

	if (path == NULL || *path == '\0')
		path = "/";
	if (api_guard_answer(w, req, path))
		return;
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		if (strcmp(path, routes[i].path) != 0)
			continue;
		if ((routes[i].methods & m) == 0) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", routes[i].allow);
			api_reply_error(req, 405, "Method Not Allowed", NULL, "method not allowed");
			return;
		}
		routes[i].handler(w, req);
		return;
	}
	api_reply_error(req, 404, "Not Found", NULL, "not found");
}

int
http_api_check_config(const struct config *cfg, char *err, size_t errlen)
{
	/* The addresses were parsed and checked with the configuration. */
	for (size_t i = 0; i < cfg->http_listen_addrs.n; i++) {
		const struct netaddr_listen *a = &cfg->http_listen_addrs.v[i];
		if (!cfg->http_auth_fetch && !netaddr_is_loopback((const struct sockaddr *)&a->ss)) {
			snprintf(err, errlen, "http.auth_fetch=false is only allowed on loopback listeners, "
			    "and http.listen has %s", a->text);
			return -1;
		}
	}
	return 0;
}

static int
worker_init(struct api_worker *w, struct http_api *api, unsigned index, char *err, size_t errlen)
{
	struct server *srv = api->srv;
	struct config *cfg = srv->cfg;

	w->api = api;
	w->index = index;
	keyring_init(&w->keys.ring);
	w->db = store_open(srv->db_path, err, errlen);
	if (w->db == NULL)
		return -1;
	if (store_keys_init(w->db, &w->keys, err, errlen) == -1)
		return -1;
	w->base = event_base_new();
	if (w->base == NULL) {
		snprintf(err, errlen, "cannot create the API's event loop");
		return -1;
	}
	if (api_cluster_init(w, err, errlen) == -1)
		return -1;
	w->http = evhttp_new(w->base);
	evhttp_set_gencb(w->http, dispatch, w);
	/* the backstop: see API_LIMIT_SLACK */
	evhttp_set_max_headers_size(w->http, (ev_ssize_t)cfg->http_max_header_size * API_LIMIT_SLACK);
	evhttp_set_max_body_size(w->http, (ev_ssize_t)cfg->http_max_body_size * API_LIMIT_SLACK);
	evhttp_set_timeout(w->http, (int)cfg->http_timeout);
	/* Every method the guard lets through gets its 405 (JSON) from dispatch. */
	evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
	    EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_bevcb(w->http, api_guard_bevcb, w);
	return 0;
}

static void
worker_free(struct api_worker *w)
{
	api_guard_stop(w);
	if (w->http)
		evhttp_free(w->http);
	api_cluster_free(w);
	api_guard_free(w);
	if (w->base)
		event_base_free(w->base);
	sqlite3_finalize(w->token_stmt);
	store_keys_free(&w->keys);
	store_close(&w->db);
}

static void *
worker_main(void *arg)
{
	struct api_worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "sd-http%u", w->index);
	pthread_setname_np(pthread_self(), name);
	event_base_dispatch(w->base);
	return NULL;
}

/*
 * Each thread listens on a socket of its own, all bound to the same
 * address with SO_REUSEPORT, so the kernel spreads new connections over
 * the threads. One shared socket would not: libevent accepts until the
 * queue is empty, and the first thread to wake takes a whole burst of
 * connections (keep-alive clients then stay on one core).
 */
static int
listen_on(struct http_api *api, const struct netaddr_listen *a, char *err, size_t errlen)
{
	const char *spec = a->text;

	for (size_t i = 0; i < api->nworkers; i++) {
		evutil_socket_t fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1 || evutil_make_listen_socket_reuseable(fd) == -1 ||
		    evutil_make_listen_socket_reuseable_port(fd) == -1 ||
		    bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1 || listen(fd, 128) == -1) {
			snprintf(err, errlen, "http.listen %s: cannot listen: %s", spec, strerror(errno));
			if (fd != -1)
				close(fd);
			return -1;
		}
		/* From here evhttp owns fd and closes it when freed. */
		if (evhttp_accept_socket_with_handle(api->workers[i].http, fd) == NULL) {
			snprintf(err, errlen, "http.listen %s: cannot listen", spec);
			close(fd);
			return -1;
		}
	}
	return 0;
}

int
http_api_start(struct server *srv, char *err, size_t errlen)
{
	struct config *cfg = srv->cfg;
	struct http_api *api;

	if (cfg->http_listen_addrs.n == 0)
		return 0;
	if (http_api_check_config(cfg, err, errlen) == -1)
		return -1;
	api = xcalloc(1, sizeof(*api));
	api->srv = srv;
	api->nworkers = (size_t)cfg->http_threads;
	api->workers = xcalloc(api->nworkers, sizeof(*api->workers));
	srv->http = api;
	if (api_cluster_load_secret(api, err, errlen) == -1) {
		http_api_stop(srv);
		return -1;
	}
	for (size_t i = 0; i < api->nworkers; i++)
		if (worker_init(&api->workers[i], api, (unsigned)i, err, errlen) == -1) {
			http_api_stop(srv);
			return -1;
		}

	for (size_t i = 0; i < cfg->http_listen_addrs.n; i++) {
		const struct netaddr_listen *a = &cfg->http_listen_addrs.v[i];
		if (listen_on(api, a, err, errlen) == -1) {
			http_api_stop(srv);
			return -1;
		}
		log_info("event=listening address=%s service=http tls=%s threads=%zu", a->text,
		    cfg->http_tls ? "yes" : "no", api->nworkers);
	}
	for (size_t i = 0; i < api->nworkers; i++) {
		struct api_worker *w = &api->workers[i];
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			snprintf(err, errlen, "cannot start API thread %zu", i);
			http_api_stop(srv);
			return -1;
		}
		w->started = true;
	}
	return 0;
}

void
http_api_stop(struct server *srv)
{
	struct http_api *api = srv->http;

	if (api == NULL)
		return;
	/* loopexit, unlike loopbreak, also stops a loop that has not begun. */
	for (size_t i = 0; i < api->nworkers; i++)
		if (api->workers[i].started)
			event_base_loopexit(api->workers[i].base, NULL);
	for (size_t i = 0; i < api->nworkers; i++)
		if (api->workers[i].started)
			pthread_join(api->workers[i].thread, NULL);
	for (size_t i = 0; i < api->nworkers; i++)
		worker_free(&api->workers[i]);
	free(api->workers);
	free(api);
	srv->http = NULL;
}
