/*
 * imap_submit_token_save.h: filing the verified copy of XSUBMITTOKEN into
 * the mailbox (imap_submit_token_save.c), once per message.
 */
#ifndef IMAP_SUBMIT_TOKEN_SAVE_H
#define IMAP_SUBMIT_TOKEN_SAVE_H

struct client_command_context;
struct mailbox;
struct submit_token_answer;

/* Saves body, the message verify describes, into the opened box and sends
 * the command's tagged answer: OK [APPENDUID] when filed now or found filed
 * before, the storage error otherwise. The lookup and the save are not one
 * transaction: two XSUBMITTOKEN of the same message at the same moment may
 * both save. A client sends one. */
void xst_save(struct client_command_context *cmd, struct mailbox *box, const char *mailbox_name,
	      const struct submit_token_answer *verify, const buffer_t *body);

#endif
