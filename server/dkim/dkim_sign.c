/*
 * dkim_sign.c: see dkim_sign.h. libopendkim does the signing: one handle
 * per key, each fed the same pieces of the message, so that a domain with
 * an RSA and an Ed25519 key reads its message once. A key is the PEM text
 * `submitctl dkim generate` stored; libopendkim reads PEM (any key type
 * OpenSSL's PEM_read_bio_PrivateKey knows, Ed25519 included) when the
 * key starts with "-----".
 *
 * libopendkim takes each key as text and parses it again for every
 * signature, and under OpenSSL 3 parsing a key (PEM or DER alike: the
 * decoder framework looks up every decoder each time) cost more than the
 * signature: about 0.9 ms for an RSA-2048 key, 0.55 ms for an Ed25519 key,
 * against 0.25 ms and 25 us to sign. The library has no way to be handed
 * a parsed key, so this file defines PEM_read_bio_PrivateKey itself (the
 * executable's definition comes first for the libraries it loads): while
 * a signer of this thread is signing (signing_now), a read of one of its
 * keys' text gets the key the signer parsed once when it loaded its keys
 * (a reference to an RSA key, which libopendkim frees; a copy of an
 * Ed25519 key, which it does not, so what it leaks, docs/operations.md,
 * is unchanged); every other read goes to OpenSSL's own function. The
 * parsed keys are the signer's, and a signer is one thread's: no key is
 * used by two threads.
 */
#include "server/dkim/dkim_sign.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <dlfcn.h>
#include <opendkim/dkim.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "db/dkim_store.h"
#include "db/store.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/protocol/mail_header.h"

#define PIECE (64 * 1024)
/* Signatures per message: keys of one domain beyond this are not used. */
#define MAX_SIGS 8

/* RFC 6376 5.4.1's list, and Message-ID (a replayed message keeps it). */
static const char *sign_headers[] = {
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Resent-Date", "Resent-From", "Resent-To",
	"Resent-Cc", "In-Reply-To", "References", "List-Id", "List-Help", "List-Unsubscribe",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive", "Message-ID", NULL,
};
/* Signed once more than they appear (RFC 6376 8.15): nobody can add one
 * of these to a signed message without breaking the signature. */
static const char *oversign_headers[] = {
	"From", "Subject", "Date", "To", "Cc", "Message-ID", NULL,
};

/* A key's text and the key parsed from it once. */
struct parsed_key {
	char *pem;
	size_t len;
	EVP_PKEY *pkey;              /* NULL: did not parse; libopendkim says why */
};

struct dkim_signer {
	sqlite3 *db;
	sqlite3_stmt *data_version;
	sqlite3_stmt *keys_st;         /* dkim_store_keys_sql, prepared once */
	int64_t seen_version;          /* -1: load again */
	DKIM_LIB *lib;
	bool ed25519;                  /* the library signs ed25519-sha256 */
	struct dkim_keys keys;         /* the active keys, with their private keys */
	struct parsed_key *parsed;     /* keys.v[i]'s, parsed */
	uint8_t *piece;
};

/* The signer of this thread inside dkim_eom, for PEM_read_bio_PrivateKey. */
static __thread const struct dkim_signer *signing_now;

typedef EVP_PKEY *pem_read_fn(BIO *, EVP_PKEY **, pem_password_cb *, void *);

/* OpenSSL's own PEM_read_bio_PrivateKey, behind ours. */
static pem_read_fn *
openssl_pem_read(void)
{
	static pem_read_fn *_Atomic fn;
	pem_read_fn *f = fn;

	if (f == NULL) {
		*(void **)&f = dlsym(RTLD_NEXT, "PEM_read_bio_PrivateKey");
		fn = f;
	}
	return f;
}

EVP_PKEY *
PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u)
{
	const struct dkim_signer *s = signing_now;
	pem_read_fn *real = openssl_pem_read();

	if (s != NULL && x == NULL && bp != NULL && BIO_method_type(bp) == BIO_TYPE_MEM) {
		char *data = NULL;
		long n = BIO_get_mem_data(bp, &data);
		for (size_t i = 0; n > 0 && data != NULL && i < s->keys.n; i++) {
			const struct parsed_key *k = &s->parsed[i];
			if (k->pkey != NULL && k->len == (size_t)n && memcmp(k->pem, data, k->len) == 0) {
				/* The BIO is libopendkim's copy of the key, read
				 * once and freed: nothing reads past the key. An
				 * RSA key is shared (the library frees the reference
				 * it gets), so the blinding and Montgomery values
				 * OpenSSL keeps in it are made once, not per
				 * signature (they cost as much as the signature);
				 * others are copied, and what the library leaks of
				 * them stays its own. */
				EVP_PKEY *copy = k->pkey;
				if (EVP_PKEY_get_base_id(copy) == EVP_PKEY_RSA ? EVP_PKEY_up_ref(copy) != 1 :
				    (copy = EVP_PKEY_dup(k->pkey)) == NULL)
					break;
				return copy;
			}
		}
	}
	if (real == NULL)
		return NULL;
	return real(bp, x, cb, u);
}

static void
parsed_free(struct parsed_key **vp, size_t n)
{
	for (size_t i = 0; *vp != NULL && i < n; i++) {
		EVP_PKEY_free((*vp)[i].pkey);
		free((*vp)[i].pem);
	}
	free(*vp);
	*vp = NULL;
}

/* The parsed keys for fresh: those of old whose text is the same are
 * taken over (the keys reload after nearly every commit), the others
 * parsed now with OpenSSL's function. */
static struct parsed_key *
parsed_for(const struct dkim_keys *fresh, struct parsed_key *old, size_t nold)
{
	struct parsed_key *v = xcalloc(fresh->n ? fresh->n : 1, sizeof(*v));
	pem_read_fn *real = openssl_pem_read();

	for (size_t i = 0; i < fresh->n; i++) {
		const char *pem = fresh->v[i].private_key ? fresh->v[i].private_key : "";
		v[i].len = strlen(pem);
		v[i].pem = xstrdup(pem);
		for (size_t j = 0; j < nold && v[i].pkey == NULL; j++)
			if (old[j].pkey != NULL && old[j].len == v[i].len && memcmp(old[j].pem, pem, v[i].len) == 0) {
				v[i].pkey = old[j].pkey;
				old[j].pkey = NULL;
			}
		if (v[i].pkey == NULL && real != NULL && v[i].len > 0) {
			BIO *b = BIO_new_mem_buf(pem, (int)v[i].len);
			if (b != NULL)
				v[i].pkey = real(b, NULL, NULL, NULL);
			BIO_free(b);
		}
	}
	return v;
}

struct dkim_signer *
dkim_signer_new(const char *db_path, char *err, size_t errlen)
{
	struct dkim_signer *s = xcalloc(1, sizeof(*s));

	s->seen_version = -1;
	s->db = store_open(db_path, err, errlen);
	if (s->db == NULL)
		goto fail;
	if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &s->data_version, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(s->db, dkim_store_keys_sql, -1, SQLITE_PREPARE_PERSISTENT, &s->keys_st, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
		goto fail;
	}
	s->lib = dkim_init(NULL, NULL);
	if (s->lib == NULL) {
		snprintf(err, errlen, "dkim_init failed");
		goto fail;
	}
	if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, sign_headers, sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, oversign_headers, sizeof(char **)) !=
	    DKIM_STAT_OK) {
		snprintf(err, errlen, "dkim_options failed");
		goto fail;
	}
	s->ed25519 = dkim_libfeature(s->lib, DKIM_FEATURE_ED25519);
	s->piece = xmalloc(PIECE);
	return s;
fail:
	dkim_signer_free(&s);
	return NULL;
}

void
dkim_signer_free(struct dkim_signer **sp)
{
	struct dkim_signer *s = *sp;

	if (s == NULL)
		return;
	parsed_free(&s->parsed, s->keys.n);
	dkim_keys_free(&s->keys);
	if (s->lib)
		dkim_close(s->lib);
	sqlite3_finalize(s->data_version);
	sqlite3_finalize(s->keys_st);
	store_close(&s->db);
	free(s->piece);
	free(s);
	*sp = NULL;
}

/* The active keys, reloaded when another connection committed: with the
 * writer committing every batch, that is before nearly every message, so
 * the statement stays prepared (parsing it was most of a signer's time
 * per message with no key for the domain). A load that fails keeps the
 * keys we had and is tried again next time; one that finds the same keys
 * keeps ours. */
static void
refresh(struct dkim_signer *s)
{
	struct dkim_keys fresh;
	struct parsed_key *parsed;
	char err[256];
	int64_t v = -1;

	if (sqlite3_step(s->data_version) == SQLITE_ROW)
		v = sqlite3_column_int64(s->data_version, 0);
	sqlite3_reset(s->data_version);
	if (v == s->seen_version && v != -1)
		return;
	if (dkim_store_keys_with(s->keys_st, true, true, NULL, &fresh, err, sizeof(err)) == -1) {
		log_err("event=dkim_keys_load_failed error=\"%s\"", err);
		return;
	}
	s->seen_version = v;
	if (dkim_keys_equal(&fresh, &s->keys)) {
		dkim_keys_free(&fresh);
		return;
	}
	if (fresh.n != s->keys.n)
		log_info("event=dkim_keys_loaded keys=%zu", fresh.n);
	parsed = parsed_for(&fresh, s->parsed, s->keys.n);
	parsed_free(&s->parsed, s->keys.n);
	s->parsed = parsed;
	dkim_keys_free(&s->keys);
	s->keys = fresh;
}

/* n octets of the message from off into buf: its length, or -1. */
static ssize_t
read_at(const uint8_t *body, int fd, uint64_t off, uint8_t *buf, size_t n)
{
	if (body) {
		memcpy(buf, body + off, n);
		return (ssize_t)n;
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* The header field as libopendkim made it, with CRLF line ends (it folds
 * with CRLF or a bare LF depending on its flags) and a final CRLF. */
static void
append_field(char **out, size_t *len, const unsigned char *value, size_t vlen)
{
	static const char name[] = "DKIM-Signature: ";
	size_t need = *len + sizeof(name) + 2 * vlen + 3;

	*out = xrealloc(*out, need);
	memcpy(*out + *len, name, sizeof(name) - 1);
	*len += sizeof(name) - 1;
	for (size_t i = 0; i < vlen; i++) {
		if (value[i] == '\n' && (i == 0 || value[i - 1] != '\r'))
			(*out)[(*len)++] = '\r';
		(*out)[(*len)++] = (char)value[i];
	}
	memcpy(*out + *len, "\r\n", 3);
	*len += 2;
}

int
dkim_signer_sign(struct dkim_signer *s, const char *msgid, const uint8_t *body, int fd, uint64_t size,
    char **out)
{
	DKIM *h[MAX_SIGS];
	const struct dkim_key *k[MAX_SIGS];
	char domain[DKIM_DOMAIN_MAX + 1];
	size_t nh = 0, len = 0;
	size_t head = size < DKIM_HEAD_MAX ? (size_t)size : DKIM_HEAD_MAX;
	DKIM_STAT st = DKIM_STAT_OK;
	const char *what = NULL;
	int rc = -1;

	*out = NULL;
	refresh(s);
	if (s->keys.n == 0)
		return 0;
	/* piece is PIECE octets, DKIM_HEAD_MAX at most as large */
	if (read_at(body, fd, 0, s->piece, head) < 0) {
		log_err("event=dkim_sign_failed msgid=%s error=\"cannot read the message\"", msgid);
		return -1;
	}
	if (mail_header_from_domain((const char *)s->piece, head, domain, sizeof(domain)) == -1)
		return 0;
	for (size_t i = 0; i < s->keys.n && nh < MAX_SIGS; i++) {
		const struct dkim_key *key = &s->keys.v[i];
		bool ed = strcmp(key->algorithm, "ed25519-sha256") == 0;
		if (strcasecmp(key->domain, domain) != 0 || (ed && !s->ed25519))
			continue;
		h[nh] = dkim_sign(s->lib, (const unsigned char *)msgid, NULL, (dkim_sigkey_t)key->private_key,
		    (const unsigned char *)key->selector, (const unsigned char *)domain, DKIM_CANON_RELAXED,
		    DKIM_CANON_RELAXED, ed ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256, -1, &st);
		if (h[nh] == NULL) {
			log_err("event=dkim_sign_failed msgid=%s domain=%s selector=%s error=\"%s\"", msgid, domain,
			    key->selector, dkim_getresultstr(st));
			goto done;
		}
		k[nh++] = key;
	}
	if (nh == 0)
		return 0;
	signing_now = s;            /* libopendkim reads the keys in there */
	for (uint64_t off = 0; off < size; ) {
		size_t n = size - off < PIECE ? (size_t)(size - off) : PIECE;
		if (read_at(body, fd, off, s->piece, n) < 0) {
			what = "cannot read the message";
			goto done;
		}
		for (size_t i = 0; i < nh; i++) {
			if ((st = dkim_chunk(h[i], s->piece, n)) != DKIM_STAT_OK) {
				what = dkim_geterror(h[i]);
				goto done;
			}
		}
		off += n;
	}
	for (size_t i = 0; i < nh; i++) {
		unsigned char *sig;
		size_t slen;
		if ((st = dkim_chunk(h[i], NULL, 0)) != DKIM_STAT_OK || (st = dkim_eom(h[i], NULL)) != DKIM_STAT_OK ||
		    (st = dkim_getsighdr_d(h[i], sizeof("DKIM-Signature: ") - 1, &sig, &slen)) != DKIM_STAT_OK) {
			what = dkim_geterror(h[i]);
			if (what == NULL || *what == '\0')
				what = dkim_getresultstr(st);
			goto done;
		}
		append_field(out, &len, sig, slen);
		log_debug("event=dkim_signed msgid=%s domain=%s selector=%s", msgid, domain, k[i]->selector);
	}
	rc = 1;
done:
	signing_now = NULL;
	if (rc == -1 && what)
		log_err("event=dkim_sign_failed msgid=%s domain=%s error=\"%s\"", msgid, domain, what);
	if (rc == -1)
		xfreep(out);
	for (size_t i = 0; i < nh; i++)
		dkim_free(h[i]);
	return rc;
}
