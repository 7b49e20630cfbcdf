/*
 * peer_answer.c: see peer_answer.h. jansson reads the JSON (it bounds its
 * own depth); this file checks every field it takes, so that nothing of
 * an unexpected size or type reaches the database or a reply.
 */
#include "server/protocol/peer_answer.h"

#include <string.h>

#include <jansson.h>

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A string field of at most max characters, or null when nullable. */
static bool
get_text(json_t *o, const char *name, bool nullable, char *out, size_t max)
{
	json_t *v = json_object_get(o, name);

	out[0] = '\0';
	if (nullable && (v == NULL || json_is_null(v)))
		return true;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
		return false;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return strlen(out) == json_string_length(v);       /* no NUL inside */
}

static bool
read_key(json_t *o, struct peer_answer_key *k)
{
	char hex[65], state[16];

	if (!json_is_object(o) || !get_text(o, "key_id", false, k->kid, PEER_KID_MAX) ||
	    !get_text(o, "public_key_hex", false, hex, 64) || strlen(hex) != 64 ||
	    !get_text(o, "state", false, state, 15) ||
	    !get_text(o, "created_at", true, k->created_at, 23) ||
	    !get_text(o, "retired_at", true, k->retired_at, 23))
		return false;
	for (size_t i = 0; i < 32; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		k->pk[i] = (uint8_t)(hi << 4 | lo);
	}
	for (const char *c = k->kid; *c; c++)
		if (*c <= 0x20 || *c >= 0x7f)
			return false;
	if (strcmp(state, "active") == 0)
		k->active = true;
	else if (strcmp(state, "retired") == 0)
		k->active = false;
	else
		return false;
	return true;
}

int
peer_answer_keys(const char *buf, size_t len, const char *node, struct peer_answer_key *out, size_t max,
    size_t *n_r)
{
	json_error_t jerr;
	json_t *root, *keys, *o;
	size_t i, n = 0;
	int rc = -1;

	*n_r = 0;
	if (buf == NULL || len == 0 || len > PEER_ANSWER_MAX)
		return -1;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return -1;
	keys = json_object_get(root, "keys");
	if (!json_is_object(root) || !json_is_array(keys) || json_array_size(keys) > PEER_ANSWER_KEYS_MAX)
		goto out;
	json_array_foreach(keys, i, o) {
		struct peer_answer_key k;
		json_t *jn = json_object_get(o, "node");
		memset(&k, 0, sizeof(k));
		if (!read_key(o, &k) || !json_is_string(jn))
			goto out;
		if (strcmp(json_string_value(jn), node) != 0)
			continue;
		if (n == max)
			goto out;
		out[n++] = k;
	}
	*n_r = n;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int
peer_answer_result(const char *buf, size_t len, char result[PEER_RESULT_MAX + 1])
{
	json_error_t jerr;
	json_t *root;
	int rc = -1;

	result[0] = '\0';
	if (buf == NULL || len == 0 || len > PEER_ANSWER_MAX)
		return -1;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return -1;
	if (json_is_object(root) && get_text(root, "result", false, result, PEER_RESULT_MAX)) {
		rc = 0;
		for (const char *c = result; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || *c == '_'))
				rc = -1;
	}
	if (rc == -1)
		result[0] = '\0';
	json_decref(root);
	return rc;
}
