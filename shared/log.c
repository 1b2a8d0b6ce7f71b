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
	long pid;       /* set by log_open: no daemon forks after it */
} log_conf = { "mail", 0, 1, 0, 0 };

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
	log_conf.pid = (long)getpid();
	if (to_syslog && to_stderr && log_stderr_is_journal())
		log_conf.to_stderr = 0;
	if (to_syslog)
		openlog(log_conf.ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_debug(int on)
{
	log_conf.debug = on;
}

/* The stderr line's "Mon dd hh:mm:ss" stamp, formatted again only when
 * the second changes (per thread: workers log too). */
static const char *log_stamp(void)
{
	static __thread time_t last = (time_t)-1;
	static __thread char ts[32];
	time_t now = time(NULL);
	struct tm tm;

	if (now != last) {
		localtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
		last = now;
	}
	return ts;
}

static void log_emit(int prio, const char *tag, const char *fmt, va_list ap)
{
	char line[2048];
	char out[2200];
	size_t i, len;
	int n;

	vsnprintf(line, sizeof(line), fmt, ap);
	/* One event, one line: a CR or LF from the network must not forge a
	 * second log line. */
	for (i = 0; line[i] != '\0'; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	if (log_conf.to_syslog)
		syslog(prio, "%s%s", tag, line);
	if (log_conf.to_stderr) {
		/* one write(2) per line, so that lines of several threads
		 * never interleave (stderr is unbuffered: stdio would make
		 * one per piece) */
		n = snprintf(out, sizeof(out), "%s %s[%ld]: %s", log_stamp(),
		    log_conf.ident, log_conf.pid ? log_conf.pid :
		    (long)getpid(), tag);
		if (n < 0)
			return;
		len = (size_t)n < sizeof(out) - 1 ? (size_t)n : sizeof(out) - 1;
		i = strlen(line);
		if (i > sizeof(out) - 1 - len)
			i = sizeof(out) - 1 - len;
		memcpy(out + len, line, i);
		len += i;
		out[len++] = '\n';
		(void)!write(STDERR_FILENO, out, len);
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
