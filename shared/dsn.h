/* dsn: builds the RFC 3464 delivery status notification that returns a
 * message to its sender (multipart/report, RFC 6522), as text with CRLF
 * line ends, ready to queue with the null sender. Pure apart from the
 * output buffer: the caller supplies the time and the names. */
#ifndef DSN_H
#define DSN_H

#include <stddef.h>
#include <time.h>
#include "buf.h"
#include "err.h"

struct dsn_rcpt {
	const char *addr;        /* Final-Recipient */
	const char *orcpt;       /* RFC 3461 ORCPT ("rfc822;a@b") or NULL */
	const char *action;      /* "failed", "delayed" */
	const char *status;      /* "5.1.1"; NULL: from diag's code */
	const char *remote_mta;  /* host that answered, or NULL */
	const char *diag;        /* its reply, "550 5.1.1 unknown user", or
	                          * our own reason; NULL: none */
};

struct dsn_info {
	const char *reporting_mta;   /* our myhostname */
	const char *qid;             /* the returned message's queue id */
	const char *sender;          /* To: of the report (never "") */
	time_t arrival;              /* Arrival-Date */
	time_t now;                  /* Date: */
};

/* Append the whole report message (header and body) to out. The original
 * message's header section (up to the first empty line) is returned as
 * text/rfc822-headers. -1 (err set) when out's bound is hit or the input
 * is unusable (no recipients, null sender). */
int dsn_build(struct buf *out, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t nrcpt, const char *orig,
    size_t origlen, struct err *err);

/* RFC 3463 status for a reply text: its enhanced code when present,
 * else "X.0.0" from the reply code's class ("5.0.0" when unknown). out
 * needs 16 bytes. */
void dsn_status_from_reply(const char *reply, char out[16]);

/* RFC 5322 §3.3 date, e.g. "Thu, 26 Nov 2026 10:46:21 +0000". */
void dsn_date(time_t t, char *out, size_t n);

#endif
