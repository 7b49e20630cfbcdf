/*
 * peer_answer.h: the answers of another node of the cluster that a node
 * reads: its /v1/keys (the keys of that node alone) and the "result" of
 * its /v1/verify. Pure and bounded: the bytes come from the network, and
 * a peer that misbehaves gets its answer refused, not trusted in part.
 */
#ifndef SUBMITD_PEER_ANSWER_H
#define SUBMITD_PEER_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_ANSWER_MAX      (256 * 1024)  /* octets of an answer we read */
#define PEER_ANSWER_KEYS_MAX 256           /* keys of one node */
#define PEER_KID_MAX         63
#define PEER_RESULT_MAX      31

struct peer_answer_key {
	char kid[PEER_KID_MAX + 1];
	uint8_t pk[32];
	bool active;
	char created_at[24];                 /* RFC 3339 text as listed, "" when null */
	char retired_at[24];
};

/*
 * {"keys": [{"key_id", "public_key_hex", "state", "created_at",
 * "retired_at", "node"}, ...]}: the keys whose "node" is node (others
 * are skipped: a node answers for itself). Copies at most max into out.
 * 0 with *n_r set, or -1 when the answer is not of that form (not JSON,
 * a field missing or of the wrong type or length, over a bound).
 */
int peer_answer_keys(const char *buf, size_t len, const char *node, struct peer_answer_key *out, size_t max,
    size_t *n_r);

/* The "result" of a JSON object ([a-z_], 1 to 31 characters) into
 * result. 0, or -1 when there is none. */
int peer_answer_result(const char *buf, size_t len, char result[PEER_RESULT_MAX + 1]);

#endif
