/* log: syslog (LOG_MAIL) and stderr sinks, one line per call. The sinks
 * are chosen once at start-up; the settings are the only state here. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include "log.h"

static struct {
	char ident[32];
	int to_syslog, to_stderr, debug;
} log_conf = { "mail", 0, 1, 0 };

void log_open(const char *ident, int to_syslog, int to_stderr)
{
	snprintf(log_conf.ident, sizeof(log_conf.ident), "%s", ident);
	log_conf.to_syslog = to_syslog;
	log_conf.to_stderr = to_stderr;
	if (to_syslog)
		openlog(log_conf.ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_debug(int on)
{
	log_conf.debug = on;
}

static void log_emit(int prio, const char *tag, const char *fmt, va_list ap)
{
	char line[2048];
	char ts[32];
	struct tm tm;
	time_t now;
	size_t i;

	vsnprintf(line, sizeof(line), fmt, ap);
	/* One event, one line: a CR or LF from the network must not forge a
	 * second log line. */
	for (i = 0; line[i] != '\0'; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	if (log_conf.to_syslog)
		syslog(prio, "%s%s", tag, line);
	if (log_conf.to_stderr) {
		now = time(NULL);
		localtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
		fprintf(stderr, "%s %s[%ld]: %s%s\n", ts, log_conf.ident,
		    (long)getpid(), tag, line);
	}
}

#define LOG_FN(name, prio, tag, gate)                                   \
	void name(const char *fmt, ...)                                 \
	{                                                               \
		va_list ap;                                             \
		if (!(gate))                                            \
			return;                                         \
		va_start(ap, fmt);                                      \
		log_emit(prio, tag, fmt, ap);                           \
		va_end(ap);                                             \
	}

LOG_FN(log_info, LOG_INFO, "", 1)
LOG_FN(log_warn, LOG_WARNING, "warning: ", 1)
LOG_FN(log_error, LOG_ERR, "error: ", 1)
LOG_FN(log_debug, LOG_DEBUG, "debug: ", log_conf.debug)
