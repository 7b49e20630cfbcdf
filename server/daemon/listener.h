/*
 * listener.h: the SMTP listeners (plain with STARTTLS, and implicit TLS)
 * and the connection limits applied at accept time.
 */
#ifndef SUBMITD_LISTENER_H
#define SUBMITD_LISTENER_H

#include <stddef.h>

#include "server/runtime/server.h"

/* Bind every address of cfg->listen and cfg->listen_tls on loop's base
 * (SO_REUSEPORT: every loop binds them all). 0 or -1 (err). */
int listeners_open(struct smtp_loop *loop, char *err, size_t errlen);
/* On loop's thread, or once it has stopped: its listeners and PROXY waits. */
void listeners_free(struct smtp_loop *loop);

#endif
