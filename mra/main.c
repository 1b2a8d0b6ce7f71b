/* mra: the Mail Retrieval Agent daemon: IMAP (143, STARTTLS), IMAPS (993),
 * POP3 (110) and POP3S (995) over the Maildirs that submission writes.
 * Loads DIR/mra.cf, binds, drops to mail_owner, then serves everything
 * from one libevent loop with a worker pool for blocking work. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <event2/event.h>
#include "cfg.h"
#include "evbase.h"
#include "imap_session.h"
#include "listen.h"
#include "log.h"
#include "loginfail.h"
#include "map.h"
#include "mra_userip.h"
#include "mstore.h"
#include "params.h"
#include "passdb.h"
#include "pop3_session.h"
#include "sasl_glue.h"
#include "tls.h"
#include "vlookup.h"
#include "work.h"

static long var_imap_listen, var_imaps_listen, var_pop3_listen,
	var_pop3s_listen;
static char *var_ssl, *var_ssl_cert, *var_ssl_key, *var_tls_cert_file,
	*var_tls_key_file;
static int var_disable_plaintext_auth;
static char *var_mail_location, *var_virtual_mailbox_base,
	*var_virtual_mailbox_maps, *var_virtual_password_maps,
	*var_virtual_mailbox_limit_maps;
static long var_message_size_limit, var_imap_max_line_length,
	var_imap_literal_limit, var_imap_login_literal_limit,
	var_login_timeout, var_imap_idle_timeout,
	var_imap_max_commands_per_second, var_auth_max_failures,
	var_worker_threads, var_pop3_timeout, var_mra_conn_limit,
	var_mra_client_conn_limit, var_mail_max_userip;

static const struct cfg_param main_params[] = {
	{ "imap_listen", CFG_INT, "143", &var_imap_listen, 0, 65535 },
	{ "imaps_listen", CFG_INT, "993", &var_imaps_listen, 0, 65535 },
	{ "pop3_listen", CFG_INT, "110", &var_pop3_listen, 0, 65535 },
	{ "pop3s_listen", CFG_INT, "995", &var_pop3s_listen, 0, 65535 },
	{ "ssl", CFG_STR, "yes", &var_ssl, 0, 0 },
	{ "ssl_cert", CFG_STR, "", &var_ssl_cert, 0, 0 },
	{ "ssl_key", CFG_STR, "", &var_ssl_key, 0, 0 },
	{ "smtpd_tls_cert_file", CFG_STR, "", &var_tls_cert_file, 0, 0 },
	{ "smtpd_tls_key_file", CFG_STR, "", &var_tls_key_file, 0, 0 },
	{ "disable_plaintext_auth", CFG_BOOL, "yes",
	  &var_disable_plaintext_auth, 0, 0 },
	{ "mail_location", CFG_STR, "", &var_mail_location, 0, 0 },
	{ "virtual_mailbox_base", CFG_STR, "/var/mail/vhosts",
	  &var_virtual_mailbox_base, 0, 0 },
	{ "virtual_mailbox_maps", CFG_STR, "", &var_virtual_mailbox_maps, 0, 0 },
	{ "virtual_password_maps", CFG_STR, "", &var_virtual_password_maps,
	  0, 0 },
	{ "virtual_mailbox_limit_maps", CFG_STR, "",
	  &var_virtual_mailbox_limit_maps, 0, 0 },
	{ "message_size_limit", CFG_INT, "52428800", &var_message_size_limit,
	  1024, 0 },
	{ "imap_max_line_length", CFG_INT, "65536", &var_imap_max_line_length,
	  1024, 16777216 },
	{ "imap_literal_limit", CFG_INT, "65536", &var_imap_literal_limit,
	  1024, 16777216 },
	/* before login only LOGIN and AUTHENTICATE take literals: a few KB
	 * (Dovecot's imap-login keeps to such a limit too) */
	{ "imap_login_literal_limit", CFG_INT, "8192",
	  &var_imap_login_literal_limit, 256, 1048576 },
	{ "login_timeout", CFG_TIME, "60s", &var_login_timeout, 1, 0 },
	{ "imap_idle_timeout", CFG_TIME, "30m", &var_imap_idle_timeout, 1, 0 },
	{ "imap_max_commands_per_second", CFG_INT, "1000",
	  &var_imap_max_commands_per_second, 0, 0 },
	/* per connection, then BYE; across connections: loginfail_params */
	{ "auth_max_failures", CFG_INT, "3", &var_auth_max_failures, 0, 0 },
	/* IMAP and POP3 each count their connections against these (like
	 * Postfix's smtpd_client_connection_count_limit and
	 * smtpd_connection_limit); per address high: offices behind NAT */
	{ "mra_client_connection_count_limit", CFG_INT, "100",
	  &var_mra_client_conn_limit, 0, 0 },
	{ "mra_connection_limit", CFG_INT, "5000", &var_mra_conn_limit, 0, 0 },
	/* Dovecot: logged-in sessions of one user from one address */
	{ "mail_max_userip_connections", CFG_INT, "10", &var_mail_max_userip,
	  0, 0 },
	{ "mra_worker_threads", CFG_INT, "8", &var_worker_threads, 1, 64 },
	{ "pop3_timeout", CFG_TIME, "10m", &var_pop3_timeout, 1, 0 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};

static const struct cfg_param *const main_tabs[] = {
	params_common, main_params, loginfail_params, NULL
};

static const char main_help[] =
	"Usage: mra [-c DIR] [-n]\n"
	"       mra -h | --help\n"
	"The Mail Retrieval Agent: IMAP4rev1 (143, STARTTLS; 993, TLS) and POP3\n"
	"(110, STLS; 995, TLS) over the Maildir++ mailboxes submission writes.\n"
	"  -c DIR      configuration folder, default /etc/mailpair; the\n"
	"              parameters are read from DIR/mra.cf\n"
	"  -n          print the non-default settings (like postconf -n), exit\n"
	"  -h, --help  this help\n"
	"Runs in the foreground; logs to syslog (mail) and stderr. Signals:\n"
	"TERM/INT stop; HUP re-reads ssl_cert and ssl_key (or\n"
	"smtpd_tls_cert_file and smtpd_tls_key_file) for new TLS sessions.\n"
	"Parameters (Dovecot's and Postfix's names): mra(8) and the README;\n"
	"samples in /usr/local/share/mailpair/examples.\n";

struct main_ctx {
	struct map *mailbox_map;
	struct map *limit_map;
	struct passdb *passdb;
	struct loginfail *loginfail;   /* memory only: mra has no Redis */
	struct mra_userip *userip;     /* shared by IMAP and POP3 */
};

/* A map value or user part must not climb out of the mailbox base. */
static int main_path_safe(const char *p)
{
	const char *s = p;

	if (*p == '\0' || *p == '/')
		return 0;
	while (*s != '\0') {
		size_t n = strcspn(s, "/");

		if ((n == 2 && s[0] == '.' && s[1] == '.') ||
		    (n == 1 && s[0] == '.'))
			return 0;
		s += n;
		while (*s == '/')
			s++;
	}
	return 1;
}

/* mail_location = maildir:/var/mail/vhosts/%d/%n (Dovecot %u %n %d) */
static int main_expand_location(const char *loc, const char *user, char *out,
				size_t n, struct err *err)
{
	const char *at = strrchr(user, '@');
	size_t o = 0, len;
	char local[256], domain[256];
	const char *add;

	if (strncasecmp(loc, "maildir:", 8) == 0)
		loc += 8;
	len = at != NULL ? (size_t)(at - user) : strlen(user);
	if (len >= sizeof(local) || (at != NULL && strlen(at + 1) >= sizeof(domain)))
		return err_set(err, 0, "user name too long");
	memcpy(local, user, len);
	local[len] = '\0';
	snprintf(domain, sizeof(domain), "%s", at != NULL ? at + 1 : "");
	for (len = 0; domain[len] != '\0'; len++)
		if (domain[len] >= 'A' && domain[len] <= 'Z')
			domain[len] = (char)(domain[len] + 32);
	if (strchr(user, '/') != NULL || !main_path_safe(local) ||
	    (domain[0] != '\0' && !main_path_safe(domain)))
		return err_set(err, 0, "unsafe user name");
	for (; *loc != '\0' && *loc != ':'; loc++) {
		char tmp[2] = { *loc, '\0' };

		add = tmp;
		if (*loc == '%' && loc[1] != '\0') {
			loc++;
			add = *loc == 'u' ? user : *loc == 'n' ? local :
				*loc == 'd' ? domain : *loc == '%' ? "%" : "";
		}
		len = strlen(add);
		if (o + len + 1 >= n)
			return err_set(err, 0, "mailbox path too long");
		memcpy(out + o, add, len);
		o += len;
	}
	out[o] = '\0';
	return 0;
}

/* Runs on a worker: user -> Maildir root. */
static int main_mailbox(void *arg, const char *user, char *out, size_t n,
			struct err *err)
{
	struct main_ctx *ctx = arg;
	char *val = NULL;
	enum map_rc rc;
	size_t len;
	int r;

	if (ctx->mailbox_map != NULL) {
		rc = vlookup_addr(ctx->mailbox_map, user, NULL, VLOOKUP_MAILBOX,
				  &val, NULL, err);
		if (rc == MAP_TEMPFAIL)
			return -1;
		if (rc == MAP_NOTFOUND)
			return err_set(err, 0, "no mailbox for %s", user);
		if (!main_path_safe(val)) {
			free(val);
			return err_set(err, 0, "unsafe mailbox path");
		}
		len = strlen(val);
		while (len > 1 && val[len - 1] == '/')
			val[--len] = '\0';
		r = snprintf(out, n, "%s/%s", var_virtual_mailbox_base, val);
		free(val);
		if (r < 0 || (size_t)r >= n)
			return err_set(err, 0, "mailbox path too long");
		return 0;
	}
	if (var_mail_location[0] != '\0')
		return main_expand_location(var_mail_location, user, out, n,
					    err);
	return mstore_user_root(var_virtual_mailbox_base, user, out, n, err);
}

static int main_quota(void *arg, const char *user, uint64_t *bytes_r,
		      struct err *err)
{
	struct main_ctx *ctx = arg;
	char *val = NULL, *end;
	enum map_rc rc;

	*bytes_r = 0;
	if (ctx->limit_map == NULL)
		return 0;
	rc = vlookup_addr(ctx->limit_map, user, NULL, VLOOKUP_MAILBOX, &val,
			  NULL, err);
	if (rc == MAP_TEMPFAIL)
		return -1;
	if (rc == MAP_FOUND) {
		unsigned long long v = strtoull(val, &end, 10);

		if (end != val)
			*bytes_r = v;
		free(val);
	}
	return 0;
}

static int main_checkpass(void *arg, const char *user, const char *pass)
{
	struct err err;

	switch (passdb_verify(arg, user, pass, &err)) {
	case PASSDB_OK:
		return 1;
	case PASSDB_FAIL:
		return 0;
	default:
		return -1;
	}
}

static void main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	log_info("mra: signal %d, stopping", (int)sig);
	event_base_loopexit(arg, NULL);
}

static const char *main_tls_file(const char *dovecot, const char *postfix)
{
	const char *f = dovecot[0] != '\0' ? dovecot : postfix;

	/* Dovecot writes "ssl_cert = </path": the '<' means "read file" */
	if (*f == '<')
		f++;
	while (*f == ' ')
		f++;
	return f;
}

static int main_bind(long port, int *fds, int max, const char *what)
{
	struct err err;
	int n;

	if (port == 0)
		return 0;
	n = listen_inet(var_inet_interfaces, (int)port, 1024, 0, fds, max,
			&err);
	if (n < 0) {
		log_error("mra: fatal: %s port %ld: %s", what, port, err.msg);
		exit(1);
	}
	return n;
}

static void main_fatal(const char *what, const char *msg)
{
	log_error("mra: fatal: %s%s%s", what, *what != '\0' ? ": " : "", msg);
	exit(1);
}

static void main_tls_files(const char **cert, const char **key)
{
	*cert = main_tls_file(var_ssl_cert, var_tls_cert_file);
	*key = main_tls_file(var_ssl_key, var_tls_key_file);
	if (**key == '\0')
		*key = *cert;
}

/* SIGHUP (systemctl reload): new IMAPS/POP3S and STARTTLS/STLS handshakes
 * get the certificate and key read again from the same files; sessions in
 * TLS (an IMAP IDLE included) keep theirs, and a bad new pair leaves the
 * old one in use. Maps: every open table reads its definition again
 * (map_reload_all: texthash files at once, mysql .cf files for new
 * queries). */
static void main_reload_cb(evutil_socket_t sig, short what, void *arg)
{
	SSL_CTX *tls = arg;
	const char *cert, *key;
	char desc[512];
	struct err err;

	map_main_reload("mra: reload");
	if (tls == NULL) {
		log_info("mra: reload: TLS was off at start-up (ssl = no): "
			 "restart to turn it on");
		return;
	}
	main_tls_files(&cert, &key);
	if (tls_server_ctx_reload(tls, cert, key, &err) < 0) {
		log_warn("mra: reload: keeping the current certificate: %s",
			 err.msg);
		return;
	}
	tls_server_ctx_describe(tls, desc, sizeof(desc));
	log_info("mra: reload: new TLS handshakes get %s", desc);
}

/* ssl = yes | required | no; NULL when no TLS. */
static SSL_CTX *main_tls(void)
{
	const char *cert, *key;
	struct err err;
	SSL_CTX *tls;

	if (strcasecmp(var_ssl, "yes") != 0 && strcasecmp(var_ssl, "no") != 0 &&
	    strcasecmp(var_ssl, "required") != 0)
		main_fatal("ssl", "must be yes, no or required");
	if (strcasecmp(var_ssl, "no") == 0)
		return NULL;
	main_tls_files(&cert, &key);
	if (*cert == '\0')
		main_fatal("ssl", "needs ssl_cert (or smtpd_tls_cert_file)");
	tls = tls_server_ctx(cert, key, &err);
	if (tls == NULL)
		main_fatal("TLS", err.msg);
	/* idle connections keep no TLS buffers */
	SSL_CTX_set_mode(tls, SSL_MODE_RELEASE_BUFFERS);
	return tls;
}

static void main_maps(struct main_ctx *ctx)
{
	struct err err;

	ctx->passdb = passdb_new(var_virtual_password_maps,
				 var_default_pass_scheme, &err);
	if (ctx->passdb == NULL)
		main_fatal("virtual_password_maps", err.msg);
	if (var_virtual_mailbox_maps[0] != '\0' &&
	    (ctx->mailbox_map = map_open(var_virtual_mailbox_maps,
					 &err)) == NULL)
		main_fatal("virtual_mailbox_maps", err.msg);
	if (var_virtual_mailbox_limit_maps[0] != '\0' &&
	    (ctx->limit_map = map_open(var_virtual_mailbox_limit_maps,
				       &err)) == NULL)
		main_fatal("virtual_mailbox_limit_maps", err.msg);
}

static void main_imap_settings(struct imap_settings *set,
			       struct main_ctx *ctx, SSL_CTX *tls)
{
	set->hostname = var_myhostname;
	set->passdb = ctx->passdb;
	set->tls = tls;
	set->ssl_required = strcasecmp(var_ssl, "required") == 0;
	set->disable_plaintext_auth = var_disable_plaintext_auth;
	set->mailbox_fn = main_mailbox;
	set->mailbox_arg = ctx;
	set->quota_fn = main_quota;
	set->quota_arg = ctx;
	set->login_timeout = (unsigned)var_login_timeout;
	set->idle_timeout = (unsigned)var_imap_idle_timeout;
	set->max_line = (size_t)var_imap_max_line_length;
	set->max_literal = (size_t)var_imap_literal_limit;
	set->max_login_literal = (size_t)var_imap_login_literal_limit;
	set->max_append = (size_t)var_message_size_limit;
	set->max_cmds_per_sec = (unsigned)var_imap_max_commands_per_second;
	set->max_auth_fails = (unsigned)var_auth_max_failures;
	set->max_conns = (unsigned)var_mra_conn_limit;
	set->max_conns_per_addr = (unsigned)var_mra_client_conn_limit;
	set->loginfail = ctx->loginfail;
	set->userip = ctx->userip;
}

static void main_pop3_settings(struct pop3_settings *set,
			       const struct imap_settings *iset,
			       struct main_ctx *ctx)
{
	set->hostname = var_myhostname;
	set->passdb = ctx->passdb;
	set->sasl = iset->sasl;
	set->tls = iset->tls;
	set->disable_plaintext_auth = var_disable_plaintext_auth ||
		iset->ssl_required;
	set->mail_base = var_virtual_mailbox_base;
	set->mailbox_fn = main_mailbox;
	set->mailbox_arg = ctx;
	set->timeout = (unsigned)var_pop3_timeout;
	set->loginfail = ctx->loginfail;
	set->max_conns = (unsigned)var_mra_conn_limit;
	set->max_conns_per_addr = (unsigned)var_mra_client_conn_limit;
	set->userip = ctx->userip;
}

/* Listening sockets: IMAP, IMAPS, POP3, POP3S (bound before the drop). */
struct main_socks {
	int fds[4][8];
	int n[4];
};

static void main_bind_all(struct main_socks *sk, int tls_on)
{
	sk->n[0] = main_bind(var_imap_listen, sk->fds[0], 8, "imap_listen");
	sk->n[1] = tls_on ? main_bind(var_imaps_listen, sk->fds[1], 8,
				      "imaps_listen") : 0;
	sk->n[2] = main_bind(var_pop3_listen, sk->fds[2], 8, "pop3_listen");
	sk->n[3] = tls_on ? main_bind(var_pop3s_listen, sk->fds[3], 8,
				      "pop3s_listen") : 0;
}

/* The servers (owned here: no global state in the protocol modules). */
struct main_servers {
	struct imap_server *imap;
	struct pop3_server *pop3;
};

static void main_serve(struct event_base *base, struct work_pool *pool,
		       struct main_socks *sk, const struct imap_settings *iset,
		       const struct pop3_settings *pset,
		       struct main_servers *sv)
{
	struct err err;
	int i, j;

	sv->imap = imap_server_new(base, pool, iset, &err);
	if (sv->imap == NULL)
		main_fatal("IMAP", err.msg);
	sv->pop3 = pop3_server_new(base, pool, pset, &err);
	if (sv->pop3 == NULL)
		main_fatal("POP3", err.msg);
	for (i = 0; i < 2; i++)
		for (j = 0; j < sk->n[i]; j++)
			if (imap_server_listen(sv->imap, sk->fds[i][j], i == 1,
					       &err) < 0)
				main_fatal("IMAP", err.msg);
	for (i = 0; i < 2; i++)
		for (j = 0; j < sk->n[2 + i]; j++)
			if (pop3_server_listen(sv->pop3, sk->fds[2 + i][j],
					       i == 1, &err) < 0)
				main_fatal("POP3", err.msg);
}

int main(int argc, char **argv)
{
	static struct imap_settings iset;
	static struct pop3_settings pset;
	static struct main_ctx ctx;
	static struct main_socks sk;
	struct main_servers sv;
	struct loginfail_settings lfs;
	struct event_base *base;
	struct work_pool *pool;
	struct event *sigs[3];
	SSL_CTX *tls;
	struct err err;
	int i;

	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		fputs(main_help, stdout);
		return 0;
	}
	cfg_daemon_init("mra", argc, argv, main_tabs, main_help);
	log_open("mra", var_syslog_enable, 1);
	log_set_debug(var_debug);
	signal(SIGPIPE, SIG_IGN);

	tls = main_tls();
	main_maps(&ctx);
	if (sasl_glue_server_init("mra", "PLAIN LOGIN", main_checkpass,
				  ctx.passdb, &err) < 0)
		log_warn("mra: SASL unavailable: %s", err.msg);
	else
		iset.sasl = 1;
	main_bind_all(&sk, tls != NULL);
	if (priv_drop(var_mail_owner, &err) < 0)
		main_fatal("", err.msg);

	base = evbase_new();
	if (base == NULL)
		main_fatal("", "event_base_new failed");
	pool = work_pool_new(base, (int)var_worker_threads, &err);
	if (pool == NULL)
		main_fatal("worker pool", err.msg);
	/* mra has no Redis: the counters live in memory (loginfail.h) */
	loginfail_settings_from_params(&lfs);
	ctx.loginfail = loginfail_new(base, NULL, &lfs, &err);
	if (ctx.loginfail == NULL)
		main_fatal("loginfail", err.msg);
	ctx.userip = mra_userip_new((unsigned)var_mail_max_userip);
	if (ctx.userip == NULL)
		main_fatal("", "out of memory");
	main_imap_settings(&iset, &ctx, tls);
	main_pop3_settings(&pset, &iset, &ctx);
	main_serve(base, pool, &sk, &iset, &pset, &sv);
	sigs[0] = evsignal_new(base, SIGTERM, main_signal_cb, base);
	sigs[1] = evsignal_new(base, SIGINT, main_signal_cb, base);
	sigs[2] = evsignal_new(base, SIGHUP, main_reload_cb, tls);
	for (i = 0; i < 3; i++)
		if (sigs[i] != NULL)
			event_add(sigs[i], NULL);
	log_info("mra: started: imap=%ld imaps=%ld pop3=%ld pop3s=%ld",
		 sk.n[0] > 0 ? var_imap_listen : 0,
		 sk.n[1] > 0 ? var_imaps_listen : 0,
		 sk.n[2] > 0 ? var_pop3_listen : 0,
		 sk.n[3] > 0 ? var_pop3s_listen : 0);
	event_base_dispatch(base);

	/* POP3 before the pool (its jobs free what they hold); IMAP after
	 * it: a BUSY IMAP conn lives until its job's done has run */
	imap_server_stop_listening(sv.imap);
	pop3_server_free(sv.pop3);
	work_pool_free(pool);
	imap_server_free(sv.imap);
	loginfail_free(ctx.loginfail);
	mra_userip_free(ctx.userip);
	for (i = 0; i < 3; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	event_base_free(base);
	passdb_free(ctx.passdb);
	map_free(ctx.mailbox_map);
	map_free(ctx.limit_map);
	if (tls != NULL)
		SSL_CTX_free(tls);
	cfg_free(main_tabs);
	return 0;
}
