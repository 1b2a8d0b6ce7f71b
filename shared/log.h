/* log: one line per event, Postfix maillog style, to syslog (mail
 * facility) and stderr. Lines about a message start with its queue id:
 *   log_info("%s: from=<%s>, size=%zu", qid, from, size);
 * Never log passwords or AUTH payloads. */
#ifndef LOG_H
#define LOG_H

/* ident: the program name ("mx-relay"); to_syslog / to_stderr choose sinks. */
void log_open(const char *ident, int to_syslog, int to_stderr);
void log_set_debug(int on);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
