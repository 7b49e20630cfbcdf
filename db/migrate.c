/*
 * migrate.c: the schema, as an ordered list of migrations. The database's
 * PRAGMA user_version is the number of migrations applied; each runs in its
 * own transaction, so a crash mid-upgrade leaves the previous version.
 * Never edit a migration that has shipped: append a new one.
 * docs/schema.md explains every table, column and view.
 */
#include <stdio.h>

#include "db/store.h"

static const char *const migrations[] = {
	/* 1: users, messages, recipients, keys, tokens, admin views */
	"CREATE TABLE users (\n"
	"  user_id       INTEGER PRIMARY KEY,\n"
	"  login         TEXT NOT NULL UNIQUE COLLATE NOCASE,\n"
	"  password_hash TEXT NOT NULL CHECK (password_hash LIKE '$argon2id$%'),\n"
	"  created_at    TEXT NOT NULL,\n"
	"  updated_at    TEXT NOT NULL\n"
	") STRICT;\n"
	"CREATE TABLE user_addresses (\n"
	"  address  TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,\n"
	"  user_id  INTEGER NOT NULL REFERENCES users(user_id) ON DELETE CASCADE\n"
	") STRICT;\n"
	"CREATE INDEX user_addresses_user ON user_addresses(user_id);\n"
	"CREATE TABLE messages (\n"
	"  message_id     INTEGER PRIMARY KEY,\n"
	"  public_id      TEXT NOT NULL UNIQUE,\n"
	"  received_at    TEXT NOT NULL,\n"
	"  auth_login     TEXT,\n"
	"  client_address TEXT NOT NULL,\n"
	"  helo           TEXT NOT NULL,\n"
	"  envelope_from  TEXT NOT NULL,\n"
	"  body_type      TEXT NOT NULL CHECK (body_type IN ('7BIT', '8BITMIME', 'BINARYMIME')),\n"
	"  smtputf8       INTEGER NOT NULL CHECK (smtputf8 IN (0, 1)),\n"
	"  size           INTEGER NOT NULL CHECK (size >= 0),\n"
	"  sha256         TEXT NOT NULL CHECK (length(sha256) = 64)\n"
	") STRICT;\n"
	"CREATE INDEX messages_received_at ON messages(received_at);\n"
	"CREATE INDEX messages_auth_login ON messages(auth_login, received_at);\n"
	"CREATE INDEX messages_envelope_from ON messages(envelope_from, received_at);\n"
	"CREATE TABLE message_bodies (\n"
	"  message_id INTEGER PRIMARY KEY REFERENCES messages(message_id) ON DELETE CASCADE,\n"
	"  content    BLOB NOT NULL\n"
	") STRICT;\n"
	"CREATE TABLE recipients (\n"
	"  recipient_id    INTEGER PRIMARY KEY,\n"
	"  message_id      INTEGER NOT NULL REFERENCES messages(message_id) ON DELETE CASCADE,\n"
	"  position        INTEGER NOT NULL CHECK (position >= 1),\n"
	"  address         TEXT NOT NULL,\n"
	"  state           TEXT NOT NULL DEFAULT 'queued'\n"
	"                  CHECK (state IN ('queued', 'deferred', 'delivered', 'failed')),\n"
	"  attempts        INTEGER NOT NULL DEFAULT 0,\n"
	"  next_attempt_at TEXT,\n"
	"  last_reply      TEXT,\n"
	"  updated_at      TEXT NOT NULL,\n"
	"  UNIQUE (message_id, position)\n"
	") STRICT;\n"
	"CREATE INDEX recipients_address ON recipients(address);\n"
	"CREATE INDEX recipients_state ON recipients(state, next_attempt_at);\n"
	"CREATE TABLE signing_keys (\n"
	"  key_id     TEXT PRIMARY KEY,\n"
	"  public_key BLOB NOT NULL CHECK (length(public_key) = 32),\n"
	"  secret_key BLOB CHECK (secret_key IS NULL OR length(secret_key) = 64),\n"
	"  state      TEXT NOT NULL CHECK (state IN ('active', 'retired')),\n"
	"  created_at TEXT NOT NULL,\n"
	"  retired_at TEXT\n"
	") STRICT;\n"
	"CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys(state) WHERE state = 'active';\n"
	"CREATE TABLE tokens (\n"
	"  token_id     TEXT PRIMARY KEY,\n"
	"  message_id   INTEGER NOT NULL REFERENCES messages(message_id) ON DELETE CASCADE,\n"
	"  recipient_id INTEGER REFERENCES recipients(recipient_id) ON DELETE CASCADE,\n"
	"  role         TEXT NOT NULL CHECK (role IN ('recipient', 'sender')),\n"
	"  address      TEXT NOT NULL,\n"
	"  key_id       TEXT NOT NULL REFERENCES signing_keys(key_id),\n"
	"  issued_at    TEXT NOT NULL,\n"
	"  expires_at   TEXT NOT NULL,\n"
	"  revoked_at   TEXT,\n"
	"  CHECK ((role = 'sender') = (recipient_id IS NULL))\n"
	") STRICT;\n"
	"CREATE INDEX tokens_message ON tokens(message_id);\n"
	"CREATE INDEX tokens_recipient ON tokens(recipient_id);\n"
	"CREATE INDEX tokens_expires_at ON tokens(expires_at);\n"
	"CREATE INDEX tokens_key ON tokens(key_id);\n"
	/* Views answer the everyday admin questions; docs/schema.md has recipes. */
	"CREATE VIEW message_overview AS\n"
	"  SELECT m.public_id, m.received_at, m.auth_login, m.client_address, m.envelope_from,\n"
	"         m.size, m.sha256, (SELECT count(*) FROM recipients r WHERE r.message_id = m.message_id) AS recipients,\n"
	"         EXISTS (SELECT 1 FROM message_bodies b WHERE b.message_id = m.message_id) AS has_body\n"
	"  FROM messages m;\n"
	"CREATE VIEW recipient_overview AS\n"
	"  SELECT m.public_id, m.received_at, m.envelope_from, r.position, r.address, r.state,\n"
	"         r.attempts, r.next_attempt_at, r.last_reply\n"
	"  FROM recipients r JOIN messages m USING (message_id);\n"
	"CREATE VIEW user_overview AS\n"
	"  SELECT u.login, u.created_at, u.updated_at,\n"
	"         (SELECT group_concat(a.address, ' ') FROM user_addresses a WHERE a.user_id = u.user_id) AS extra_addresses,\n"
	"         (SELECT count(*) FROM messages m WHERE m.auth_login = u.login) AS messages,\n"
	"         (SELECT max(m.received_at) FROM messages m WHERE m.auth_login = u.login) AS last_message_at\n"
	"  FROM users u;\n"
	"CREATE VIEW token_overview AS\n"
	"  SELECT t.token_id, m.public_id, t.role, t.address, t.key_id, t.issued_at, t.expires_at, t.revoked_at,\n"
	"         CASE WHEN t.revoked_at IS NOT NULL THEN 'revoked'\n"
	"              WHEN t.expires_at <= strftime('%Y-%m-%d %H:%M:%f', 'now') THEN 'expired'\n"
	"              ELSE 'valid' END AS status\n"
	"  FROM tokens t JOIN messages m USING (message_id);\n"
	"CREATE VIEW key_overview AS\n"
	"  SELECT k.key_id, k.state, k.created_at, k.retired_at, k.secret_key IS NOT NULL AS can_sign,\n"
	"         (SELECT count(*) FROM tokens t WHERE t.key_id = k.key_id) AS tokens,\n"
	"         (SELECT max(t.expires_at) FROM tokens t WHERE t.key_id = k.key_id) AS last_token_expires_at\n"
	"  FROM signing_keys k;\n",

	/* 2: the verification API: service credentials and the audit trail */
	"CREATE TABLE services (\n"
	"  service_id    INTEGER PRIMARY KEY,\n"
	"  name          TEXT NOT NULL UNIQUE,\n"
	"  secret_sha256 TEXT NOT NULL UNIQUE CHECK (length(secret_sha256) = 64),\n"
	"  created_at    TEXT NOT NULL\n"
	") STRICT;\n"
	"CREATE TABLE audit_log (\n"
	"  audit_id       INTEGER PRIMARY KEY,\n"
	"  at             TEXT NOT NULL,\n"
	"  action         TEXT NOT NULL CHECK (action IN ('verify', 'fetch')),\n"
	"  result         TEXT NOT NULL,\n"
	"  service        TEXT,\n"
	"  token_id       TEXT,\n"
	"  client_address TEXT NOT NULL\n"
	") STRICT;\n"
	"CREATE INDEX audit_log_at ON audit_log(at);\n"
	"CREATE INDEX audit_log_token ON audit_log(token_id);\n",

	/* 3: the relay queue as an admin sees it */
	"CREATE VIEW queue_overview AS\n"
	"  SELECT m.public_id, m.received_at, m.envelope_from, r.position, r.address, r.state, r.attempts,\n"
	"         r.next_attempt_at, r.last_reply\n"
	"  FROM recipients r JOIN messages m USING (message_id)\n"
	"  WHERE r.state IN ('queued', 'deferred');\n",

	/* 4: sender addresses belong to a login, not to a users row, so that
	 * logins checked by Dovecot (auth.backend = dovecot), which have no
	 * row in users, can be granted addresses too. A user deleted from
	 * users takes its addresses along, as the cascade did. */
	"CREATE TABLE login_addresses (\n"
	"  address  TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,\n"
	"  login    TEXT NOT NULL COLLATE NOCASE\n"
	") STRICT;\n"
	"CREATE INDEX login_addresses_login ON login_addresses(login);\n"
	"INSERT INTO login_addresses (address, login)\n"
	"  SELECT a.address, u.login FROM user_addresses a JOIN users u USING (user_id);\n"
	"DROP VIEW user_overview;\n"
	"DROP TABLE user_addresses;\n"
	"CREATE TRIGGER users_delete_addresses AFTER DELETE ON users\n"
	"  BEGIN DELETE FROM login_addresses WHERE login = old.login; END;\n"
	"CREATE VIEW user_overview AS\n"
	"  SELECT u.login, u.created_at, u.updated_at,\n"
	"         (SELECT group_concat(a.address, ' ') FROM login_addresses a WHERE a.login = u.login) AS extra_addresses,\n"
	"         (SELECT count(*) FROM messages m WHERE m.auth_login = u.login) AS messages,\n"
	"         (SELECT max(m.received_at) FROM messages m WHERE m.auth_login = u.login) AS last_message_at\n"
	"  FROM users u;\n"
	"CREATE VIEW login_address_overview AS\n"
	"  SELECT a.login, a.address, EXISTS (SELECT 1 FROM users u WHERE u.login = a.login) AS internal_user\n"
	"  FROM login_addresses a;\n",
	/* 5: the sender's copy filed into the user's Sent mailbox over IMAP
	 * (docs/dovecot.md): one job per message, written with the message,
	 * and the per-login choice that overrides sent.default */
	"CREATE TABLE sent_jobs (\n"
	"  message_id      INTEGER PRIMARY KEY REFERENCES messages(message_id) ON DELETE CASCADE,\n"
	"  login           TEXT NOT NULL,\n"
	"  state           TEXT NOT NULL DEFAULT 'pending'\n"
	"                  CHECK (state IN ('pending', 'filing', 'filed', 'failed')),\n"
	"  attempts        INTEGER NOT NULL DEFAULT 0,\n"
	"  next_attempt_at TEXT NOT NULL,\n"
	"  last_error      TEXT,\n"
	"  append_sent     INTEGER NOT NULL DEFAULT 0 CHECK (append_sent IN (0, 1)),\n"
	"  mailbox         TEXT,\n"
	"  uidvalidity     INTEGER,\n"
	"  uid             INTEGER,\n"
	"  filed_at        TEXT\n"
	") STRICT;\n"
	"CREATE INDEX sent_jobs_due ON sent_jobs(state, next_attempt_at);\n"
	"CREATE TABLE sent_settings (\n"
	"  login      TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,\n"
	"  enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),\n"
	"  updated_at TEXT NOT NULL\n"
	") STRICT;\n"
	"CREATE VIEW sent_overview AS\n"
	"  SELECT m.public_id, m.received_at, j.login, j.state, j.attempts, j.next_attempt_at, j.last_error,\n"
	"         j.append_sent, j.mailbox, j.uidvalidity, j.uid, j.filed_at\n"
	"  FROM sent_jobs j JOIN messages m USING (message_id);\n",
	/* 6: sending limits and holds (docs/config.md#limits). A recipient
	 * accepted while no next hop was configured is unrouted: the relay
	 * passes it over until `submitctl queue release` says otherwise, so
	 * setting relay.host later sends nothing by surprise. The relay's
	 * scan reads the partial index, which unrouted rows stay out of.
	 * login_policies: per-login limits and the disabled flag. */
	"ALTER TABLE recipients ADD COLUMN unrouted INTEGER NOT NULL DEFAULT 0 CHECK (unrouted IN (0, 1));\n"
	"CREATE INDEX recipients_due ON recipients(state, next_attempt_at) WHERE unrouted = 0;\n"
	"CREATE TABLE login_policies (\n"
	"  login              TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,\n"
	"  disabled           INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),\n"
	"  messages_per_hour  INTEGER CHECK (messages_per_hour IS NULL OR messages_per_hour >= 0),\n"
	"  recipients_per_day INTEGER CHECK (recipients_per_day IS NULL OR recipients_per_day >= 0),\n"
	"  updated_at         TEXT NOT NULL\n"
	") STRICT;\n"
	"DROP VIEW queue_overview;\n"
	"CREATE VIEW queue_overview AS\n"
	"  SELECT m.public_id, m.received_at, m.envelope_from, r.position, r.address, r.state, r.attempts,\n"
	"         r.next_attempt_at, r.last_reply,\n"
	"         CASE WHEN r.unrouted = 1 THEN 'no_next_hop'\n"
	"              WHEN EXISTS (SELECT 1 FROM login_policies p WHERE p.login = m.auth_login AND p.disabled = 1)\n"
	"              THEN 'login_disabled' END AS hold\n"
	"  FROM recipients r JOIN messages m USING (message_id)\n"
	"  WHERE r.state IN ('queued', 'deferred');\n",
	/* 7: DKIM keys per domain and selector, and
	 * the signature header fields computed when a message was accepted,
	 * put in front of its stored bytes when it is relayed (docs/schema.md) */
	"CREATE TABLE dkim_keys (\n"
	"  domain      TEXT NOT NULL COLLATE NOCASE,\n"
	"  selector    TEXT NOT NULL COLLATE NOCASE,\n"
	"  algorithm   TEXT NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),\n"
	"  private_key TEXT NOT NULL CHECK (private_key LIKE '-----BEGIN %'),\n"
	"  public_key  TEXT NOT NULL,\n"
	"  state       TEXT NOT NULL CHECK (state IN ('active', 'retired')),\n"
	"  created_at  TEXT NOT NULL,\n"
	"  retired_at  TEXT,\n"
	"  PRIMARY KEY (domain, selector)\n"
	") STRICT;\n"
	"CREATE TABLE message_dkim (\n"
	"  message_id INTEGER PRIMARY KEY REFERENCES messages(message_id) ON DELETE CASCADE,\n"
	"  headers    TEXT NOT NULL\n"
	") STRICT;\n",
	/* 8: single-instance bodies and the duplicate check (docs/schema.md).
	 * A body is stored once per SHA-256; messages point at it (body_id,
	 * NULL once purged). Its reference count is not a stored column: an
	 * UPDATE of a row rewrites the whole record, so a counter beside the
	 * content would copy the whole body at every reference taken or
	 * dropped (a 50 MB body: 100 MB more memory, 50 MB more written). It
	 * is the number of messages pointing at the body, counted on the
	 * index messages_body (view body_overview); the triggers delete a
	 * body when the last message lets go of it, whoever drops the
	 * reference (the writer's rollback, retention, submitctl, an
	 * operator's sqlite3 shell, a cascade), in that statement's
	 * transaction. message_bodies stays as a view, with a DELETE that
	 * purges, for the recipes and scripts written against version 7.
	 * header_message_id is the msg-id of the Message-ID: field, for the
	 * duplicate check (submit.dedup_window) and for operators. */
	"CREATE TABLE bodies (\n"
	"  body_id INTEGER PRIMARY KEY,\n"
	"  sha256  TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),\n"
	"  content BLOB NOT NULL\n"
	") STRICT;\n"
	"ALTER TABLE messages ADD COLUMN body_id INTEGER REFERENCES bodies(body_id);\n"
	"ALTER TABLE messages ADD COLUMN header_message_id TEXT;\n"
	"CREATE INDEX messages_body ON messages(body_id);\n"
	"CREATE INDEX messages_dedup ON messages(auth_login, header_message_id, sha256)\n"
	"  WHERE header_message_id IS NOT NULL;\n"
	"INSERT INTO bodies (sha256, content)\n"
	"  SELECT m.sha256, b.content FROM message_bodies b JOIN messages m USING (message_id)\n"
	"  WHERE true ON CONFLICT (sha256) DO NOTHING;\n"
	"UPDATE messages SET body_id = (SELECT b.body_id FROM bodies b WHERE b.sha256 = messages.sha256)\n"
	"  WHERE message_id IN (SELECT message_id FROM message_bodies);\n"
	"DROP VIEW message_overview;\n"
	"DROP TABLE message_bodies;\n"
	"CREATE TRIGGER messages_body_update AFTER UPDATE OF body_id ON messages\n"
	"  WHEN old.body_id IS NOT NULL AND old.body_id IS NOT new.body_id BEGIN\n"
	"    DELETE FROM bodies WHERE body_id = old.body_id\n"
	"      AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = old.body_id);\n"
	"  END;\n"
	"CREATE TRIGGER messages_body_delete AFTER DELETE ON messages WHEN old.body_id IS NOT NULL BEGIN\n"
	"    DELETE FROM bodies WHERE body_id = old.body_id\n"
	"      AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = old.body_id);\n"
	"  END;\n"
	"CREATE VIEW body_overview AS\n"
	"  SELECT b.body_id, b.sha256, length(b.content) AS size,\n"
	"         (SELECT count(*) FROM messages m WHERE m.body_id = b.body_id) AS refs\n"
	"  FROM bodies b;\n"
	"CREATE VIEW message_bodies AS\n"
	"  SELECT m.message_id, b.content FROM messages m JOIN bodies b USING (body_id);\n"
	"CREATE TRIGGER message_bodies_delete INSTEAD OF DELETE ON message_bodies\n"
	"  BEGIN UPDATE messages SET body_id = NULL WHERE message_id = old.message_id; END;\n"
	"CREATE VIEW message_overview AS\n"
	"  SELECT m.public_id, m.received_at, m.auth_login, m.client_address, m.envelope_from,\n"
	"         m.size, m.sha256, (SELECT count(*) FROM recipients r WHERE r.message_id = m.message_id) AS recipients,\n"
	"         m.body_id IS NOT NULL AS has_body, m.header_message_id\n"
	"  FROM messages m;\n",
	/* 9: the public keys of
	 * the other nodes (docs/cluster.md), fetched from their /v1/keys, so
	 * that a node that is down still has its tokens' signatures checked.
	 * A kid is the hash of its key: one row per key, whatever the node. */
	"CREATE TABLE peer_keys (\n"
	"  key_id     TEXT NOT NULL PRIMARY KEY,\n"
	"  node       TEXT NOT NULL,\n"
	"  public_key BLOB NOT NULL CHECK (length(public_key) = 32),\n"
	"  state      TEXT NOT NULL CHECK (state IN ('active', 'retired')),\n"
	"  created_at TEXT,\n"
	"  retired_at TEXT,\n"
	"  first_seen TEXT NOT NULL,\n"
	"  last_seen  TEXT NOT NULL\n"
	") STRICT;\n"
	"CREATE INDEX peer_keys_node ON peer_keys(node, last_seen);\n",
	/* 10: one index of the tokens by key and expiry instead of one for
	 * each: every token row was inserted into both. key_overview's count
	 * and last expiry per key read the new one alone. */
	"DROP INDEX tokens_expires_at;\n"
	"DROP INDEX tokens_key;\n"
	"CREATE INDEX tokens_key_expires ON tokens(key_id, expires_at);\n",
};

int
store_schema_version(void)
{
	return (int)(sizeof(migrations) / sizeof(migrations[0]));
}

static int
user_version(sqlite3 *db)
{
	sqlite3_stmt *st;
	int v = -1;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

int
store_migrate_to(sqlite3 *db, int want, char *err, size_t errlen)
{
	int have = user_version(db);
	char *msg = NULL;

	if (have < 0) {
		snprintf(err, errlen, "cannot read schema version: %s", sqlite3_errmsg(db));
		return -1;
	}
	if (want > store_schema_version())
		want = store_schema_version();
	if (have > store_schema_version()) {
		snprintf(err, errlen, "database schema version %d is newer than this build (%d)", have,
		    store_schema_version());
		return -1;
	}
	for (int v = have; v < want; v++) {
		char bump[64];
		snprintf(bump, sizeof(bump), "PRAGMA user_version = %d;", v + 1);
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, migrations[v], NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, bump, NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
			snprintf(err, errlen, "migration %d failed: %s", v + 1, msg ? msg : sqlite3_errmsg(db));
			sqlite3_free(msg);
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
	}
	return 0;
}

int
store_migrate(sqlite3 *db, char *err, size_t errlen)
{
	return store_migrate_to(db, store_schema_version(), err, errlen);
}
