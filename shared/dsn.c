/* dsn: the bounce message. RFC 3464 fixes the machine-readable part,
 * RFC 6522 the multipart/report wrapper, RFC 3834 §5 the Auto-Submitted
 * header that keeps auto-responders from answering a bounce. */
#include <stdio.h>
#include <string.h>
#include "dsn.h"
#include "smtp_reply.h"

void dsn_date(time_t t, char *out, size_t n)
{
	/* English names regardless of locale (RFC 5322 §3.3). */
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat" };
	static const char *const mons[] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, n, "%s, %d %s %d %02d:%02d:%02d +0000",
	    days[tm.tm_wday % 7], tm.tm_mday, mons[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void dsn_status_from_reply(const char *reply, char out[16])
{
	int c, s, d;
	size_t len = reply != NULL ? strlen(reply) : 0;

	if (len >= 4 && reply[0] >= '2' && reply[0] <= '5' &&
	    (reply[3] == ' ' || reply[3] == '-') &&
	    smtp_reply_enhanced(reply + 4, len - 4, &c, &s, &d) > 0) {
		snprintf(out, 16, "%d.%d.%d", c, s, d);
		return;
	}
	if (len >= 1 && (reply[0] == '4' || reply[0] == '5' || reply[0] == '2'))
		snprintf(out, 16, "%c.0.0", reply[0]);
	else
		snprintf(out, 16, "5.0.0");
}

/* Append s with CR, LF and other controls replaced by spaces: the report
 * fields are one line each (RFC 3464 §2.1.1). */
static int dsn_put_line(struct buf *b, const char *s)
{
	size_t i;

	for (i = 0; s != NULL && s[i] != '\0'; i++)
		if (buf_putc(b, (unsigned char)s[i] < 0x20 ? ' ' : s[i]) < 0)
			return -1;
	return 0;
}

/* The original header section: everything up to the empty line, with bare
 * LFs made CRLF so the part is well-formed. */
static int dsn_put_headers(struct buf *b, const char *orig, size_t len)
{
	size_t i, start = 0;

	for (i = 0; i < len; i++) {
		if (orig[i] != '\n')
			continue;
		size_t end = i > start && orig[i - 1] == '\r' ? i - 1 : i;
		if (end == start)
			return 0;  /* the empty line ends the header */
		if (buf_append(b, orig + start, end - start) < 0 ||
		    buf_puts(b, "\r\n") < 0)
			return -1;
		start = i + 1;
	}
	if (start < len && (buf_append(b, orig + start, len - start) < 0 ||
	    buf_puts(b, "\r\n") < 0))
		return -1;
	return 0;
}

static int dsn_put_human(struct buf *b, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t n)
{
	size_t i;
	int rc = 0;

	rc |= buf_printf(b, "This is the mail system at host %s.\r\n\r\n"
	    "I'm sorry to have to inform you that your message could not\r\n"
	    "be delivered to one or more recipients. It's attached below.\r\n"
	    "\r\nFor further assistance, please send mail to postmaster.\r\n"
	    "\r\n", info->reporting_mta);
	for (i = 0; i < n; i++) {
		rc |= buf_puts(b, "<");
		rc |= dsn_put_line(b, rcpts[i].addr);
		rc |= buf_puts(b, ">: ");
		if (rcpts[i].remote_mta != NULL) {
			rc |= buf_puts(b, "host ");
			rc |= dsn_put_line(b, rcpts[i].remote_mta);
			rc |= buf_puts(b, " said: ");
		}
		rc |= dsn_put_line(b, rcpts[i].diag != NULL ? rcpts[i].diag :
		    "delivery failed");
		rc |= buf_puts(b, "\r\n\r\n");
	}
	return rc < 0 ? -1 : 0;
}

/* RFC 3464 §2.2 per-message and §2.3 per-recipient fields. */
static int dsn_put_status(struct buf *b, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t n)
{
	char date[64], st[16];
	size_t i;
	int rc = 0;

	dsn_date(info->arrival, date, sizeof(date));
	rc |= buf_puts(b, "Reporting-MTA: dns; ");
	rc |= dsn_put_line(b, info->reporting_mta);
	rc |= buf_puts(b, "\r\nX-Queue-ID: ");
	rc |= dsn_put_line(b, info->qid);
	rc |= buf_printf(b, "\r\nArrival-Date: %s\r\n", date);
	for (i = 0; i < n; i++) {
		const struct dsn_rcpt *r = &rcpts[i];
		if (r->status != NULL)
			snprintf(st, sizeof(st), "%s", r->status);
		else
			dsn_status_from_reply(r->diag, st);
		rc |= buf_puts(b, "\r\nFinal-Recipient: rfc822; ");
		rc |= dsn_put_line(b, r->addr);
		if (r->orcpt != NULL && strchr(r->orcpt, ';') != NULL) {
			rc |= buf_puts(b, "\r\nOriginal-Recipient: ");
			rc |= dsn_put_line(b, r->orcpt);
		}
		rc |= buf_puts(b, "\r\nAction: ");
		rc |= dsn_put_line(b, r->action != NULL ? r->action : "failed");
		rc |= buf_printf(b, "\r\nStatus: %s\r\n", st);
		if (r->remote_mta != NULL) {
			rc |= buf_puts(b, "Remote-MTA: dns; ");
			rc |= dsn_put_line(b, r->remote_mta);
			rc |= buf_puts(b, "\r\n");
		}
		if (r->diag != NULL) {
			/* "smtp" only for a real server reply; our own reason
			 * is X-Unix-like text (RFC 3464 §2.3.6). */
			rc |= buf_puts(b, r->remote_mta != NULL ?
			    "Diagnostic-Code: smtp; " : "Diagnostic-Code: X-mailpair; ");
			rc |= dsn_put_line(b, r->diag);
			rc |= buf_puts(b, "\r\n");
		}
	}
	return rc < 0 ? -1 : 0;
}

int dsn_build(struct buf *out, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t nrcpt, const char *orig,
    size_t origlen, struct err *err)
{
	char date[64], boundary[128];
	int rc = 0;

	if (nrcpt == 0)
		return err_set(err, 0, "dsn: no recipients to report");
	if (info->sender == NULL || info->sender[0] == '\0')
		return err_set(err, 0, "dsn: never to the null sender");
	dsn_date(info->now, date, sizeof(date));
	snprintf(boundary, sizeof(boundary), "%s.%lld/%s", info->qid,
	    (long long)info->now, info->reporting_mta);
	rc |= buf_printf(out, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n",
	    info->reporting_mta);
	rc |= buf_puts(out, "To: ");
	rc |= dsn_put_line(out, info->sender);
	rc |= buf_printf(out, "\r\nSubject: Undelivered Mail Returned to Sender\r\n"
	    "Date: %s\r\nMessage-ID: <%s.%lld@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n\r\n"
	    "This is a MIME-encapsulated message.\r\n\r\n",
	    date, info->qid, (long long)info->now, info->reporting_mta,
	    boundary);
	rc |= buf_printf(out, "--%s\r\nContent-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n", boundary);
	rc |= dsn_put_human(out, info, rcpts, nrcpt);
	rc |= buf_printf(out, "--%s\r\nContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n", boundary);
	rc |= dsn_put_status(out, info, rcpts, nrcpt);
	rc |= buf_printf(out, "\r\n--%s\r\nContent-Description: Undelivered "
	    "Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n",
	    boundary);
	rc |= dsn_put_headers(out, orig, origlen);
	rc |= buf_printf(out, "\r\n--%s--\r\n", boundary);
	if (rc < 0)
		return err_set(err, 1, "dsn: report too large or out of memory");
	return 0;
}
