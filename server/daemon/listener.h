/*
 * listener.h: the SMTP listeners (plain with STARTTLS, and implicit TLS)
 * and the connection limits applied at accept time.
 */
#ifndef SUBMITD_LISTENER_H
#define SUBMITD_LISTENER_H

#include <stddef.h>

#include "server/runtime/server.h"

/* Bind every address of cfg->listen and cfg->listen_tls. 0 or -1 (err). */
int listeners_open(struct server *srv, char *err, size_t errlen);
void listeners_free(struct server *srv);

#endif
