/*
 * tls_client.c: see tls_client.h.
 */
#include "server/net/tls_client.h"

#include <stdio.h>

#include <openssl/err.h>

SSL_CTX *
tls_client_ctx_new(const char *ca_file, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS client context");
		ERR_clear_error();
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_default_verify_paths(ctx);
	if (ca_file[0] && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		snprintf(err, errlen, "%s %s: cannot load", key, ca_file);
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
