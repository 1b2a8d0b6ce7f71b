/* imap_commands: the table of mailbox commands (everything after login
 * but IDLE and LOGOUT, which the session runs itself) and how one runs:
 * reopen the selected mailbox if it was parked, report changes before
 * UID commands and the mailbox commands that ask for it, run the
 * handler, then report what changed meanwhile (RFC 3501 §7: untagged
 * updates before the tagged reply; no EXPUNGE during FETCH, STORE or
 * SEARCH, §7.4.1). The top of the command layer: the session calls it,
 * it calls the handlers, nothing here calls the session. */
#ifndef IMAP_COMMANDS_H
#define IMAP_COMMANDS_H

#include "imap_cmd.h"

/* Look up a command by upper-case name ("UID FETCH" for UID). NULL when
 * it is not a mailbox command. */
const struct imap_cmd_def *imap_commands_find(const char *name);

/* Run c (c->def set): on a worker thread for IMAP_CMD_POOL commands,
 * else on the loop. On return c holds its untagged output, its tagged
 * reply and its result fields (new_state, logout). */
void imap_commands_run(struct imap_cmd *c);

/* The changes of the selected mailbox, reported into c->out, as a
 * command's run does (expunge: EXPUNGE may be sent). For IDLE's
 * wake-ups. A failure that ends the session puts a BYE in c->out and
 * sets c->logout. */
void imap_commands_sync(struct imap_cmd *c, int expunge);

#endif
