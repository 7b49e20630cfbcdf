/*
 * imap_submit_token_plugin.c: the Dovecot 2.3 IMAP plugin imap_submit_token.
 * It adds the command `tag XSUBMITTOKEN <mailbox> <token>` (advertised as
 * the capability XSUBMITTOKEN after login): the client hands over the
 * sender token submitd gave it in its 250 reply, and the server files
 * submitd's stored copy of that message into the mailbox, so the client
 * never uploads its Sent copy (docs/imap.md).
 *
 * One command is: open the mailbox (NO [TRYCREATE] when missing), POST
 * /v1/verify bound to the user's address, GET /v1/message with the service
 * credential, check size and SHA-256 against the verification, then save
 * with \Seen, the acceptance time as internal date and a GUID derived from
 * submitd's message id (idempotency, below). Both HTTP calls go through
 * Dovecot's lib-http on the imap process's ioloop: the command waits in
 * CLIENT_COMMAND_STATE_WAIT_EXTERNAL, as cmd-urlfetch and the search of
 * imap-search.c do, and other commands of the session go on meanwhile. A
 * deadline (submit_token_api_timeout) makes a silent API an answer.
 *
 * Redirects (a node of a submitd cluster answers 307 for another node's
 * token) are followed by the plugin, not by lib-http: lib-http would follow
 * one from https to http, and the credential and the token would cross the
 * network in clear. At most submit_token_api_max_redirects hops, each to
 * the scheme of submit_token_api_url.
 *
 * The answers are read into bounded buffers (SUBMIT_TOKEN_ANSWER_MAX for
 * JSON, the verified size for the message) and parsed by the pure
 * submit_token_answer.c; nothing in an answer can make the process grow
 * without bound or crash it.
 */
#include "imap-common.h"
#include "str.h"
#include "buffer.h"
#include "istream.h"
#include "ostream.h"
#include "ioloop.h"
#include "sha2.h"
#include "hex-binary.h"
#include "json-parser.h"
#include "http-url.h"
#include "http-client.h"
#include "iostream-ssl.h"
#include "mail-user.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "imap-commands.h"
#include "imap-commands-util.h"

#include <fcntl.h>
#include <unistd.h>

#include "submit_token_answer.h"
#include "imap_submit_token_plugin.h"
#include "imap_submit_token_save.h"

#define XST_CAPABILITY "XSUBMITTOKEN"
#define XST_DEFAULT_TIMEOUT_SECS 10
#define XST_MAX_TIMEOUT_SECS 3600
#define XST_DEFAULT_MAX_SIZE (64ULL * 1024 * 1024)
#define XST_DEFAULT_MAX_REDIRECTS 3
#define XST_MAX_MAX_REDIRECTS 10
#define XST_SECRET_MAX 256

const char *imap_submit_token_plugin_version = DOVECOT_ABI_VERSION;
const char imap_submit_token_plugin_binary_dependency[] = "imap";

static struct module *xst_module;
static imap_client_created_func_t *next_hook_client_created;

enum xst_step { XST_VERIFY, XST_FETCH };

/* One running command; lives in the command's pool. */
struct xst_cmd {
	struct client_command_context *cmd;
	struct mailbox *box;
	const char *mailbox_name;
	const char *token;
	const char *address;
	const char *secret;
	const char *api_url;
	bool api_https;
	uint64_t max_size;
	const char *verify_json;
	struct http_url *target;        /* of the request under way */
	unsigned int redirects, max_redirects;

	struct http_client *http;
	struct http_client_request *req;
	struct istream *payload;
	struct io *io;
	buffer_t *body;
	size_t body_cap;
	unsigned int status;
	enum xst_step step;

	struct timeout *to_deadline;
	struct timeout *to_finish;
	struct submit_token_answer verify;

	enum submit_token_class outcome;
	const char *outcome_text;
};

static void xst_conclude(struct xst_cmd *x, enum submit_token_class c, const char *text);

/* Frees what the command holds besides its pool: no callback of lib-http,
 * the io or a timeout can reach `x` afterwards. */
static void
xst_release(struct xst_cmd *x)
{
	timeout_remove(&x->to_deadline);
	timeout_remove(&x->to_finish);
	io_remove(&x->io);
	i_stream_unref(&x->payload);
	http_client_request_abort(&x->req);
	if (x->http != NULL)
		http_client_deinit(&x->http);
	buffer_free(&x->body);
	if (x->box != NULL)
		mailbox_free(&x->box);
}

/* ---- settings ---- */

static const char *
xst_setting(struct mail_user *user, const char *name)
{
	const char *v = mail_user_plugin_getenv(user, name);

	return v == NULL || *v == '\0' ? NULL : v;
}

/* The address the token must be bound to: the login when it is an address,
 * else login@submit_token_address_domain; NULL when neither. */
static const char *
xst_user_address(struct mail_user *user)
{
	const char *domain;

	if (strchr(user->username, '@') != NULL)
		return user->username;
	domain = xst_setting(user, "submit_token_address_domain");
	if (domain == NULL)
		return NULL;
	return t_strconcat(user->username, "@", domain, NULL);
}

/* The service secret (the output of `submitctl service add`), read at each
 * command so that a new secret applies without restarting anything. */
static const char *
xst_read_secret(const char *path, const char **error_r)
{
	char buf[XST_SECRET_MAX + 2];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = t_strdup_printf("open(%s) failed: %m", path);
		return NULL;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	i_close_fd(&fd);
	if (n < 0) {
		*error_r = t_strdup_printf("read(%s) failed: %m", path);
		return NULL;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	if (n == 0 || (size_t)n > XST_SECRET_MAX || strpbrk(buf, "\r\n\t ") != NULL) {
		*error_r = t_strdup_printf("%s: not one secret of at most %d characters",
					   path, XST_SECRET_MAX);
		return NULL;
	}
	return t_strdup(buf);
}

static unsigned int
xst_timeout_secs(struct mail_user *user)
{
	const char *v = xst_setting(user, "submit_token_api_timeout");
	unsigned int secs;

	if (v == NULL || str_to_uint(v, &secs) < 0 || secs == 0 || secs > XST_MAX_TIMEOUT_SECS)
		return XST_DEFAULT_TIMEOUT_SECS;
	return secs;
}

static unsigned int
xst_max_redirects(struct mail_user *user)
{
	const char *v = xst_setting(user, "submit_token_api_max_redirects");
	unsigned int n;

	if (v == NULL || str_to_uint(v, &n) < 0 || n > XST_MAX_MAX_REDIRECTS)
		return XST_DEFAULT_MAX_REDIRECTS;
	return n;
}

static uint64_t
xst_max_size(struct mail_user *user)
{
	const char *v = xst_setting(user, "submit_token_max_size");
	uoff_t n;

	if (v == NULL || str_to_uoff(v, &n) < 0 || n == 0)
		return XST_DEFAULT_MAX_SIZE;
	return n;
}

/* ---- HTTP ---- */

static const char *
xst_step_name(const struct xst_cmd *x)
{
	return x->step == XST_VERIFY ? "verify" : "fetch";
}

static void xst_payload_input(struct xst_cmd *x);
static void xst_answer_read(struct xst_cmd *x);
static void xst_redirect(struct xst_cmd *x, unsigned int status, const char *location);

/* A response arrived (or lib-http gave up: status >= 9000). Its body, if
 * any, is read into x->body, at most x->body_cap octets. */
static void
xst_response(const struct http_response *resp, struct xst_cmd *x)
{
	x->req = NULL;          /* lib-http frees it after this callback */
	if (resp->status >= HTTP_RESPONSE_STATUS_INTERNAL) {
		e_warning(x->cmd->client->event, "submit_token: %s: %s",
			  xst_step_name(x),
			  http_response_get_message(resp));
		xst_conclude(x, SUBMIT_TOKEN_UNAVAILABLE,
			     "The submission server did not answer");
		return;
	}
	if ((resp->status == 301 || resp->status == 302 || resp->status == 307 ||
	     resp->status == 308) && resp->location != NULL) {
		xst_redirect(x, resp->status, resp->location);
		return;
	}
	x->status = resp->status;
	/* a refusal is a short JSON object; only the message may be big */
	x->body_cap = x->step == XST_FETCH && resp->status == 200 ?
		(size_t)x->verify.size : SUBMIT_TOKEN_ANSWER_MAX;
	x->body = buffer_create_dynamic(default_pool, I_MIN(x->body_cap + 1, 65536));
	if (resp->payload == NULL) {
		xst_answer_read(x);
		return;
	}
	x->payload = resp->payload;
	i_stream_ref(x->payload);
	x->io = io_add_istream(x->payload, xst_payload_input, x);
	xst_payload_input(x);
}

static void
xst_payload_input(struct xst_cmd *x)
{
	const unsigned char *data;
	size_t size;
	int ret;

	while ((ret = i_stream_read_more(x->payload, &data, &size)) > 0) {
		if (x->body->used + size > x->body_cap) {
			e_warning(x->cmd->client->event, "submit_token: %s answered more than %zu octets",
				  xst_step_name(x), x->body_cap);
			io_remove(&x->io);
			i_stream_unref(&x->payload);
			xst_conclude(x, SUBMIT_TOKEN_UNAVAILABLE, x->step == XST_FETCH && x->status == 200 ?
				     "The stored copy is bigger than verified" :
				     "The submission server's answer is too big");
			return;
		}
		buffer_append(x->body, data, size);
		i_stream_skip(x->payload, size);
	}
	if (ret == 0)
		return;
	io_remove(&x->io);
	if (x->payload->stream_errno != 0) {
		e_warning(x->cmd->client->event, "submit_token: reading the answer failed: %s",
			  i_stream_get_error(x->payload));
		i_stream_unref(&x->payload);
		xst_conclude(x, SUBMIT_TOKEN_UNAVAILABLE, "The submission server's answer was cut");
		return;
	}
	i_stream_unref(&x->payload);
	xst_answer_read(x);
}

/* Sends the request of the current step to x->target. The same request,
 * headers and body, goes to each redirect's target. */
static void
xst_submit(struct xst_cmd *x)
{
	const char *method = x->step == XST_VERIFY ? "POST" : "GET";

	x->req = http_client_request_url(x->http, method, x->target, xst_response, x);
	http_client_request_add_header(x->req, "Authorization", t_strconcat("Bearer ", x->secret, NULL));
	if (x->step == XST_VERIFY) {
		http_client_request_add_header(x->req, "Content-Type", "application/json");
		http_client_request_set_payload_data(x->req, (const unsigned char *)x->verify_json,
						     strlen(x->verify_json));
	} else {
		/* docs/api.md section 4: tokens never travel in the URL */
		http_client_request_add_header(x->req, "Submit-Token", x->token);
	}
	http_client_request_submit(x->req);
}

/* x->target := submit_token_api_url + path; 0, or -1 and *error_r. */
static int
xst_set_target(struct xst_cmd *x, const char *path, const char **error_r)
{
	const char *url = t_strconcat(x->api_url, path, NULL);
	const char *error;

	if (http_url_parse(url, NULL, 0, x->cmd->pool, &x->target, &error) < 0) {
		*error_r = t_strdup_printf("submit_token_api_url %s: %s", x->api_url, error);
		return -1;
	}
	return 0;
}

static void
xst_start_fetch(struct xst_cmd *x)
{
	const char *error;

	x->step = XST_FETCH;
	x->redirects = 0;
	/* the base URL was checked in cmd_xsubmittoken() */
	if (xst_set_target(x, "/v1/message", &error) < 0)
		i_unreached();
	xst_submit(x);
}

static void
xst_start_verify(struct xst_cmd *x)
{
	string_t *json = t_str_new(256 + strlen(x->token));
	const char *error;

	str_append(json, "{\"token\":\"");
	json_append_escaped(json, x->token);
	str_append(json, "\",\"address\":\"");
	json_append_escaped(json, x->address);
	str_append(json, "\"}");
	x->verify_json = p_strdup(x->cmd->pool, str_c(json));
	x->step = XST_VERIFY;
	x->redirects = 0;
	if (xst_set_target(x, "/v1/verify", &error) < 0)
		i_unreached();
	xst_submit(x);
}

/* A 301, 302, 307 or 308 with a Location: the same request again there, if
 * the hop is allowed. A relative Location is resolved against the request's
 * URL; userinfo in it is refused by the parser. */
static void
xst_redirect(struct xst_cmd *x, unsigned int status, const char *location)
{
	struct http_url *url;
	const char *error;

	if (x->redirects >= x->max_redirects) {
		e_warning(x->cmd->client->event, "submit_token: %s: redirected (%u) more than "
			  "submit_token_api_max_redirects=%u times", xst_step_name(x), status,
			  x->max_redirects);
		xst_conclude(x, SUBMIT_TOKEN_UNAVAILABLE, "The submission server redirected too often");
		return;
	}
	if (http_url_parse(location, x->target, 0, x->cmd->pool, &url, &error) < 0) {
		e_warning(x->cmd->client->event, "submit_token: %s: redirected (%u) to an invalid "
			  "Location: %s", xst_step_name(x), status, error);
		xst_conclude(x, SUBMIT_TOKEN_UNAVAILABLE, "The submission server redirected to an invalid URL");
		return;
	}
	if (url->have_ssl != x->api_https) {
		e_warning(x->cmd->client->event, "submit_token: %s: redirected (%u) to %s, not %s as "
			  "submit_token_api_url: refused", xst_step_name(x), status, http_url_create(url),
			  x->api_https ? "https" : "http");
		xst_conclude(x, SUBMIT_TOKEN_UNAVAILABLE, "The submission server redirected to another scheme");
		return;
	}
	x->redirects++;
	e_debug(x->cmd->client->event, "submit_token: %s: redirected (%u) to %s", xst_step_name(x),
		status, http_url_create(url));
	x->target = url;
	xst_submit(x);
}

/* A whole answer is in x->body: decide, or go on with the fetch. */
static void
xst_answer_read(struct xst_cmd *x)
{
	struct submit_token_answer refusal;
	unsigned char digest[SHA256_RESULTLEN];
	enum submit_token_class c;
	buffer_t *body = x->body;

	x->body = NULL;
	if (x->status != 200) {
		c = submit_token_answer_parse(body->data, body->used, &refusal) == 0 ?
			submit_token_refusal_class(x->status, refusal.result) :
			submit_token_refusal_class(x->status, NULL);
		if (c == SUBMIT_TOKEN_UNAVAILABLE)
			e_warning(x->cmd->client->event, "submit_token: %s answered %u",
				  xst_step_name(x), x->status);
		buffer_free(&body);
		xst_conclude(x, c, NULL);
		return;
	}
	if (x->step == XST_VERIFY) {
		if (submit_token_answer_parse(body->data, body->used, &x->verify) < 0) {
			e_warning(x->cmd->client->event, "submit_token: verify answered malformed JSON");
			c = SUBMIT_TOKEN_UNAVAILABLE;
		} else {
			c = submit_token_answer_check(&x->verify);
		}
		buffer_free(&body);
		if (c == SUBMIT_TOKEN_OK && x->verify.size > x->max_size)
			c = SUBMIT_TOKEN_TOOBIG;
		if (c != SUBMIT_TOKEN_OK)
			xst_conclude(x, c, NULL);
		else
			xst_start_fetch(x);
		return;
	}
	/* the copy: exactly what was verified, or nothing is saved */
	sha256_get_digest(body->data, body->used, digest);
	if (body->used != x->verify.size ||
	    strcmp(binary_to_hex(digest, sizeof(digest)), x->verify.sha256) != 0) {
		e_warning(x->cmd->client->event, "submit_token: the copy of %s does not match its "
			  "verification (size %zu, verified %llu)", x->verify.message_id, body->used,
			  (unsigned long long)x->verify.size);
		buffer_free(&body);
		xst_conclude(x, SUBMIT_TOKEN_UNAVAILABLE, "The stored copy does not match its verification");
		return;
	}
	x->body = body;
	xst_conclude(x, SUBMIT_TOKEN_OK, NULL);
}

static void
xst_deadline(struct xst_cmd *x)
{
	timeout_remove(&x->to_deadline);
	e_warning(x->cmd->client->event, "submit_token: %s: no answer in time",
		  xst_step_name(x));
	xst_conclude(x, SUBMIT_TOKEN_UNAVAILABLE, "The submission server did not answer in time");
}

/* ---- the command ---- */

/* The human text of a refusal; programs look at the response code. */
static const char *
xst_class_text(enum submit_token_class c)
{
	switch (c) {
	case SUBMIT_TOKEN_MALFORMED: return "Not a submission token";
	case SUBMIT_TOKEN_BADSIGNATURE: return "The token's signature does not verify";
	case SUBMIT_TOKEN_UNKNOWNKEY: return "The token is signed by a key the submission server does not know";
	case SUBMIT_TOKEN_EXPIRED: return "The token has expired";
	case SUBMIT_TOKEN_REVOKED: return "The token was revoked";
	case SUBMIT_TOKEN_WRONGADDRESS: return "The token is for another address";
	case SUBMIT_TOKEN_WRONGROLE: return "Not a sender token";
	case SUBMIT_TOKEN_PURGED: return "The message is no longer stored";
	case SUBMIT_TOKEN_TOOBIG: return "The message is too big to file";
	case SUBMIT_TOKEN_OK:
	case SUBMIT_TOKEN_UNAVAILABLE:
		break;
	}
	return "The submission server did not answer";
}

/* cmd->func while waiting: runs only when the command is cancelled (the
 * client went away). */
static bool
xst_cmd_wait(struct client_command_context *cmd)
{
	struct xst_cmd *x = cmd->context;

	if (!cmd->cancel)
		return FALSE;
	xst_release(x);
	return TRUE;
}

/* cmd->func once the outcome is known, run from a zero timeout, outside any
 * lib-http callback, so that the HTTP client can be freed here. */
static bool
xst_cmd_finish(struct client_command_context *cmd)
{
	struct xst_cmd *x = cmd->context;
	const char *code;

	if (!cmd->cancel) {
		if (x->outcome == SUBMIT_TOKEN_OK) {
			xst_save(x->cmd, x->box, x->mailbox_name, &x->verify, x->body);
		} else {
			code = submit_token_class_code(x->outcome);
			client_send_tagline(cmd, t_strdup_printf("NO [%s] %s.", code,
				x->outcome_text != NULL ? x->outcome_text : xst_class_text(x->outcome)));
		}
	}
	xst_release(x);
	return TRUE;
}

/* Resumes the command, as imap-search.c resumes a search. */
static void
xst_resume(struct xst_cmd *x)
{
	struct client_command_context *cmd = x->cmd;
	struct client *client = cmd->client;
	bool finished;

	timeout_remove(&x->to_finish);
	o_stream_cork(client->output);
	finished = command_exec(cmd);
	o_stream_uncork(client->output);
	if (!finished)
		(void)client_handle_unfinished_cmd(cmd);
	else
		client_command_free(&cmd);
	(void)cmd_sync_delayed(client);
	client_continue_pending_input(client);
}

/* Records the outcome and stops every HTTP activity; the answer is sent
 * from xst_resume(). */
static void
xst_conclude(struct xst_cmd *x, enum submit_token_class c, const char *text)
{
	if (x->to_finish != NULL)
		return;
	x->outcome = c;
	x->outcome_text = text == NULL ? NULL : p_strdup(x->cmd->pool, text);
	if (c != SUBMIT_TOKEN_OK)
		buffer_free(&x->body);
	timeout_remove(&x->to_deadline);
	io_remove(&x->io);
	i_stream_unref(&x->payload);
	http_client_request_abort(&x->req);
	x->cmd->func = xst_cmd_finish;
	x->to_finish = timeout_add_short(0, xst_resume, x);
}

static struct http_client *
xst_http_client(struct client *client, unsigned int timeout_secs)
{
	struct http_client_settings set;
	struct ssl_iostream_settings ssl_set;

	i_zero(&set);
	i_zero(&ssl_set);
	mail_user_init_ssl_client_settings(client->user, &ssl_set);
	set.ssl = &ssl_set;
	set.dns_client_socket_path = t_strconcat(client->user->set->base_dir, "/dns-client", NULL);
	set.max_idle_time_msecs = 1000;
	set.no_auto_redirect = TRUE;    /* xst_redirect() */
	set.max_redirects = 0;
	set.max_attempts = 1;
	set.no_auto_retry = TRUE;
	set.request_absolute_timeout_msecs = timeout_secs * 1000;
	set.connect_timeout_msecs = timeout_secs * 1000;
	set.user_agent = "dovecot-imap_submit_token";
	set.event_parent = client->event;
	set.debug = client->user->mail_debug;
	return http_client_init(&set);
}

static bool
cmd_xsubmittoken(struct client_command_context *cmd)
{
	struct client *client = cmd->client;
	struct mail_user *user = client->user;
	const struct imap_arg *args;
	const char *mailbox, *token, *secret_file, *error = NULL;
	struct mail_namespace *ns;
	enum mail_error merror;
	struct xst_cmd *x;
	unsigned int timeout_secs;

	if (!client_read_args(cmd, 2, 0, &args))
		return FALSE;
	if (!imap_arg_get_astring(&args[0], &mailbox) || !imap_arg_get_astring(&args[1], &token) ||
	    !IMAP_ARG_IS_EOL(&args[2])) {
		client_send_command_error(cmd, "Invalid arguments.");
		return TRUE;
	}
	if (!submit_token_syntax_ok(token)) {
		client_send_tagline(cmd, "NO [XSUBMITTOKEN-MALFORMED] Not a submission token.");
		return TRUE;
	}

	x = p_new(cmd->pool, struct xst_cmd, 1);
	x->cmd = cmd;
	x->token = p_strdup(cmd->pool, token);
	x->api_url = xst_setting(user, "submit_token_api_url");
	secret_file = xst_setting(user, "submit_token_api_secret_file");
	x->address = xst_user_address(user);
	if (x->api_url == NULL || secret_file == NULL || x->address == NULL) {
		e_error(client->event, "submit_token: submit_token_api_url, submit_token_api_secret_file "
			"and an address (a login with '@' or submit_token_address_domain) are required");
		client_send_tagline(cmd, "NO [XSUBMITTOKEN-UNAVAILABLE] Not configured.");
		return TRUE;
	}
	x->api_url = p_strdup(cmd->pool, t_str_rtrim(x->api_url, "/"));
	x->address = p_strdup(cmd->pool, x->address);
	x->secret = xst_read_secret(secret_file, &error);
	if (x->secret == NULL) {
		e_error(client->event, "submit_token: %s", error);
		client_send_tagline(cmd, "NO [XSUBMITTOKEN-UNAVAILABLE] Not configured.");
		return TRUE;
	}
	x->secret = p_strdup(cmd->pool, x->secret);
	x->max_size = xst_max_size(user);
	x->max_redirects = xst_max_redirects(user);
	if (xst_set_target(x, "/v1/verify", &error) < 0) {
		e_error(client->event, "submit_token: %s", error);
		client_send_tagline(cmd, "NO [XSUBMITTOKEN-UNAVAILABLE] Not configured.");
		return TRUE;
	}
	x->api_https = x->target->have_ssl;

	/* the mailbox first: a missing one costs no request */
	ns = client_find_namespace(cmd, &mailbox);
	if (ns == NULL)
		return TRUE;
	x->mailbox_name = p_strdup(cmd->pool, mailbox);
	x->box = mailbox_alloc(ns->list, mailbox, 0);
	if (mailbox_open(x->box) < 0) {
		error = mailbox_get_last_error(x->box, &merror);
		if (merror == MAIL_ERROR_NOTFOUND)
			client_send_tagline(cmd, t_strdup_printf("NO [TRYCREATE] %s", error));
		else
			client_send_box_error(cmd, x->box);
		mailbox_free(&x->box);
		return TRUE;
	}

	timeout_secs = xst_timeout_secs(user);
	x->http = xst_http_client(client, timeout_secs);
	x->to_deadline = timeout_add(timeout_secs * 1000, xst_deadline, x);
	cmd->context = x;
	cmd->func = xst_cmd_wait;
	cmd->state = CLIENT_COMMAND_STATE_WAIT_EXTERNAL;
	xst_start_verify(x);
	return FALSE;
}

/* ---- registration ---- */

static void
xst_client_created(struct client **client)
{
	struct mail_user *user = (*client)->user;

	/* advertised only where it can work */
	if (mail_user_is_plugin_loaded(user, xst_module) &&
	    xst_setting(user, "submit_token_api_url") != NULL)
		client_add_capability(*client, XST_CAPABILITY);
	if (next_hook_client_created != NULL)
		next_hook_client_created(client);
}

void
imap_submit_token_plugin_init(struct module *module)
{
	command_register("XSUBMITTOKEN", cmd_xsubmittoken, 0);
	xst_module = module;
	next_hook_client_created = imap_client_created_hook_set(xst_client_created);
}

void
imap_submit_token_plugin_deinit(void)
{
	command_unregister("XSUBMITTOKEN");
	imap_client_created_hook_set(next_hook_client_created);
}
