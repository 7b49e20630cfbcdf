/*
 * submitctl_dkim.c: `submitctl dkim`, the DKIM keys per domain and
 * selector (docs/operations.md, "DKIM"). generate makes a key pair with
 * OpenSSL (RSA 2048 bits or Ed25519) and stores it active; the private
 * key, PEM, lives in the database, which only submitd's user can read
 * (0600), like the token signing keys. export prints the DNS records to
 * publish; retire stops a key signing. The running server picks changes up
 * with its next message.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "db/dkim_store.h"
#include "server/admin/submitctl_internal.h"
#include "server/base/util.h"
#include "server/protocol/dkim_record.h"

#define RSA_BITS 2048

/* A domain or selector: letters, digits, '-' and '.', lowercased in place. */
static bool
dns_name_ok(char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || s[0] == '.' || s[0] == '-' || s[n - 1] == '.')
		return false;
	for (char *p = s; *p; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return false;
		if (*p == '.' && p[1] == '.')
			return false;
	}
	return true;
}

static char *
base64(const unsigned char *der, int n)
{
	char *out = xmalloc((size_t)(4 * ((n + 2) / 3) + 1));
	EVP_EncodeBlock((unsigned char *)out, der, n);
	return out;
}

/* A new key pair: the private key as PEM (PKCS#8) and the p= value (RSA:
 * the SubjectPublicKeyInfo; Ed25519: the raw 32 octets, RFC 8463 4.2).
 * 0 or -1. */
static int
make_key(bool ed25519, char **pem_r, char **pub_r)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(ed25519 ? EVP_PKEY_ED25519 : EVP_PKEY_RSA, NULL);
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *mem;
	long len;
	int rc = -1;

	if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
	    (!ed25519 && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, RSA_BITS) <= 0) || EVP_PKEY_keygen(ctx, &pkey) <= 0)
		goto done;
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1)
		goto done;
	len = BIO_get_mem_data(bio, &mem);
	*pem_r = xstrndup(mem, (size_t)len);
	if (ed25519) {
		unsigned char raw[32];
		size_t rawlen = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &rawlen) != 1 || rawlen != sizeof(raw))
			goto done;
		*pub_r = base64(raw, (int)rawlen);
	} else {
		unsigned char *der = NULL;
		int n = i2d_PUBKEY(pkey, &der);
		if (n <= 0)
			goto done;
		*pub_r = base64(der, n);
		OPENSSL_free(der);
	}
	rc = 0;
done:
	if (rc == -1 && *pem_r)
		xfreep(pem_r);
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

static int
generate(sqlite3 *db, int argc, char **argv)
{
	struct dkim_key k;
	char err[512] = "", domain[DKIM_DOMAIN_MAX + 2], selector[DKIM_SELECTOR_MAX + 2] = "";
	bool ed25519 = false;
	int rc;

	memset(&k, 0, sizeof(k));
	if (argc < 1 || strlen(argv[0]) > DKIM_DOMAIN_MAX)
		return submitctl_fail("%s", "usage: dkim generate DOMAIN [--selector S] [--algorithm ed25519|rsa]");
	snprintf(domain, sizeof(domain), "%s", argv[0]);
	for (int i = 1; i < argc; i += 2) {
		if (i + 1 >= argc)
			return submitctl_fail("%s needs a value", argv[i]);
		if (strcmp(argv[i], "--selector") == 0) {
			snprintf(selector, sizeof(selector), "%s", argv[i + 1]);
		} else if (strcmp(argv[i], "--algorithm") == 0) {
			if (strcmp(argv[i + 1], "ed25519") == 0)
				ed25519 = true;
			else if (strcmp(argv[i + 1], "rsa") != 0)
				return submitctl_fail("unknown algorithm %s (ed25519 or rsa)", argv[i + 1]);
		} else {
			return submitctl_fail("unknown option %s", argv[i]);
		}
	}
	if (selector[0] == '\0') {
		/* names the algorithm and the day: rsa-20261202 */
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		snprintf(selector, sizeof(selector), "%s-%04d%02d%02d", ed25519 ? "ed25519" : "rsa",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	}
	if (!dns_name_ok(domain, DKIM_DOMAIN_MAX))
		return submitctl_fail("invalid domain %s", argv[0]);
	if (!dns_name_ok(selector, DKIM_SELECTOR_MAX))
		return submitctl_fail("invalid selector %s", selector);
	/* both checked to fit */
	memcpy(k.domain, domain, strlen(domain) + 1);
	memcpy(k.selector, selector, strlen(selector) + 1);
	snprintf(k.algorithm, sizeof(k.algorithm), "%s", ed25519 ? "ed25519-sha256" : "rsa-sha256");
	if (make_key(ed25519, &k.private_key, &k.public_key) == -1)
		return submitctl_fail("%s", "key generation failed (OpenSSL)");
	rc = dkim_store_add(db, &k, now_ms(), err, sizeof(err));
	memset(k.private_key, 0, strlen(k.private_key));
	free(k.private_key);
	free(k.public_key);
	if (rc == 1)
		return submitctl_fail("selector %s exists for that domain already; choose another with --selector",
		    selector);
	if (rc == -1)
		return submitctl_fail("%s", err);
	printf("%s key %s for %s generated; publish `submitctl dkim export %s` in DNS\n",
	    ed25519 ? "ed25519" : "rsa", selector, domain, domain);
	return 0;
}

static int
list(sqlite3 *db)
{
	struct dkim_keys keys;
	char err[512];

	if (dkim_store_keys(db, false, false, NULL, &keys, err, sizeof(err)) == -1)
		return submitctl_fail("%s", err);
	printf("%-30s %-24s %-15s %-8s %-24s %s\n", "DOMAIN", "SELECTOR", "ALGORITHM", "STATE", "CREATED", "RETIRED");
	for (size_t i = 0; i < keys.n; i++) {
		const struct dkim_key *k = &keys.v[i];
		printf("%-30s %-24s %-15s %-8s %-24s %s\n", k->domain, k->selector, k->algorithm, k->state,
		    k->created_at, k->retired_at[0] ? k->retired_at : "-");
	}
	dkim_keys_free(&keys);
	return 0;
}

static int
export(sqlite3 *db, const char *domain)
{
	struct dkim_keys keys;
	char err[512], line[8192];
	int rc = 0;

	if (dkim_store_keys(db, true, false, domain, &keys, err, sizeof(err)) == -1)
		return submitctl_fail("%s", err);
	if (keys.n == 0)
		rc = submitctl_fail("no active DKIM key for %s", domain);
	for (size_t i = 0; i < keys.n; i++) {
		const struct dkim_key *k = &keys.v[i];
		const char *type = strcmp(k->algorithm, "ed25519-sha256") == 0 ? "ed25519" : "rsa";
		if (dkim_record_format(k->selector, k->domain, type, k->public_key, line, sizeof(line)) == 0) {
			rc = submitctl_fail("cannot format the record of selector %s", k->selector);
			continue;
		}
		printf("%s\n", line);
	}
	dkim_keys_free(&keys);
	return rc;
}

int
submitctl_dkim(sqlite3 *db, int argc, char **argv)
{
	char err[512] = "";
	int rc;

	if (argc >= 2 && strcmp(argv[0], "generate") == 0)
		return generate(db, argc - 1, argv + 1);
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return list(db);
	if (argc == 2 && strcmp(argv[0], "export") == 0)
		return export(db, argv[1]);
	if (argc == 3 && strcmp(argv[0], "retire") == 0) {
		rc = dkim_store_retire(db, argv[1], argv[2], now_ms(), err, sizeof(err));
		if (rc == -1)
			return submitctl_fail("%s", err);
		if (rc == 1)
			return submitctl_fail("no active key with selector %s for that domain", argv[2]);
		printf("key %s of %s retired: it signs no more; keep its DNS record published a few days\n",
		    argv[2], argv[1]);
		return 0;
	}
	submitctl_usage(stderr);
	return 2;
}
