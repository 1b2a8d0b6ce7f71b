/* sendmail: the Sendmail-compatible command for cron, scripts and PHP's
 * mail(). It reads a message on standard input and submits it over SMTP
 * (shared/smtpc: STARTTLS, AUTH) to the local submission server named by
 * sendmail.cf's relayhost. When that server cannot take it now (down, or a
 * 4xx), the message goes to a local spool directory and "sendmail -q" (a
 * timer, or the next successful call) submits it later: nothing is lost.
 * A message the server refuses for good is kept there too (F.*), and the
 * refusal goes to standard error and the exit status.
 * The pure parts (data, header fields, spool format) are sendmail_msg.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "buf.h"
#include "cfg.h"
#include "log.h"
#include "map.h"
#include "milter.h"
#include "mime_addr.h"
#include "params.h"
#include "queue.h"
#include "sendmail_msg.h"
#include "smtpc.h"
#include "tls.h"

#define SENDMAIL_MAX_RCPT 1000
#define SENDMAIL_MAX_ADDRS 8

static char *var_relayhost, *var_tls_level, *var_tls_cafile;
static char *var_sasl_maps, *var_spool_dir, *var_non_smtpd_milters;
static long var_size_limit, var_connect_tmout, var_cmd_tmout, var_data_tmout;

static const struct cfg_param sendmail_params[] = {
	/* the local submission server: 587 with a login, or the intake */
	{ "relayhost", CFG_STR, "[127.0.0.1]:587", &var_relayhost, 0, 0 },
	{ "smtp_tls_security_level", CFG_STR, "encrypt", &var_tls_level, 0, 0 },
	{ "smtp_tls_CAfile", CFG_STR, "", &var_tls_cafile, 0, 0 },
	/* relayhost -> user:password (Postfix smtp_sasl_password_maps) */
	{ "smtp_sasl_password_maps", CFG_STR, "", &var_sasl_maps, 0, 0 },
	{ "sendmail_spool_directory", CFG_STR, "/var/spool/mailpair",
	  &var_spool_dir, 0, 0 },
	{ "message_size_limit", CFG_INT, "10240000", &var_size_limit, 1, 0 },
	{ "smtp_connect_timeout", CFG_TIME, "30s", &var_connect_tmout, 1, 0 },
	{ "smtp_helo_timeout", CFG_TIME, "60s", &var_cmd_tmout, 1, 0 },
	{ "smtp_data_done_timeout", CFG_TIME, "600s", &var_data_tmout, 1, 0 },
	/* Postfix applies these to mail from sendmail(1). Ours is not
	 * picked up from a maildrop but submitted over SMTP to relayhost,
	 * whose smtpd_milters see it: the value is only checked here (see
	 * sendmail_check_milters and sendmail(1)). */
	{ "non_smtpd_milters", CFG_STR, "", &var_non_smtpd_milters, 0, 0 },
	{ NULL, 0, NULL, NULL, 0, 0 }
};

static const struct cfg_param *const sendmail_tabs[] = {
	params_common, sendmail_params, NULL
};

static const char sendmail_usage_text[] =
"usage: sendmail [-t] [-i|-oi] [-f sender] [-F full_name] [-C config_dir] [--] [recipient ...]\n"
"       sendmail -q [-C config_dir]\n"
"Reads a message on standard input and submits it to the local submission\n"
"server (sendmail.cf: relayhost, smtp_sasl_password_maps). When the server\n"
"cannot take it now, it is spooled in sendmail_spool_directory and sent by\n"
"the next \"sendmail -q\" (exit 0: the message is safe).\n"
"  -t          add the recipients of the To:, Cc: and Bcc: fields (Bcc: is removed)\n"
"  -i, -oi     a line with a single \".\" does not end the message\n"
"  -f SENDER   envelope sender (also -r); default: the login of\n"
"              smtp_sasl_password_maps, else your login name @ $myorigin\n"
"  -F NAME     full name for the From: field added when the message has none\n"
"  -C DIR      config folder holding sendmail.cf (default /etc/mailpair)\n"
"  -q          submit the spooled messages (from a timer or cron)\n"
"  -v          log the SMTP conversation's results to standard error\n"
"Exit: 0 submitted or spooled; 64 usage; 65 bad message; 69 refused for good;\n"
"71 system error; 73 cannot spool; 78 configuration error.\n";

struct sendmail_opts {
	int extract, dot_ends, flush, verbose;
	const char *sender, *fullname, *confdir;
	char **rcpts;
	int nrcpt;
};

/* one submission's outcome, per recipient */
struct sendmail_job {
	struct queue_env env;
	const char *data;
	size_t len;
	int *codes;       /* final SMTP code per recipient */
	char **replies;
	int done;
};

static SSL_CTX *sendmail_tls;
static struct map *sendmail_sasl;

static void sendmail_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void sendmail_die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("sendmail: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void sendmail_usage(const char *why)
{
	if (why != NULL)
		fprintf(stderr, "sendmail: %s\n", why);
	fputs(sendmail_usage_text, stderr);
	exit(EX_USAGE);
}

/* Sendmail's option syntax: "-fADDR" or "-f ADDR", "-oi", several
 * options ignored as Postfix's sendmail ignores them. */
static void sendmail_args(int argc, char **argv, struct sendmail_opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->dot_ends = 1;
	o->confdir = getenv("MAIL_CONFIG") != NULL ? getenv("MAIL_CONFIG") :
	    "/etc/mailpair";
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *a = argv[i], **val = NULL;

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(sendmail_usage_text, stdout);
			exit(0);
		}
		switch (a[1]) {
		case 't': o->extract = 1; continue;
		case 'i': o->dot_ends = 0; continue;
		case 'v': o->verbose = 1; continue;
		case 'q': o->flush = 1; continue;
		case 'o':   /* -oi; -oem -oep -odb ...: no meaning here */
			if (strcmp(a, "-oi") == 0)
				o->dot_ends = 0;
			continue;
		case 'b':   /* -bm: deliver (the default); the rest is not here */
			if (strcmp(a, "-bm") != 0)
				sendmail_usage("only -bm is supported of the -b modes");
			continue;
		case 'f': case 'r': val = &o->sender; break;
		case 'F': val = &o->fullname; break;
		case 'C': val = &o->confdir; break;
		case 'B': case 'N': case 'R': case 'V': case 'X': case 'L': case 'O':
			/* body type, DSN, log options: taken and ignored */
			if (a[2] == '\0')
				i++;
			continue;
		default:
			sendmail_usage("unknown option");
		}
		if (a[2] != '\0')
			*val = a + 2;
		else if (i + 1 < argc)
			*val = argv[++i];
		else
			sendmail_usage("option needs a value");
	}
	o->rcpts = argv + i;
	o->nrcpt = argc - i;
}

/* A bare name gets @$myorigin, as Postfix's append_at_myorigin. */
static char *sendmail_qualify(const char *a)
{
	char *out;

	if (strchr(a, '@') != NULL)
		out = strdup(a);
	else if (asprintf(&out, "%s@%s", a, var_myorigin) < 0)
		out = NULL;
	if (out == NULL)
		sendmail_die(EX_OSERR, "out of memory");
	if (!sendmail_msg_addr_ok(out, strlen(out)))
		sendmail_die(EX_USAGE, "bad address: %s", a);
	return out;
}

static void sendmail_add_rcpt(struct queue_env *env, char *addr)
{
	size_t i;

	for (i = 0; i < env->nrcpt; i++)
		if (strcasecmp(env->rcpts[i].addr, addr) == 0) {
			free(addr);
			return;
		}
	if (env->nrcpt >= SENDMAIL_MAX_RCPT)
		sendmail_die(EX_DATAERR, "more than %d recipients", SENDMAIL_MAX_RCPT);
	env->rcpts = realloc(env->rcpts, (env->nrcpt + 1) * sizeof(*env->rcpts));
	if (env->rcpts == NULL)
		sendmail_die(EX_OSERR, "out of memory");
	memset(&env->rcpts[env->nrcpt], 0, sizeof(*env->rcpts));
	env->rcpts[env->nrcpt++].addr = addr;
}

/* -t: the mailboxes of an address list field (RFC 5322 §3.6.3). */
static void sendmail_rcpts_from(struct queue_env *env, const struct sendmail_field *f)
{
	struct mime_addr_parser ap;
	struct mime_addr a;
	char *s;
	int rc;

	mime_addr_init(&a);
	mime_addr_parser_init(&ap, f->value, f->value_len);
	while ((rc = mime_addr_next(&ap, &a)) == 1) {
		if (a.kind != MIME_ADDR_MAILBOX || a.local.len == 0)
			continue;
		if (asprintf(&s, "%s%s%s", a.local.p, a.domain.len ? "@" : "",
		    a.domain.len ? a.domain.p : "") < 0)
			sendmail_die(EX_OSERR, "out of memory");
		sendmail_add_rcpt(env, sendmail_qualify(s));
		free(s);
	}
	mime_addr_free(&a);
	if (rc < 0)
		sendmail_die(EX_OSERR, "out of memory");
}

/* The data to submit: the fields as given without Bcc: (RFC 5322 §3.6.3:
 * the Bcc: recipients must not be shown), plus From:, Date: and
 * Message-ID: when the message has none (RFC 5322 §3.6: From and Date are
 * required; RFC 6409 §8 lets the submission server add them, but it
 * cannot know our -F name). */
static void sendmail_build(const struct sendmail_opts *o, const struct buf *in,
    struct queue_env *env, struct buf *out)
{
	size_t hend = sendmail_msg_header_end(in->p, in->len), pos = 0, body;
	int has_from = 0, has_date = 0, has_msgid = 0;
	struct sendmail_field f;
	char date[64], rnd[8];
	time_t now = time(NULL);
	int ok = 0;

	while (sendmail_msg_field_next(in->p, hend, &pos, &f) == 1) {
		has_from |= sendmail_msg_field_is(&f, "From");
		has_date |= sendmail_msg_field_is(&f, "Date");
		has_msgid |= sendmail_msg_field_is(&f, "Message-ID");
		if (o->extract && (sendmail_msg_field_is(&f, "To") ||
		    sendmail_msg_field_is(&f, "Cc") || sendmail_msg_field_is(&f, "Bcc")))
			sendmail_rcpts_from(env, &f);
	}
	if (!has_from && o->fullname != NULL)
		ok |= buf_printf(out, "From: \"%s\" <%s>\r\n", o->fullname, env->sender);
	else if (!has_from)
		ok |= buf_printf(out, "From: <%s>\r\n", env->sender);
	if (!has_date) {
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", localtime(&now));
		ok |= buf_printf(out, "Date: %s\r\n", date);
	}
	if (!has_msgid) {
		if (RAND_bytes((unsigned char *)rnd, sizeof(rnd)) != 1)
			sendmail_die(EX_OSERR, "no random bytes");
		ok |= buf_printf(out, "Message-ID: <%lld.%ld.%02x%02x%02x%02x%02x%02x%02x%02x@%s>\r\n",
		    (long long)now, (long)getpid(), (unsigned char)rnd[0],
		    (unsigned char)rnd[1], (unsigned char)rnd[2], (unsigned char)rnd[3],
		    (unsigned char)rnd[4], (unsigned char)rnd[5], (unsigned char)rnd[6],
		    (unsigned char)rnd[7], var_myhostname);
	}
	/* copy the fields but Bcc:, then the rest */
	pos = body = 0;
	while (sendmail_msg_field_next(in->p, hend, &pos, &f) == 1) {
		if (!sendmail_msg_field_is(&f, "Bcc"))
			ok |= buf_append(out, in->p + f.start, f.end - f.start);
		body = f.end;
	}
	if (hend == 0 && (in->len < 2 || memcmp(in->p, "\r\n", 2) != 0))
		ok |= buf_append(out, "\r\n", 2);   /* no header section given */
	ok |= buf_append(out, in->p + body, in->len - body);
	if (ok < 0)
		sendmail_die(EX_DATAERR, "message larger than message_size_limit (%ld)",
		    var_size_limit);
}

/* ---- submission over SMTP ----------------------------------------------- */

/* "[host]:port", "host:port" or "host" (port 587): 0, or -1 if malformed. */
static int sendmail_relay_split(const char *relay, char *host, size_t hostsz,
    char *port, size_t portsz)
{
	const char *end;

	snprintf(port, portsz, "587");
	if (*relay == '[') {
		end = strchr(relay, ']');
		if (end == NULL)
			return -1;
		snprintf(host, hostsz, "%.*s", (int)(end - relay - 1), relay + 1);
		if (end[1] == ':')
			snprintf(port, portsz, "%s", end + 2);
		return 0;
	}
	end = strrchr(relay, ':');
	if (end != NULL && strchr(relay, ':') == end) {
		snprintf(host, hostsz, "%.*s", (int)(end - relay), relay);
		snprintf(port, portsz, "%s", end + 1);
	} else
		snprintf(host, hostsz, "%s", relay);
	return 0;
}

/* relayhost -> addresses to connect to, in the resolver's order. */
static size_t sendmail_resolve(const char *relay, struct smtpc_addr *out,
    size_t max, char *host, size_t hostsz)
{
	char port[16];
	struct addrinfo hints, *res, *ai;
	size_t n = 0;

	if (sendmail_relay_split(relay, host, hostsz, port, sizeof(port)) < 0)
		return 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return 0;
	for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
		memset(&out[n], 0, sizeof(out[n]));
		memcpy(&out[n].sa, ai->ai_addr, ai->ai_addrlen);
		snprintf(out[n].host, sizeof(out[n].host), "%s", host);
		n++;
	}
	freeaddrinfo(res);
	return n;
}

/* smtp_sasl_password_maps: the relayhost as written, without the port,
 * then the bare host (as the MX forwarder looks them up). */
static int sendmail_creds(const char *host, char **user_r, char **pass_r)
{
	char keys[3][300], *value = NULL, *sep;
	struct err e;
	int i;

	*user_r = *pass_r = NULL;
	if (sendmail_sasl == NULL)
		return 0;
	snprintf(keys[0], sizeof(keys[0]), "%s", var_relayhost);
	snprintf(keys[1], sizeof(keys[1]), "%s", var_relayhost);
	if ((sep = strrchr(keys[1], ':')) != NULL && strchr(keys[1], ']') < sep)
		*sep = '\0';
	snprintf(keys[2], sizeof(keys[2]), "%s", host);
	for (i = 0; i < 3; i++) {
		err_clear(&e);
		switch (map_lookup(sendmail_sasl, keys[i], &value, &e)) {
		case MAP_TEMPFAIL:
			return -1;
		case MAP_NOTFOUND:
			continue;
		case MAP_FOUND:
			break;
		}
		if ((sep = strchr(value, ':')) != NULL) {
			*user_r = strndup(value, (size_t)(sep - value));
			*pass_r = strdup(sep + 1);
		}
		explicit_bzero(value, strlen(value));
		free(value);
		return *user_r != NULL && *pass_r != NULL ? 1 : -1;
	}
	return 0;
}

static void sendmail_sent(void *arg, struct smtpc *c, const struct smtpc_result *res)
{
	struct sendmail_job *j = arg;
	size_t i;

	for (i = 0; i < res->n && i < j->env.nrcpt; i++) {
		j->codes[i] = res->r[i].code;
		j->replies[i] = strdup(res->r[i].reply != NULL ? res->r[i].reply : "");
	}
	j->done = 1;
}

/* Submits j's message to every recipient: codes[] and replies[] filled.
 * A failure before any SMTP answer counts as 451 for all. */
static void sendmail_submit(struct sendmail_job *j, int verbose)
{
	struct smtpc_addr addrs[SENDMAIL_MAX_ADDRS];
	struct smtpc_conf conf;
	struct event_base *base;
	struct smtpc *c;
	char host[256], *user = NULL, *pass = NULL;
	size_t n, i, *idx;
	struct err e;
	const char *why = NULL;

	j->codes = calloc(j->env.nrcpt, sizeof(*j->codes));
	j->replies = calloc(j->env.nrcpt, sizeof(*j->replies));
	idx = calloc(j->env.nrcpt, sizeof(*idx));
	base = event_base_new();
	if (j->codes == NULL || j->replies == NULL || idx == NULL || base == NULL)
		sendmail_die(EX_OSERR, "out of memory");
	n = sendmail_resolve(var_relayhost, addrs, SENDMAIL_MAX_ADDRS, host, sizeof(host));
	if (n == 0)
		why = "451 4.4.3 relayhost does not resolve";
	else if (sendmail_creds(host, &user, &pass) < 0)
		why = "451 4.3.0 smtp_sasl_password_maps lookup failed";
	memset(&conf, 0, sizeof(conf));
	conf.helo_name = var_myhostname;
	conf.tls_level = strcasecmp(var_tls_level, "none") == 0 ? SMTPC_TLS_NONE :
	    strcasecmp(var_tls_level, "may") == 0 ? SMTPC_TLS_MAY : SMTPC_TLS_ENCRYPT;
	conf.tls_ctx = sendmail_tls;
	conf.connect_timeout = (int)var_connect_tmout;
	conf.cmd_timeout = (int)var_cmd_tmout;
	conf.data_timeout = (int)var_data_tmout;
	err_clear(&e);
	c = why == NULL ? smtpc_new(base, &conf, addrs, n, user, pass, &e) : NULL;
	if (user != NULL)
		explicit_bzero(user, strlen(user));
	if (pass != NULL)
		explicit_bzero(pass, strlen(pass));
	free(user);
	free(pass);
	if (c != NULL) {
		for (i = 0; i < j->env.nrcpt; i++)
			idx[i] = i;
		smtpc_send(c, &j->env, j->data, j->len, idx, j->env.nrcpt,
		    sendmail_sent, j);
		while (!j->done && event_base_loop(base, EVLOOP_ONCE) == 0)
			;
		/* QUIT, and wait a few seconds at most for its reply, so the
		 * server logs a QUIT and not a lost connection */
		smtpc_free(c);
		smtpc_closing_drain(base);
	} else if (why == NULL)
		why = "451 4.3.0 cannot start the SMTP client";
	for (i = 0; i < j->env.nrcpt; i++)
		if (j->codes[i] == 0) {
			j->codes[i] = 451;
			j->replies[i] = strdup(why != NULL ? why : "451 4.4.2 no answer");
		}
	if (verbose)
		for (i = 0; i < j->env.nrcpt; i++)
			fprintf(stderr, "sendmail: to=<%s>, relay=%s, %s\n",
			    j->env.rcpts[i].addr, var_relayhost, j->replies[i]);
	free(idx);
	event_base_free(base);
}

/* Frees what j owns: the envelope's addresses and the per-recipient
 * answers (not data, which the caller's buffer holds). */
static void sendmail_job_free(struct sendmail_job *j)
{
	size_t i;

	for (i = 0; i < j->env.nrcpt; i++) {
		free(j->replies != NULL ? j->replies[i] : NULL);
		free(j->env.rcpts[i].addr);
	}
	free(j->replies);
	free(j->codes);
	free(j->env.rcpts);
	free(j->env.sender);
	memset(j, 0, sizeof(*j));
}

/* ---- the spool ------------------------------------------------------------ */

/* Writes head + data for the recipients whose code matches want (4 or 5)
 * as PREFIX.<time>.<pid>.<random> in the spool directory: tmp name, fsync,
 * rename, fsync of the directory (as shared/maildir.c). 0 or -1. */
static int sendmail_spool_write(const struct sendmail_job *j, int want,
    char prefix, char *path, size_t pathsz)
{
	struct buf b;
	char tmp[4096], *sel[SENDMAIL_MAX_RCPT];
	unsigned char rnd[6];
	size_t i, n = 0, off = 0;
	int fd, dfd, rc = -1;
	ssize_t w;

	for (i = 0; i < j->env.nrcpt; i++)
		if (j->codes == NULL || j->codes[i] / 100 == want)
			sel[n++] = j->env.rcpts[i].addr;
	buf_init(&b, 0);
	if (n == 0 || sendmail_spool_head(&b, j->env.sender, sel, n) < 0 ||
	    buf_append(&b, j->data, j->len) < 0 || RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto out;
	snprintf(tmp, sizeof(tmp), "%s/T.%lld.%ld.%02x%02x%02x%02x%02x%02x",
	    var_spool_dir, (long long)time(NULL), (long)getpid(), rnd[0], rnd[1],
	    rnd[2], rnd[3], rnd[4], rnd[5]);
	snprintf(path, pathsz, "%s", tmp);
	path[strlen(var_spool_dir) + 1] = prefix;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	while (off < b.len && (w = write(fd, b.p + off, b.len - off)) > 0)
		off += (size_t)w;
	if (off != b.len || fsync(fd) < 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		close(fd);
		goto out;
	}
	/* the new name must be on disk too: fsync the directory; a user
	 * who may write but not read it (mode 1733) flushes the whole file
	 * system instead */
	if ((dfd = open(var_spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		rc = fsync(dfd);
		close(dfd);
	} else
		rc = syncfs(fd);
	if (close(fd) < 0)
		rc = -1;
out:
	buf_free(&b);
	return rc;
}

/* Report the recipients refused for good (5xx); 1 when there was one. */
static int sendmail_report_refused(const struct sendmail_job *j, const char *what)
{
	size_t i;
	int any = 0;

	for (i = 0; i < j->env.nrcpt; i++)
		if (j->codes[i] / 100 == 5) {
			fprintf(stderr, "sendmail: %s to <%s> refused: %s\n", what,
			    j->env.rcpts[i].addr, j->replies[i]);
			any = 1;
		}
	return any;
}

/* One spooled message: 0 done (sent, or refused and kept as F.*), 1 still
 * deferred, -1 not ours to read or not a spool file. */
static int sendmail_flush_one(const char *name, int verbose)
{
	char path[4096], kept[4096];
	struct sendmail_job j;
	struct stat st, st2;
	struct buf b;
	enum sendmail_spool_item kind;
	const char *val;
	size_t vlen, pos = 0;
	char tmpbuf[65536];
	ssize_t r;
	int fd, rc = -1, item;

	snprintf(path, sizeof(path), "%s/%s", var_spool_dir, name);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	/* another "sendmail -q" may hold it; and it may have sent and removed
	 * it between our open and our lock: then the name is gone */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &st) < 0 ||
	    !S_ISREG(st.st_mode) || stat(path, &st2) < 0 || st.st_ino != st2.st_ino) {
		close(fd);
		return -1;
	}
	buf_init(&b, (size_t)var_size_limit + 65536);
	while ((r = read(fd, tmpbuf, sizeof(tmpbuf))) > 0)
		if (buf_append(&b, tmpbuf, (size_t)r) < 0)
			break;
	memset(&j, 0, sizeof(j));
	if (r != 0 || b.len == 0)
		goto out;
	while ((item = sendmail_spool_next(b.p, b.len, &pos, &kind, &val, &vlen)) == 1) {
		char *a = strndup(val, vlen);
		if (a == NULL)
			goto out;
		if (kind == SENDMAIL_SPOOL_SENDER) {
			free(j.env.sender);
			j.env.sender = a;
		} else
			sendmail_add_rcpt(&j.env, a);
	}
	if (item < 0 || j.env.sender == NULL || j.env.nrcpt == 0) {
		fprintf(stderr, "sendmail: %s: not a spool file, left alone\n", path);
		goto out;
	}
	queue_qid_new(j.env.qid);
	j.data = b.p + pos;
	j.len = b.len - pos;
	for (vlen = 0; vlen < j.len; vlen++)
		if ((unsigned char)j.data[vlen] >= 0x80)
			j.env.body8bit = 1;
	sendmail_submit(&j, verbose);
	rc = 0;
	for (vlen = 0; vlen < j.env.nrcpt; vlen++)
		if (j.codes[vlen] / 100 != 2 && j.codes[vlen] / 100 != 5)
			rc = 1;
	/* the refused recipients go to an F.* copy, the deferred ones to a
	 * new Q.* file; the original goes only once both are safe */
	if (sendmail_report_refused(&j, "spooled message") &&
	    sendmail_spool_write(&j, 5, 'F', kept, sizeof(kept)) < 0) {
		fprintf(stderr, "sendmail: %s: cannot keep the refused message: %s\n",
		    path, strerror(errno));
		rc = 1;
		goto out;
	}
	if (rc == 1 && sendmail_spool_write(&j, 4, 'Q', kept, sizeof(kept)) < 0)
		goto out;   /* retried whole: sending twice beats losing one */
	unlink(path);
out:
	sendmail_job_free(&j);
	buf_free(&b);
	close(fd);
	return rc;
}

/* Every Q.* file we may read, oldest name first. Returns how many are
 * still deferred. */
static int sendmail_flush(int verbose, int quiet)
{
	struct dirent **names;
	int n, i, left = 0;

	n = scandir(var_spool_dir, &names, NULL, alphasort);
	if (n < 0) {
		if (!quiet)
			fprintf(stderr, "sendmail: %s: %s\n", var_spool_dir, strerror(errno));
		return quiet ? 0 : -1;
	}
	for (i = 0; i < n; i++) {
		if (strncmp(names[i]->d_name, "Q.", 2) == 0 &&
		    sendmail_flush_one(names[i]->d_name, verbose) == 1)
			left++;
		free(names[i]);
	}
	free(names);
	return left;
}

/* ---- main ------------------------------------------------------------------ */

/* non_smtpd_milters: the same socket syntax as smtpd_milters, so that a
 * value copied from a Postfix main.cf is accepted or refused at once.
 * sendmail never connects to them itself: the submission server that
 * relayhost names runs its smtpd_milters on this mail, which is what
 * Postfix's non_smtpd_milters achieves (one milter pass per message;
 * calling them here too would sign or score the message twice). */
static void sendmail_check_milters(void)
{
	char **v = cfg_list_split(var_non_smtpd_milters);
	struct err e;

	if (v == NULL)
		sendmail_die(EX_OSERR, "out of memory");
	err_clear(&e);
	for (size_t i = 0; v[i] != NULL; i++)
		if (milter_spec_check(v[i], &e) < 0)
			sendmail_die(EX_CONFIG, "non_smtpd_milters: bad socket "
			    "\"%s\" (inet:host:port or unix:/path)", v[i]);
	cfg_list_free(v);
}

static void sendmail_setup(const char *confdir, int verbose)
{
	char path[4096];
	struct err e;
	int level_none;

	err_clear(&e);
	snprintf(path, sizeof(path), "%s/sendmail.cf", confdir);
	/* only a missing file means "the defaults": one we may not read is
	 * an error, never a silent run without the configured login */
	if (cfg_load(sendmail_tabs, access(path, F_OK) == 0 || errno != ENOENT ?
	    path : NULL, &e) < 0)
		sendmail_die(EX_CONFIG, "%s", e.msg);
	/* the SMTP client's own log lines: syslog, and stderr only with -v */
	log_open("sendmail", var_syslog_enable, verbose);
	sendmail_check_milters();
	level_none = strcasecmp(var_tls_level, "none") == 0;
	if (!level_none && strcasecmp(var_tls_level, "may") != 0 &&
	    strcasecmp(var_tls_level, "encrypt") != 0 &&
	    strcasecmp(var_tls_level, "verify") != 0)
		sendmail_die(EX_CONFIG, "smtp_tls_security_level: bad value \"%s\" "
		    "(none, may, encrypt, verify)", var_tls_level);
	if (!level_none) {
		sendmail_tls = tls_client_ctx(*var_tls_cafile ? var_tls_cafile : NULL,
		    strcasecmp(var_tls_level, "verify") == 0, &e);
		if (sendmail_tls == NULL)
			sendmail_die(EX_CONFIG, "%s", e.msg);
	}
	if (*var_sasl_maps && (sendmail_sasl = map_open(var_sasl_maps, &e)) == NULL)
		sendmail_die(EX_CONFIG, "smtp_sasl_password_maps: %s", e.msg);
}

/* Without -f: the login of smtp_sasl_password_maps when there is one (the
 * submission server lets a login send as itself: reject_sender_login_
 * mismatch), else the user's name @ $myorigin as Sendmail does. */
static char *sendmail_default_sender(void)
{
	struct passwd *pw;
	char host[256], port[16], *user = NULL, *pass = NULL;

	if (sendmail_relay_split(var_relayhost, host, sizeof(host), port,
	    sizeof(port)) == 0 && sendmail_creds(host, &user, &pass) == 1) {
		explicit_bzero(pass, strlen(pass));
		free(pass);
		if (strchr(user, '@') != NULL && sendmail_msg_addr_ok(user, strlen(user)))
			return user;
		free(user);
	}
	pw = getpwuid(getuid());
	if (pw == NULL)
		sendmail_die(EX_OSERR, "who are you? (uid %ld has no passwd entry)",
		    (long)getuid());
	return sendmail_qualify(pw->pw_name);
}

int main(int argc, char **argv)
{
	struct sendmail_opts o;
	struct sendmail_job j;
	struct buf raw, in, out;
	char chunk[65536], path[4096];
	size_t i;
	ssize_t r;
	int i_arg, code = 0;

	sendmail_args(argc, argv, &o);
	sendmail_setup(o.confdir, o.verbose);
	if (o.flush) {
		int left = sendmail_flush(o.verbose, 0);
		return left < 0 ? EX_OSERR : 0;
	}
	memset(&j, 0, sizeof(j));
	j.env.sender = o.sender == NULL ? sendmail_default_sender() :
	    strcmp(o.sender, "<>") == 0 || *o.sender == '\0' ? strdup("") :
	    sendmail_qualify(o.sender);
	for (i_arg = 0; i_arg < o.nrcpt; i_arg++)
		sendmail_add_rcpt(&j.env, sendmail_qualify(o.rcpts[i_arg]));

	buf_init(&raw, (size_t)var_size_limit * 2);
	while ((r = read(0, chunk, sizeof(chunk))) > 0)
		if (buf_append(&raw, chunk, (size_t)r) < 0)
			sendmail_die(EX_DATAERR, "message larger than message_size_limit (%ld)",
			    var_size_limit);
	if (r < 0)
		sendmail_die(EX_OSERR, "reading standard input: %s", strerror(errno));
	buf_init(&in, (size_t)var_size_limit);
	buf_init(&out, (size_t)var_size_limit);
	if (sendmail_msg_crlf(raw.p != NULL ? raw.p : "", raw.len, o.dot_ends, &in) < 0)
		sendmail_die(EX_DATAERR, "message larger than message_size_limit (%ld)",
		    var_size_limit);
	buf_free(&raw);
	if (in.p == NULL && buf_puts(&in, "") < 0)
		sendmail_die(EX_OSERR, "out of memory");
	sendmail_build(&o, &in, &j.env, &out);
	if (j.env.nrcpt == 0)
		sendmail_die(EX_USAGE, "no recipients (give them as arguments, or use -t)");
	queue_qid_new(j.env.qid);
	j.data = out.p;
	j.len = out.len;
	for (i = 0; i < j.len; i++)
		if ((unsigned char)j.data[i] >= 0x80)
			j.env.body8bit = 1;

	sendmail_submit(&j, o.verbose);
	if (sendmail_report_refused(&j, "message")) {
		code = EX_UNAVAILABLE;
		if (sendmail_spool_write(&j, 5, 'F', path, sizeof(path)) == 0)
			fprintf(stderr, "sendmail: a copy is kept in %s\n", path);
	}
	for (i = 0; i < j.env.nrcpt; i++)
		if (j.codes[i] / 100 == 4)
			break;
	if (i < j.env.nrcpt) {
		if (sendmail_spool_write(&j, 4, 'Q', path, sizeof(path)) < 0)
			sendmail_die(EX_CANTCREAT, "the server cannot take the message "
			    "now (%s) and it cannot be spooled in %s: %s",
			    j.replies[i], var_spool_dir, strerror(errno));
		if (o.verbose)
			fprintf(stderr, "sendmail: spooled as %s\n", path);
	} else if (code == 0) {
		/* the server is up: send what waited, where we may read it */
		sendmail_flush(o.verbose, 1);
	}
	sendmail_job_free(&j);
	buf_free(&in);
	buf_free(&out);
	return code;
}
