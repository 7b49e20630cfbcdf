/*
 * server.c: the little the process state does by itself. See server.h.
 */
#include "server/runtime/server.h"

void
server_maybe_exit(struct server *srv)
{
	if (srv->draining && srv->idle_ev != NULL)
		event_active(srv->idle_ev, EV_TIMEOUT, 0);
}
