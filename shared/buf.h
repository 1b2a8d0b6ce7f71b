/* buf: growable byte buffers with a hard upper bound. The buffer owns p;
 * buf_free() releases it. p is always NUL-terminated when non-NULL, so a
 * buffer of text can be used as a C string. */
#ifndef BUF_H
#define BUF_H

#include <stddef.h>
#include <stdarg.h>

struct buf {
	char *p;
	size_t len, cap, max;   /* max = 0: no bound beyond memory */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);                 /* frees p, keeps max */
void buf_reset(struct buf *b);                /* len = 0, keeps memory */
/* Each returns 0, or -1 when the result would exceed max or memory ran out
 * (the buffer is then unchanged). */
int buf_reserve(struct buf *b, size_t extra);
/* The same, but the capacity doubles only up to step bytes, then grows by
 * step, and a need beyond that is met exactly: a big buffer (a message)
 * holds at most step bytes it does not use, and never more than max + 1.
 * step 0: as buf_reserve(). */
int buf_reserve_step(struct buf *b, size_t extra, size_t step);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Hand p to the caller (who frees it) and reset the buffer. */
char *buf_steal(struct buf *b);

#endif
