/* err: the one error record library code fills and the edge (a session,
 * a tool's main) reports. temp=1 means "try again later" (a 4xx). */
#ifndef ERR_H
#define ERR_H

#include <stdarg.h>

struct err {
	int temp;        /* 1: temporary failure (4xx), 0: permanent (5xx) */
	char msg[200];
};

/* Fill err (may be NULL) and return -1, so callers can `return err_set(...)`. */
int err_set(struct err *err, int temp, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void err_clear(struct err *err);

#endif
