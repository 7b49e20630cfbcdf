/*
 * tls.h: the OpenSSL server context: TLS 1.2 and newer only, loaded from
 * a certificate chain and key, or from a self-signed pair generated on
 * first start (for the embedded default and tests). Reloading builds a new
 * context; sessions keep the one they started with (SSL_CTX is refcounted).
 */
#ifndef SUBMITD_TLS_H
#define SUBMITD_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* NULL with err set on failure. */
SSL_CTX *tls_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errlen);

/* Create an EC P-256 key and a self-signed certificate for hostname unless
 * both files exist. Key file mode 0600. 0, 1 when generated, -1 on error. */
int tls_ensure_self_signed(const char *cert_path, const char *key_path, const char *hostname,
    char *err, size_t errlen);

#endif
