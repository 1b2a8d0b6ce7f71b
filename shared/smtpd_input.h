/* smtpd_input: the SMTP session's input framing over a libevent input
 * buffer: command lines (smtp_line_read) and DATA bodies
 * (smtp_line_data_feed). Every call makes progress, whatever the chain
 * layout (bufferevent_openssl can leave an empty chain in front), or says
 * it needs more input. The session owns every buffer; the fuzz target
 * fuzz_smtpd_input drives this same code. */
#ifndef SMTPD_INPUT_H
#define SMTPD_INPUT_H

#include <stddef.h>
#include "buf.h"
#include "smtp_line.h"

struct evbuffer;

/* The next command line from in, copied to line (room for max bytes) as
 * *len_r bytes without its line end, and drained:
 *   SMTP_OK            a line;
 *   SMTP_NEED_MORE     no complete line in in (the tail of an over-long
 *                      line was dropped as far as it came);
 *   SMTP_ERR_TOO_LONG  max bytes without a line end were dropped: answer
 *                      500 once; the rest of that line goes on being
 *                      dropped by the next calls;
 *   SMTP_ERR_BARE_LF / SMTP_ERR_BARE_CR: nothing drained; end the session. */
enum smtp_rc smtpd_input_line(struct evbuffer *in, struct smtp_line_reader *r,
                              size_t max, char *line, size_t *len_r);

/* Feed the DATA reader from in and drain what it took. The body is
 * appended to msg (kept NUL-terminated), which grows by at most step bytes
 * at a time and never past msg->max; msg NULL reads and discards, to stay
 * in sync. SMTP_OK: the end of data was drained (the bytes after it are
 * the next command); SMTP_NEED_MORE: in is empty; SMTP_ERR_TOO_LONG: msg
 * cannot take more (its max, or memory): the caller drops the message and
 * calls again with msg NULL. */
enum smtp_rc smtpd_input_data(struct evbuffer *in, struct smtp_line_data *d,
                              struct buf *msg, size_t step);

#endif
