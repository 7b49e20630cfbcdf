/*
 * imap_submit_token_save.c: the last step of XSUBMITTOKEN, filing the
 * verified copy into the mailbox: looked up first by a GUID derived from
 * submitd's message id, so the same message handed over twice is filed
 * once; otherwise saved unchanged with \Seen and the acceptance time as its
 * internal date, answered with APPENDUID (docs/imap.md section 9).
 */
#include "imap-common.h"
#include "str.h"
#include "buffer.h"
#include "istream.h"
#include "sha2.h"
#include "hex-binary.h"
#include "mail-storage.h"
#include "mail-search-build.h"
#include "imap-commands.h"
#include "imap-commands-util.h"

#include "submit_token_answer.h"
#include "imap_submit_token_save.h"

/* The GUID the copy is saved with: 32 hex digits of SHA-256("submitd:" +
 * message id). Why a GUID: maildir, sdbox and mdbox all keep a GUID given
 * to mailbox_save_set_guid() (maildir in its uidlist, dbox in the file),
 * and SEARCH_GUID finds it again, so the mailbox itself records what was
 * filed: nothing else to keep in step, and a message copied or moved by the
 * user keeps its GUID. 128 bits in hex is what the dbox formats require. */
static const char *
xst_guid(const char *message_id)
{
	unsigned char digest[SHA256_RESULTLEN];
	const char *in = t_strconcat("submitd:", message_id, NULL);

	sha256_get_digest(in, strlen(in), digest);
	return binary_to_hex(digest, 16);
}

/* The UID of a message with `guid` in the box: 1 and *uid_r, 0 when none,
 * -1 on a storage error. */
static int
xst_find_guid(struct mailbox *box, const char *guid, uint32_t *uid_r)
{
	struct mail_search_args *args;
	struct mail_search_arg *arg;
	struct mailbox_transaction_context *t;
	struct mail_search_context *ctx;
	struct mail *mail;
	int ret = 0;

	args = mail_search_build_init();
	arg = mail_search_build_add(args, SEARCH_GUID);
	arg->value.str = p_strdup(args->pool, guid);
	t = mailbox_transaction_begin(box, 0, "XSUBMITTOKEN lookup");
	ctx = mailbox_search_init(t, args, NULL, 0, NULL);
	if (mailbox_search_next(ctx, &mail)) {
		*uid_r = mail->uid;
		ret = 1;
	}
	if (mailbox_search_deinit(&ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	mail_search_args_unref(&args);
	return ret;
}

void
xst_save(struct client_command_context *cmd, struct mailbox *box, const char *mailbox_name,
	 const struct submit_token_answer *verify, const buffer_t *body)
{
	struct mailbox_transaction_context *t;
	struct mail_save_context *save;
	struct mail_transaction_commit_changes changes;
	struct mailbox_status status;
	struct istream *input;
	const char *guid = xst_guid(verify->message_id);
	time_t received;
	uint32_t uid;
	int ret;

	if (mailbox_sync(box, 0) < 0) {
		client_send_box_error(cmd, box);
		return;
	}
	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	ret = xst_find_guid(box, guid, &uid);
	if (ret < 0) {
		client_send_box_error(cmd, box);
		return;
	}
	if (ret > 0) {
		client_send_tagline(cmd, t_strdup_printf(
			"OK [APPENDUID %u %u] Already filed.", status.uidvalidity, uid));
		return;
	}
	(void)submit_token_parse_time(verify->received_at, &received);   /* checked in answer_check */
	t = mailbox_transaction_begin(box, MAILBOX_TRANSACTION_FLAG_EXTERNAL |
				      MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS,
				      imap_client_command_get_reason(cmd));
	save = mailbox_save_alloc(t);
	mailbox_save_set_flags(save, MAIL_SEEN, NULL);
	mailbox_save_set_received_date(save, received, 0);
	mailbox_save_set_guid(save, guid);
	input = i_stream_create_from_data(body->data, body->used);
	ret = mailbox_save_begin(&save, input);
	if (ret == 0) {
		do {
			if (mailbox_save_continue(save) < 0) {
				ret = -1;
				break;
			}
		} while (i_stream_read(input) > 0);
	}
	if (ret == 0 && mailbox_save_finish(&save) < 0)
		ret = -1;
	if (save != NULL)
		mailbox_save_cancel(&save);
	i_stream_unref(&input);
	if (ret < 0) {
		client_send_box_error(cmd, box);
		mailbox_transaction_rollback(&t);
		return;
	}
	if (mailbox_transaction_commit_get_changes(&t, &changes) < 0) {
		client_send_box_error(cmd, box);
		return;
	}
	if (seq_range_count(&changes.saved_uids) == 1) {
		const struct seq_range *r = array_front(&changes.saved_uids);

		client_send_tagline(cmd, t_strdup_printf("OK [APPENDUID %u %u] Filed.",
							 changes.uid_validity, r->seq1));
	} else {
		client_send_tagline(cmd, "OK Filed.");
	}
	pool_unref(&changes.pool);
	e_info(cmd->client->event, "submit_token: filed msgid=%s mailbox=%s",
	       verify->message_id, mailbox_name);
}
