/*
 * tls_client.h: the OpenSSL context for submitd's outgoing TLS
 * connections (the relay towards the next hop, the Sent filing towards
 * the IMAP server): TLS 1.2 and newer, the system's trust store, plus
 * the operator's CA file if one is named. Whether a connection checks the
 * certificate and its name is decided per connection (tls_conn_upgrade's
 * verify), so one context serves both settings.
 */
#ifndef SUBMITD_TLS_CLIENT_H
#define SUBMITD_TLS_CLIENT_H

#include <stddef.h>

#include <openssl/ssl.h>

/* ca_file: "" for none. NULL with err ("KEY FILE: cannot load", KEY being
 * what the caller names, e.g. "relay.tls_ca_file") on failure. */
SSL_CTX *tls_client_ctx_new(const char *ca_file, const char *key, char *err, size_t errlen);

#endif
