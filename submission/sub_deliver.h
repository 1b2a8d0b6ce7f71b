/* sub_deliver: the MDA step for one local target: Delivered-To loop check,
 * quota, Return-Path/Delivered-To headers, then a Maildir (crash-safe,
 * de-duplicated by a stem derived from the message key and recipient) or
 * an mbox append under fcntl and dot-file locks. Blocking: worker pool. */
#ifndef SUB_DELIVER_H
#define SUB_DELIVER_H

#include <stddef.h>

#include "err.h"
#include "sub_resolve.h"

enum sub_deliver_rc {
	SUB_DELIVER_OK,
	SUB_DELIVER_DUP,     /* this copy was already delivered: nothing done */
	SUB_DELIVER_TEMP,    /* 4xx, err filled */
	SUB_DELIVER_PERM,    /* 5xx (loop, over quota), err filled */
};

/* key: the message's stable identity across retries (the upstream IDENT
 * when the forwarder sent one, else our queue id). sender: "" for <>.
 * data: the message with CRLF line ends (stored as is in Maildirs, so
 * sizes match what IMAP reports; mbox gets LF and >From quoting).
 * scan: 1 when an earlier attempt with this key may have delivered
 * (a retry after a crash): new/ and cur/ are searched for the copy first;
 * 0: only new/ is checked for the exact file name (one stat).
 * g: the group through which Maildir deliveries share their fsyncs
 * (fsgroup.h; NULL: each its own).
 * name_r (may be NULL): the Maildir file name written. */
struct fsgroup;

enum sub_deliver_rc sub_deliver_local(const struct sub_target *t,
				      const char *key, int scan,
				      const char *sender,
				      const char *data, size_t len,
				      struct fsgroup *g,
				      char *name_r, size_t name_n,
				      struct err *err);

/* 1 when sub_deliver_over_quota would read the disk for one of the n
 * targets (a mailbox or domain quota), 0 when it answers at once. */
int sub_deliver_quota_io(const struct sub_target *t, size_t n);

/* Quota test before the data is known (RCPT with SIZE=), and under the
 * quota lock at delivery: 1 the mailbox is over its quota, 2 the domain
 * is over its domain quota, 0 fine, -1 error. Creates nothing. */
int sub_deliver_over_quota(const struct sub_target *t, long long size,
			   struct err *err);

#endif
