/* submission: the internal host's SMTP server (RFC 6409): 587 with
 * STARTTLS, 465 with implicit TLS, and the intake port where the MX
 * forwarder logs in. AUTH through Cyrus SASL over TLS only; local
 * delivery into Maildir/mbox; everything else to the Redis "out" queue.
 * main() owns the configuration, maps, listeners and the loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "cfg.h"
#include "evbase.h"
#include "fsgroup.h"
#include "listen.h"
#include "log.h"
#include "loginfail.h"
#include "map.h"
#include "milter.h"
#include "params.h"
#include "passdb.h"
#include "queue.h"
#include "redisc.h"
#include "sasl_glue.h"
#include "smtpc.h"
#include "smtpd.h"
#include "sub_outbound.h"
#include "sub_session.h"
#include "tls.h"
#include "vlookup.h"
#include "work.h"

static char *var_submission_listen, *var_smtps_listen, *var_intake_listen;
static char *var_intake_relay_logins, *var_mynetworks;
static char *var_client_restr, *var_relay_restr, *var_sender_restr;
static char *var_intake_client_restr, *var_intake_relay_restr;
static char *var_sender_login_maps;
static char *var_tls_cert, *var_tls_key, *var_tls_level;
static int var_tls_auth_only, var_sasl_enable, var_broken_sasl;
static char *var_sasl_options, *var_sasl_mechs;
static long var_auth_fail_limit, var_ident_lifetime;
static long var_client_conn_limit, var_conn_limit;
static long var_size_limit, var_rcpt_limit, var_timeout, var_threads;
static char *var_vmb_domains, *var_vmb_base, *var_vmb_maps, *var_valias;
static char *var_uid_maps, *var_gid_maps, *var_limit_maps, *var_delim;
static char *var_password_maps, *var_domain_quota_maps;
static long var_min_uid, var_alias_recursion, var_alias_expansion;

static const struct cfg_param sub_params[] = {
	{ "submission_listen", CFG_STR, "587", &var_submission_listen, 0, 0 },
	{ "smtps_listen", CFG_STR, "465", &var_smtps_listen, 0, 0 },
	{ "intake_listen", CFG_STR, "", &var_intake_listen, 0, 0 },
	{ "intake_relay_logins", CFG_STR, "", &var_intake_relay_logins, 0, 0 },
	{ "mynetworks", CFG_STR, "127.0.0.0/8 [::1]/128", &var_mynetworks, 0, 0 },
	/* 587 and 465: what Postfix's master.cf gives its submission and
	 * smtps services (-o smtpd_client_restrictions=
	 * permit_sasl_authenticated,reject, the same for relay). */
	{ "smtpd_client_restrictions", CFG_STR,
	  "permit_sasl_authenticated, reject", &var_client_restr, 0, 0 },
	{ "smtpd_relay_restrictions", CFG_STR,
	  "permit_sasl_authenticated, reject", &var_relay_restr, 0, 0 },
	/* The intake: the MX forwarder's login; trust by address (a
	 * permit_mynetworks) only where an operator writes it here. */
	{ "intake_client_restrictions", CFG_STR,
	  "permit_sasl_authenticated, reject", &var_intake_client_restr, 0, 0 },
	{ "intake_relay_restrictions", CFG_STR,
	  "permit_sasl_authenticated, reject_unauth_destination",
	  &var_intake_relay_restr, 0, 0 },
	{ "smtpd_sender_restrictions", CFG_STR, "reject_sender_login_mismatch",
	  &var_sender_restr, 0, 0 },
	{ "smtpd_sender_login_maps", CFG_STR, "", &var_sender_login_maps, 0, 0 },
	{ "smtpd_tls_cert_file", CFG_STR, "", &var_tls_cert, 0, 0 },
	{ "smtpd_tls_key_file", CFG_STR, "$smtpd_tls_cert_file", &var_tls_key, 0, 0 },
	{ "smtpd_tls_security_level", CFG_STR, "may", &var_tls_level, 0, 0 },
	{ "smtpd_tls_auth_only", CFG_BOOL, "yes", &var_tls_auth_only, 0, 0 },
	{ "smtpd_sasl_auth_enable", CFG_BOOL, "yes", &var_sasl_enable, 0, 0 },
	{ "smtpd_sasl_security_options", CFG_STR, "noanonymous", &var_sasl_options, 0, 0 },
	{ "smtpd_sasl_mechanisms", CFG_STR, "PLAIN LOGIN", &var_sasl_mechs, 0, 0 },
	{ "broken_sasl_auth_clients", CFG_BOOL, "no", &var_broken_sasl, 0, 0 },
	/* per session; across sessions: loginfail_params */
	{ "smtpd_sasl_failure_limit", CFG_INT, "3", &var_auth_fail_limit, 0, 1000 },
	{ "ident_cache_lifetime", CFG_TIME, "30d", &var_ident_lifetime, 60, 0 },
	{ "message_size_limit", CFG_INT, "10240000", &var_size_limit, 0, 0 },
	{ "smtpd_recipient_limit", CFG_INT, "1000", &var_rcpt_limit, 1, 0 },
	{ "smtpd_timeout", CFG_TIME, "300s", &var_timeout, 1, 3600 },
	/* Postfix's name and meaning, per port as Postfix counts per
	 * service; the total is what master.cf's process limit is to
	 * Postfix. 0: no limit. */
	{ "smtpd_client_connection_count_limit", CFG_INT, "50",
	  &var_client_conn_limit, 0, 1000000 },
	{ "smtpd_connection_limit", CFG_INT, "2000", &var_conn_limit, 0,
	  1000000 },
	{ "delivery_worker_threads", CFG_INT, "16", &var_threads, 1, 256 },
	{ "virtual_mailbox_domains", CFG_STR, "", &var_vmb_domains, 0, 0 },
	{ "virtual_mailbox_base", CFG_STR, "/var/mail/vhosts", &var_vmb_base, 0, 0 },
	{ "virtual_mailbox_maps", CFG_STR, "", &var_vmb_maps, 0, 0 },
	{ "virtual_alias_maps", CFG_STR, "", &var_valias, 0, 0 },
	{ "virtual_uid_maps", CFG_STR, "", &var_uid_maps, 0, 0 },
	{ "virtual_gid_maps", CFG_STR, "", &var_gid_maps, 0, 0 },
	{ "virtual_minimum_uid", CFG_INT, "100", &var_min_uid, 0, 0 },
	{ "virtual_mailbox_limit_maps", CFG_STR, "", &var_limit_maps, 0, 0 },
	/* domain -> bytes the domain's mailboxes may hold together */
	{ "virtual_domain_quota_maps", CFG_STR, "", &var_domain_quota_maps, 0, 0 },
	{ "virtual_alias_recursion_limit", CFG_INT, "1000", &var_alias_recursion, 1, 0 },
	{ "virtual_alias_expansion_limit", CFG_INT, "1000", &var_alias_expansion, 1, 0 },
	{ "virtual_password_maps", CFG_STR, "", &var_password_maps, 0, 0 },
	{ "recipient_delimiter", CFG_STR, "", &var_delim, 0, 0 },
	{ NULL, 0, NULL, NULL, 0, 0 },
};

static const struct cfg_param *const sub_tabs[] = {
	params_common, redisc_params, queue_params, loginfail_params,
	sub_params, sub_outbound_params, milter_params, NULL,
};

static const char sub_help[] =
	"Usage: submission [-c DIR] [-n]\n"
	"       submission -h | --help\n"
	"The internal host's SMTP server: submission (587, STARTTLS) and smtps\n"
	"(465, TLS) with SMTP AUTH, and the intake where the MX's forwarder\n"
	"logs in; delivers to virtual mailboxes (Maildir) and queues all other\n"
	"mail in Redis for outbound delivery (relayhost or the domain's MX).\n"
	"  -c DIR      configuration folder, default /etc/mailpair; the\n"
	"              parameters are read from DIR/submission.cf\n"
	"  -n          print the non-default settings (like postconf -n), exit\n"
	"  -h, --help  this help\n"
	"Runs in the foreground; logs to syslog (mail) and stderr. Signals:\n"
	"TERM/INT stop; HUP re-reads smtpd_tls_cert_file and smtpd_tls_key_file\n"
	"for new TLS sessions. Parameters (Postfix's names): submission(8) and\n"
	"the README; samples in /usr/local/share/mailpair/examples.\n";

struct sub_main {
	struct event_base *base;
	struct sub_server srv;
	struct sub_listener lis[3];
	struct sub_outbound *outbound;
	struct passdb *passdb;
	SSL_CTX *tls;
	int fds[3][16];
	int nfds[3];
	struct event *sig[3];
};

static void sub_main_fatal(const char *what, const struct err *err)
{
	log_error("fatal: %s: %s", what, err->msg);
	exit(1);
}

static int sub_main_checkpass(void *arg, const char *user, const char *pass)
{
	struct err err;

	switch (passdb_verify(arg, user, pass, &err)) {
	case PASSDB_OK:
		return 1;
	case PASSDB_FAIL:
		return 0;
	default:
		log_warn("password lookup for a login failed: %s", err.msg);
		return -1;
	}
}

/* A listen setting that opens a port ("" or "no" = off). */
static int sub_main_listens(const char *spec)
{
	return *spec != '\0' && strcasecmp(spec, "no") != 0;
}

/* "587", "127.0.0.1:5587", "[::1]:5587"; "" or "no" = off. */
static int sub_main_bind(const char *spec, int *fds, int max, struct err *err)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	long port;

	if (!sub_main_listens(spec))
		return 0;
	if (colon == NULL || (spec[0] == '[' && colon < strchr(spec, ']'))) {
		if (cfg_parse_int(spec, &port) < 0 || port < 1 || port > 65535)
			return err_set(err, 0, "bad listen port \"%s\"", spec);
		return listen_inet(var_inet_interfaces, (int)port, 511, 1, fds,
				   max, err);
	}
	if (cfg_parse_int(colon + 1, &port) < 0 || port < 1 || port > 65535 ||
	    (size_t)(colon - spec) >= sizeof(host))
		return err_set(err, 0, "bad listen address \"%s\"", spec);
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	return listen_inet(host, (int)port, 511, 1, fds, max, err);
}

static struct map *sub_main_map(const char *name, const char *spec)
{
	struct err err;
	struct map *m = map_open(spec, &err);

	if (m == NULL)
		sub_main_fatal(name, &err);
	if (map_is_empty(m)) {
		map_free(m);
		return NULL;
	}
	return m;
}

/* One restriction list; on 587/465 (submission_port) permit_mynetworks
 * is refused: RFC 6409 §4.3 wants the MSA to require AUTH, and on a
 * shared host or container network "from loopback" is every local
 * process, an open relay. Trust by address goes on the intake. */
static void sub_main_restr(const char *name, const char *text,
			   struct sub_policy_restr *r, int submission_port)
{
	struct err err;

	if (sub_policy_restr_parse(text, r, &err) < 0)
		sub_main_fatal(name, &err);
	if (submission_port &&
	    sub_policy_restr_has(r, SUB_R_PERMIT_MYNETWORKS)) {
		err_set(&err, 0, "permit_mynetworks is not allowed on the "
			"submission ports (587/465 require AUTH); trust "
			"clients by address with intake_client_restrictions "
			"and intake_relay_restrictions on the intake");
		sub_main_fatal(name, &err);
	}
}

static void sub_main_policy(struct sub_server *srv)
{
	struct err err;

	srv->mynetworks = sub_policy_net_new(var_mynetworks, &err);
	if (srv->mynetworks == NULL)
		sub_main_fatal("mynetworks", &err);
	sub_main_restr("smtpd_client_restrictions", var_client_restr,
		       &srv->client_restr, 1);
	sub_main_restr("smtpd_relay_restrictions", var_relay_restr,
		       &srv->relay_restr, 1);
	sub_main_restr("intake_client_restrictions", var_intake_client_restr,
		       &srv->intake_client_restr, 0);
	sub_main_restr("intake_relay_restrictions", var_intake_relay_restr,
		       &srv->intake_relay_restr, 0);
	sub_main_restr("smtpd_sender_restrictions", var_sender_restr,
		       &srv->sender_restr, 0);
	srv->relay_logins = var_intake_relay_logins;
	srv->myhostname = var_myhostname;
	srv->name = "submission";
	srv->auth_fail_limit = var_auth_fail_limit;
	srv->ident_lifetime = var_ident_lifetime;
}

static void sub_main_maps(struct sub_server *srv)
{
	struct sub_resolve *r = &srv->resolve;
	struct err err;

	r->alias_maps = sub_main_map("virtual_alias_maps", var_valias);
	r->mailbox_maps = sub_main_map("virtual_mailbox_maps", var_vmb_maps);
	r->uid_maps = sub_main_map("virtual_uid_maps", var_uid_maps);
	r->gid_maps = sub_main_map("virtual_gid_maps", var_gid_maps);
	r->limit_maps = sub_main_map("virtual_mailbox_limit_maps",
				     var_limit_maps);
	r->domain_quota_maps = sub_main_map("virtual_domain_quota_maps",
					    var_domain_quota_maps);
	srv->sender_login_maps = sub_main_map("smtpd_sender_login_maps",
					      var_sender_login_maps);
	r->domains = vlookup_domains_new(var_vmb_domains, &err);
	if (r->domains == NULL)
		sub_main_fatal("virtual_mailbox_domains", &err);
	r->delims = var_delim;
	r->base = var_vmb_base;
	r->minimum_uid = var_min_uid;
	r->recursion_limit = (int)var_alias_recursion;
	r->expansion_limit = (int)var_alias_expansion;
	srv->rcpt_inline = sub_resolve_in_memory(r);
}

static void sub_main_bind_all(struct sub_main *m)
{
	const char *specs[3] = { var_submission_listen, var_smtps_listen,
				 var_intake_listen };
	static const char *const names[3] = { "submission_listen",
					      "smtps_listen", "intake_listen" };
	struct err err;

	for (int i = 0; i < 3; i++) {
		m->nfds[i] = sub_main_bind(specs[i], m->fds[i], 16, &err);
		if (m->nfds[i] < 0)
			sub_main_fatal(names[i], &err);
	}
	if (m->nfds[0] + m->nfds[1] + m->nfds[2] == 0) {
		err_set(&err, 0, "no listener configured");
		sub_main_fatal("submission", &err);
	}
}

static void sub_main_tls_auth(struct sub_main *m)
{
	struct err err;

	if (*var_tls_cert != '\0') {
		m->tls = tls_server_ctx(var_tls_cert, var_tls_key, &err);
		if (m->tls == NULL)
			sub_main_fatal("smtpd_tls_cert_file", &err);
	} else if (sub_main_listens(var_smtps_listen) ||
		   sub_main_listens(var_intake_listen) ||
		   strcasecmp(var_tls_level, "encrypt") == 0) {
		err_set(&err, 0, "smtpd_tls_cert_file is required for "
			"smtps_listen, intake_listen and level encrypt");
		sub_main_fatal("smtpd_tls_cert_file", &err);
	}
	if (!var_sasl_enable)
		return;
	m->passdb = passdb_new(var_password_maps, var_default_pass_scheme, &err);
	if (m->passdb == NULL)
		sub_main_fatal("virtual_password_maps", &err);
	if (sasl_glue_server_init("submission", var_sasl_mechs,
				  sub_main_checkpass, m->passdb, &err) < 0)
		sub_main_fatal("SASL", &err);
}

static void sub_main_servers(struct sub_main *m)
{
	static const int flags[3] = { 0, SMTPD_LISTEN_TLS, 0 };
	struct smtpd_settings set = {
		.name = "submission",
		.myhostname = var_myhostname,
		.message_size_limit = (size_t)var_size_limit,
		.recipient_limit = (int)var_rcpt_limit,
		.timeout = (int)var_timeout,
		.tls_ctx = m->tls,
		.auth_enable = var_sasl_enable,
		.tls_auth_only = var_tls_auth_only,
		.auth_broken_clients = var_broken_sasl,
		.sasl_service = "smtp",
		.sasl_options = var_sasl_options,
		.pool = m->srv.pool,
		.connection_limit = (unsigned)var_conn_limit,
		.client_connection_limit = (unsigned)var_client_conn_limit,
	};
	/* smtpd_milters (DKIM signing, ...) on 587 and 465; the intake takes
	 * mail the MX's milters have judged already */
	static struct milter_conf milters;
	struct err err;

	if (milter_conf_from_params(&milters, &err) < 0)
		sub_main_fatal("milter", &err);
	for (int i = 0; i < 3; i++) {
		if (m->nfds[i] == 0)
			continue;
		set.milters = i == SUB_KIND_INTAKE ? NULL : &milters;
		m->lis[i].srv = &m->srv;
		m->lis[i].kind = (enum sub_kind)i;
		/* The intake is for the MX forwarder: TLS before anything
		 * (smtpd_tls_security_level = encrypt there). */
		set.tls_required = i == SUB_KIND_INTAKE ||
				   strcasecmp(var_tls_level, "encrypt") == 0;
		m->lis[i].smtpd = smtpd_server_new(m->base, &set,
						   &sub_session_hooks,
						   &m->lis[i], &err);
		if (m->lis[i].smtpd == NULL)
			sub_main_fatal("smtpd", &err);
		for (int k = 0; k < m->nfds[i]; k++)
			if (smtpd_server_listen(m->lis[i].smtpd, m->fds[i][k],
						flags[i], &err) < 0)
				sub_main_fatal("listen", &err);
	}
}

static void sub_main_redis(struct sub_main *m)
{
	struct loginfail_settings lfs;
	struct err err;

	if (var_redis_require_durable &&
	    redisc_check_durable(var_redis_server, var_redis_password,
				 &err) < 0)
		sub_main_fatal("redis_require_durable", &err);
	m->srv.redis = redisc_new(m->base, var_redis_server,
				  var_redis_password, (int)var_redis_database, &err);
	if (m->srv.redis == NULL)
		sub_main_fatal("redis_server", &err);
	m->srv.outq = queue_new(m->base, m->srv.redis, "out", &err);
	if (m->srv.outq == NULL)
		sub_main_fatal("queue", &err);
	/* failed logins: counters shared through Redis with mra and other
	 * hosts, in memory while it is down */
	loginfail_settings_from_params(&lfs);
	m->srv.loginfail = loginfail_new(m->base, m->srv.redis, &lfs, &err);
	if (m->srv.loginfail == NULL)
		sub_main_fatal("loginfail", &err);
	m->srv.auth_wait_max_ms = lfs.delay_max_ms > lfs.delay_ms ?
				  lfs.delay_max_ms : lfs.delay_ms;
	/* the wait counts against smtpd_timeout like any other */
	if ((long)m->srv.auth_wait_max_ms >= var_timeout * 1000)
		log_warn("auth_failure_delay_max (%u ms) is not below "
			 "smtpd_timeout (%lds): a delayed AUTH will time out",
			 m->srv.auth_wait_max_ms, var_timeout);
}

static void sub_main_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sub_main *m = arg;

	log_info("stopping on signal %d", (int)sig);
	event_base_loopbreak(m->base);
}

/* SIGHUP (systemctl reload): new handshakes on 587, 465 and the intake get
 * the certificate and key read again from the same files; sessions in TLS
 * keep theirs, and a bad new pair leaves the old one in use. Maps:
 * texthash files are re-read whenever they change (map_file.c). */
static void sub_main_reload(evutil_socket_t sig, short what, void *arg)
{
	struct sub_main *m = arg;
	char desc[512];
	struct err err;

	map_main_reload("reload");
	if (m->tls == NULL) {
		log_info("reload: TLS was off at start-up (no "
			 "smtpd_tls_cert_file): restart to turn it on");
		return;
	}
	if (tls_server_ctx_reload(m->tls, var_tls_cert, var_tls_key,
				  &err) < 0) {
		log_warn("reload: keeping the current certificate: %s",
			 err.msg);
		return;
	}
	tls_server_ctx_describe(m->tls, desc, sizeof(desc));
	log_info("reload: new TLS handshakes get %s", desc);
}

int main(int argc, char **argv)
{
	static struct sub_main m;
	struct err err;

	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		fputs(sub_help, stdout);
		return 0;
	}
	cfg_daemon_init("submission", argc, argv, sub_tabs, sub_help);
	log_open("submission", var_syslog_enable, 1);
	log_set_debug(var_debug);
	signal(SIGPIPE, SIG_IGN);
	m.base = evbase_new();
	if (m.base == NULL) {
		err_set(&err, 1, "event_base_new failed");
		sub_main_fatal("libevent", &err);
	}
	m.srv.base = m.base;
	sub_main_policy(&m.srv);
	sub_main_maps(&m.srv);
	sub_main_tls_auth(&m);
	sub_main_redis(&m);
	/* the ports open once the configuration is known good: a daemon
	 * about to exit over a bad setting never takes a connection */
	sub_main_bind_all(&m);
	if (priv_drop(var_mail_owner, &err) < 0)
		sub_main_fatal("mail_owner", &err);
	m.srv.pool = work_pool_new(m.base, (int)var_threads, &err);
	if (m.srv.pool == NULL)
		sub_main_fatal("worker pool", &err);
	m.srv.fsync_group = fsgroup_new();
	if (m.srv.fsync_group == NULL) {
		err_set(&err, 1, "out of memory");
		sub_main_fatal("fsync group", &err);
	}
	m.outbound = sub_outbound_new(m.base, m.srv.pool, m.srv.fsync_group,
				      m.srv.outq,
				      &m.srv.resolve, var_myhostname, &err);
	if (m.outbound == NULL)
		sub_main_fatal("outbound", &err);
	sub_main_servers(&m);
	m.sig[0] = evsignal_new(m.base, SIGTERM, sub_main_signal, &m);
	m.sig[1] = evsignal_new(m.base, SIGINT, sub_main_signal, &m);
	m.sig[2] = evsignal_new(m.base, SIGHUP, sub_main_reload, &m);
	event_add(m.sig[0], NULL);
	event_add(m.sig[1], NULL);
	event_add(m.sig[2], NULL);
	log_info("daemon started: submission=%s smtps=%s intake=%s",
		 var_submission_listen, var_smtps_listen, var_intake_listen);
	event_base_dispatch(m.base);
	/* The pool first: its done callbacks reference sessions and the
	 * qmgr (qmgr.h). */
	work_pool_free(m.srv.pool);
	fsgroup_free(m.srv.fsync_group);
	for (int i = 0; i < 3; i++)
		smtpd_server_free(m.lis[i].smtpd);
	sub_outbound_free(m.outbound);
	/* remote servers get a QUIT on each cached connection */
	smtpc_closing_drain(m.base);
	queue_free(m.srv.outq);
	/* before the redisc it borrows */
	loginfail_free(m.srv.loginfail);
	redisc_free(m.srv.redis);
	event_free(m.sig[0]);
	event_free(m.sig[1]);
	event_free(m.sig[2]);
	event_base_free(m.base);
	return 0;
}
