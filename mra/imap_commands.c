/* imap_commands: the mailbox command table and the run of a command. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "imap_commands.h"
#include "log.h"
#include "mstore.h"

static void imap_commands_id(struct imap_cmd *c);
static void imap_commands_enable(struct imap_cmd *c);
static void imap_commands_namespace(struct imap_cmd *c);

#define P IMAP_CMD_POOL
#define NE IMAP_CMD_NOEXPUNGE
#define M1 IMAP_CMD_MBOX1
#define M2 IMAP_CMD_MBOX2
static const struct imap_cmd_def imap_commands_table[] = {
	{ "NOOP", IMAP_CMD_S_ANY, P, imap_cmd_msg_noop },
	{ "ID", IMAP_CMD_S_ANY, 0, imap_commands_id },
	{ "ENABLE", IMAP_CMD_S_LOGGEDIN, 0, imap_commands_enable },
	{ "NAMESPACE", IMAP_CMD_S_LOGGEDIN, 0, imap_commands_namespace },
	{ "SELECT", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_select },
	{ "EXAMINE", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_select },
	{ "CREATE", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_create },
	{ "DELETE", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_delete },
	{ "RENAME", IMAP_CMD_S_LOGGEDIN, P | M1 | M2,
	  imap_cmd_mbox_rename },
	{ "SUBSCRIBE", IMAP_CMD_S_LOGGEDIN, P | M1,
	  imap_cmd_mbox_subscribe },
	{ "UNSUBSCRIBE", IMAP_CMD_S_LOGGEDIN, P | M1,
	  imap_cmd_mbox_subscribe },
	{ "LIST", IMAP_CMD_S_LOGGEDIN, P, imap_cmd_mbox_list },
	{ "LSUB", IMAP_CMD_S_LOGGEDIN, P, imap_cmd_mbox_list },
	{ "STATUS", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_status },
	{ "APPEND", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_append },
	{ "GETQUOTAROOT", IMAP_CMD_S_LOGGEDIN, P | M1, imap_cmd_mbox_quota },
	{ "GETQUOTA", IMAP_CMD_S_LOGGEDIN, P, imap_cmd_mbox_quota },
	{ "CHECK", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_noop },
	{ "CLOSE", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_close },
	{ "UNSELECT", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_unselect },
	{ "EXPUNGE", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_expunge },
	{ "UID EXPUNGE", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_expunge },
	{ "SEARCH", IMAP_CMD_S_SELECTED, P | NE, imap_cmd_msg_search },
	{ "UID SEARCH", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_search },
	{ "FETCH", IMAP_CMD_S_SELECTED, P | NE, imap_cmd_msg_fetch },
	{ "UID FETCH", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_fetch },
	{ "STORE", IMAP_CMD_S_SELECTED, P | NE, imap_cmd_msg_store },
	{ "UID STORE", IMAP_CMD_S_SELECTED, P, imap_cmd_msg_store },
	{ "COPY", IMAP_CMD_S_SELECTED, P | M2, imap_cmd_msg_copy },
	{ "UID COPY", IMAP_CMD_S_SELECTED, P | M2, imap_cmd_msg_copy },
	{ "MOVE", IMAP_CMD_S_SELECTED, P | M2, imap_cmd_msg_copy },
	{ "UID MOVE", IMAP_CMD_S_SELECTED, P | M2, imap_cmd_msg_copy },
};
#undef P
#undef NE
#undef M1
#undef M2

const struct imap_cmd_def *imap_commands_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(imap_commands_table) /
		     sizeof(imap_commands_table[0]); i++)
		if (strcmp(imap_commands_table[i].name, name) == 0)
			return &imap_commands_table[i];
	return NULL;
}

void imap_commands_sync(struct imap_cmd *c, int expunge)
{
	struct imap_user *u = c->u;
	struct err err;
	size_t start = c->out.len;
	int rc;

	if (u == NULL || u->sel_name == NULL || c->logout)
		return;
	rc = imap_selected_sync(u, expunge ? IMAP_VIEW_EXPUNGE : 0, &c->out,
				&err);
	if (rc == 0)
		return;
	if (rc > 0) {
		log_warn("imap: user=<%s>: sync %s: %s", u->name, u->sel_name,
			 err.msg);
		return;
	}
	/* the client's view cannot be kept right: RFC 3501 §7.1.5 lets the
	 * server end the session at any time */
	log_warn("imap: user=<%s>: %s: %s", u->name, u->sel_name, err.msg);
	c->out.len = start;
	if (c->out.p != NULL)
		c->out.p[start] = '\0';
	(void)buf_printf(&c->out, "* BYE %s\r\n", err.temp ?
			 "Server out of memory." :
			 "Selected mailbox was deleted or rebuilt.");
	c->logout = 1;
}

void imap_commands_run(struct imap_cmd *c)
{
	struct imap_user *u = c->u;
	unsigned fl = c->def->flags;
	int expunge = !(fl & IMAP_CMD_NOEXPUNGE);

	/* before: the client sees changes (and the FLAGS of new keywords)
	 * before the command's own responses use them */
	if ((fl & IMAP_CMD_POOL) && u != NULL && u->sel_name != NULL) {
		imap_commands_sync(c, expunge);
		if (c->logout) {
			imap_cmd_no(c, "Mailbox is gone.");
			return;
		}
	}
	c->def->fn(c);
	if ((fl & IMAP_CMD_POOL) && !c->no_sync)
		imap_commands_sync(c, expunge);
}

/* RFC 2971 */
static void imap_commands_id(struct imap_cmd *c)
{
	buf_puts(&c->out, "* ID (\"name\" \"mra\" \"vendor\" \"mailpair\")\r\n");
	imap_cmd_ok(c, "ID completed.");
}

/* RFC 5161 ENABLE of RFC 7162's CONDSTORE and QRESYNC (QRESYNC implies
 * CONDSTORE, §3.2.3); other names are ignored and not listed. */
static void imap_commands_enable(struct imap_cmd *c)
{
	struct imap_arg *a;
	unsigned before = c->u->enabled;

	if (c->a == NULL) {
		imap_cmd_bad(c, "ENABLE needs capability names.");
		return;
	}
	for (a = c->a; a != NULL; a = a->next) {
		if (a->type != IMAP_ARG_ATOM) {
			c->u->enabled = before;
			imap_cmd_bad(c, "ENABLE needs capability names.");
			return;
		}
		if (strcasecmp(a->s, "CONDSTORE") == 0)
			c->u->enabled |= IMAP_VIEW_CONDSTORE;
		else if (strcasecmp(a->s, "QRESYNC") == 0)
			c->u->enabled |= IMAP_VIEW_CONDSTORE | IMAP_VIEW_QRESYNC;
	}
	buf_puts(&c->out, "* ENABLED");
	/* only what this command newly enabled (RFC 5161 §3.1) */
	if ((c->u->enabled & ~before) & IMAP_VIEW_CONDSTORE)
		buf_puts(&c->out, " CONDSTORE");
	if ((c->u->enabled & ~before) & IMAP_VIEW_QRESYNC)
		buf_puts(&c->out, " QRESYNC");
	buf_puts(&c->out, "\r\n");
	c->u->view.opts = c->u->enabled;
	imap_cmd_ok(c, "Enabled.");
}

/* RFC 2342: one personal namespace, no prefix, "." separator. */
static void imap_commands_namespace(struct imap_cmd *c)
{
	buf_puts(&c->out, "* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
	imap_cmd_ok(c, "Namespace completed.");
}
