/*
 * delivery.h: where a message stands with the relay, as a token holder may
 * see it (GET /v1/status, submitctl message status; docs/api.md). One
 * query reads the token's message and the recipients the token covers:
 * every recipient for a sender token, its own for a recipient token. The
 * scope is decided in that query, from the token's row, so no caller can
 * show a recipient the token does not cover.
 *
 * The answer holds delivery state only, never content. Its JSON form is
 * built here too, so that the API and submitctl --json print the same
 * thing; the states a token holder sees are a table (delivery_state_of),
 * one row per state of recipients.state.
 */
#ifndef SUBMITD_DELIVERY_H
#define SUBMITD_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

struct delivery_rcpt {
	char *address;
	char *state;                 /* recipients.state, as stored */
	int attempts;
	char *next_attempt_at;       /* as stored; NULL: none */
	char *last_reply;            /* NULL: none yet */
	char *updated_at;            /* as stored */
	bool bounce_sent;            /* a bounce for it was queued to the sender */
};

struct delivery_status {
	char token_id[32];
	char role[12];               /* "sender" or "recipient" */
	char *address;               /* the token's address */
	char public_id[32];
	char received_at[32];        /* as stored */
	int64_t size;
	char sha256[65];
	struct delivery_rcpt *rcpts; /* RCPT order */
	size_t nrcpt;
};

void delivery_status_free(struct delivery_status *s);

/*
 * The status of the message of token token_id (a jti the caller has
 * verified): 1 found, 0 no such token (purged by retention, or never
 * issued), -1 error with err set.
 */
int delivery_status_get(sqlite3 *db, const char *token_id, struct delivery_status *s_r, char *err, size_t errlen);

/* How a recipients.state shows to a token holder. */
struct delivery_state {
	const char *db_name;         /* recipients.state */
	const char *name;            /* the API's "state" */
	const char *text;            /* for people (submitctl) */
	const char *at_key;          /* JSON key of updated_at; NULL: not shown */
	bool reply;                  /* show last_reply (as "reply") */
	bool next_attempt;           /* show next_attempt_at */
	bool bounce;                 /* show bounce_sent */
};

/*
 * The row for db_state, given whether a next hop is configured. A state
 * without a row (one a newer schema added) is described in *unknown with
 * its database name, its reply and time, and unknown is returned. Pure.
 */
const struct delivery_state *delivery_state_of(const char *db_state, bool relay_configured,
    struct delivery_state *unknown);

/* "YYYY-MM-DD HH:MM:SS.sss" -> "YYYY-MM-DDTHH:MM:SS.sssZ" (out of 32). Pure. */
void delivery_time_rfc3339(const char *db, char out[32]);

/* The API's 200 answer (a new reference). Pure. */
json_t *delivery_status_json(const struct delivery_status *s, bool relay_configured);

#endif
