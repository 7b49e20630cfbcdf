/*
 * imap_submit_token_plugin.h: the entry points Dovecot's module loader
 * looks up in lib95_imap_submit_token_plugin.so (plugin name
 * imap_submit_token; docs/dovecot.md "The XSUBMITTOKEN plugin").
 */
#ifndef IMAP_SUBMIT_TOKEN_PLUGIN_H
#define IMAP_SUBMIT_TOKEN_PLUGIN_H

struct module;

extern const char *imap_submit_token_plugin_version;
extern const char imap_submit_token_plugin_binary_dependency[];

void imap_submit_token_plugin_init(struct module *module);
void imap_submit_token_plugin_deinit(void);

#endif
