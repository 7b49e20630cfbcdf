/*
 * http_api.h: the verification API (docs/api.md): confirm a token, fetch
 * the saved copy (streamed from SQLite), list the public keys, health and
 * Prometheus metrics. evhttp on http.threads threads, each with an event
 * loop and a database connection of its own; audit rows go through the
 * writer thread.
 */
#ifndef SUBMITD_HTTP_API_H
#define SUBMITD_HTTP_API_H

#include <stddef.h>

#include "server/runtime/server.h"

/* Bind cfg->http_listen (nothing when empty). 0 or -1 with err. */
int http_api_start(struct server *srv, char *err, size_t errlen);
/* Stop the threads, stop listening and free everything (open fetches are
 * cut). Called on the SMTP loop's thread. */
void http_api_stop(struct server *srv);

/* Configuration checks that need no socket (submitd -n): a listener off the
 * loopback must not serve fetches without a credential. 0 or -1 with err. */
int http_api_check_config(const struct config *cfg, char *err, size_t errlen);

#endif
