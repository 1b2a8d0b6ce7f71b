/* log: syslog (LOG_MAIL) and stderr sinks, one line per call. The sinks
 * are chosen once at start-up; the settings are the only state here. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include "log.h"

static struct {
	char ident[32];
	int to_syslog, to_stderr, debug;
} log_conf = { "mail", 0, 1, 0 };

/* One decimal number of a "DEVICE:INODE" pair; NULL when there is none. */
static const char *log_journal_num(const char *p, unsigned long long *v)
{
	char *end;

	if (!isdigit((unsigned char)*p))
		return NULL;
	errno = 0;
	*v = strtoull(p, &end, 10);
	if (errno != 0)
		return NULL;
	return end;
}

int log_journal_stream_is(const char *env, unsigned long long dev,
			  unsigned long long ino)
{
	unsigned long long d, i;
	const char *p;

	if (env == NULL || (p = log_journal_num(env, &d)) == NULL ||
	    *p != ':' || (p = log_journal_num(p + 1, &i)) == NULL ||
	    *p != '\0')
		return 0;
	return d == dev && i == ino;
}

/* systemd.exec(5): JOURNAL_STREAM is inherited by children whose stderr
 * may go elsewhere; only the very file it names is the journal. */
static int log_stderr_is_journal(void)
{
	struct stat st;

	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return log_journal_stream_is(getenv("JOURNAL_STREAM"),
				     (unsigned long long)st.st_dev,
				     (unsigned long long)st.st_ino);
}

void log_open(const char *ident, int to_syslog, int to_stderr)
{
	snprintf(log_conf.ident, sizeof(log_conf.ident), "%s", ident);
	log_conf.to_syslog = to_syslog;
	log_conf.to_stderr = to_stderr;
	if (to_syslog && to_stderr && log_stderr_is_journal())
		log_conf.to_stderr = 0;
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
