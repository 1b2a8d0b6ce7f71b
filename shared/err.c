/* err: filling the shared error record. */
#include <stdio.h>
#include "err.h"

int err_set(struct err *err, int temp, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->temp = temp;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

void err_clear(struct err *err)
{
	if (err == NULL)
		return;
	err->temp = 0;
	err->msg[0] = '\0';
}
