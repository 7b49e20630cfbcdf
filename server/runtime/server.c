/*
 * server.c: the little the process state does by itself: the drain's
 * wake-up, the connection counts shared by the SMTP loops, the TLS
 * context as SIGHUP may swap it. See server.h.
 */
#include "server/runtime/server.h"

#include "server/base/throttle.h"
#include "server/base/util.h"

void
server_maybe_exit(struct server *srv)
{
	if (__atomic_load_n(&srv->draining, __ATOMIC_ACQUIRE) && srv->idle_ev != NULL)
		event_active(srv->idle_ev, EV_TIMEOUT, 0);
}

bool
server_conn_take(struct server *srv)
{
	bool ok;

	pthread_mutex_lock(&srv->conn_lock);
	ok = srv->nconns < (size_t)srv->cfg->max_connections;
	if (ok)
		srv->nconns++;
	pthread_mutex_unlock(&srv->conn_lock);
	return ok;
}

bool
server_conn_take_ip(struct server *srv, const char *ip)
{
	bool ok;
	int64_t now = now_unix();

	pthread_mutex_lock(&srv->conn_lock);
	ok = throttle_get(srv->conn_per_ip, ip, now) < srv->cfg->max_connections_per_ip;
	if (ok)
		throttle_add(srv->conn_per_ip, ip, 1, now);
	pthread_mutex_unlock(&srv->conn_lock);
	return ok;
}

void
server_conn_release(struct server *srv, const char *ip)
{
	pthread_mutex_lock(&srv->conn_lock);
	if (srv->nconns > 0)
		srv->nconns--;
	if (ip != NULL)
		throttle_add(srv->conn_per_ip, ip, -1, now_unix());
	pthread_mutex_unlock(&srv->conn_lock);
}

SSL_CTX *
server_tls_ctx(struct server *srv)
{
	SSL_CTX *ctx;

	pthread_mutex_lock(&srv->ssl_lock);
	ctx = srv->ssl_ctx;
	if (ctx != NULL)
		SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&srv->ssl_lock);
	return ctx;
}
