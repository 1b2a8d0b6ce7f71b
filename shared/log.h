/* log: one line per event, Postfix maillog style, to syslog (mail
 * facility) and stderr. Lines about a message start with its queue id:
 *   log_info("%s: from=<%s>, size=%zu", qid, from, size);
 * Never log passwords or AUTH payloads. */
#ifndef LOG_H
#define LOG_H

/* ident: the program name ("mx-relay"); to_syslog / to_stderr choose sinks.
 * Under systemd, when stderr is the journal's stream (JOURNAL_STREAM names
 * its device and inode) and to_syslog is set, lines go to syslog only: the
 * journal would otherwise keep each line twice (once from the stream, once
 * from /dev/log). syslog is the copy kept because it carries the mail
 * facility and the priority that rsyslog's mail.log and the fail2ban jails
 * (deploy/fail2ban, SYSLOG_FACILITY=2) select on. With to_syslog off the
 * journal gets the stderr copy. Elsewhere (a terminal, a container, a
 * file) both sinks are written as asked. */
void log_open(const char *ident, int to_syslog, int to_stderr);

/* Pure: 1 when env (the JOURNAL_STREAM value, "DEVICE:INODE" in decimal,
 * systemd.exec(5)) names the file with this device and inode, else 0. */
int log_journal_stream_is(const char *env, unsigned long long dev,
			  unsigned long long ino);
void log_set_debug(int on);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
