/* mx-relay: the open MX. Accepts mail for its own domains and existing
 * recipients only, keeps each message durable in a Redis queue before the
 * 250, and lets the forwarder (mx_forward.c) hand it to the internal host.
 * main() owns the configuration, maps, listeners, Redis and the loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/event.h>
#include "cfg.h"
#include "evbase.h"
#include "listen.h"
#include "log.h"
#include "map.h"
#include "milter.h"
#include "params.h"
#include "queue.h"
#include "redisc.h"
#include "smtpc.h"
#include "smtpd.h"
#include "tls.h"
#include "vlookup.h"
#include "work.h"
#include "mx_session.h"
#include "mx_forward.h"

#define MX_MAIN_MAXFDS 16

static char *var_smtpd_listen, *var_relay_domains, *var_vmb_domains;
static char *var_relay_rcpt_maps, *var_vmb_maps, *var_valias_maps;
static char *var_rcpt_delim, *var_tls_level, *var_tls_cert, *var_tls_key;
static long var_size_limit, var_rcpt_limit, var_timeout, var_hard_errors;
static long var_conn_rate, var_msg_rate, var_rate_unit, var_greet_wait;
static long var_threads, var_redis_conns, var_line_limit, var_backlog;
static long var_client_conn_limit, var_conn_limit;
static int var_forbid_bare_nl, var_forward_enable;

static const struct cfg_param mx_main_params[] = {
	{ "smtpd_listen", CFG_STR, "25", &var_smtpd_listen, 0, 0 },
	{ "relay_domains", CFG_STR, "", &var_relay_domains, 0, 0 },
	{ "virtual_mailbox_domains", CFG_STR, "", &var_vmb_domains, 0, 0 },
	{ "relay_recipient_maps", CFG_STR, "", &var_relay_rcpt_maps, 0, 0 },
	{ "virtual_mailbox_maps", CFG_STR, "", &var_vmb_maps, 0, 0 },
	{ "virtual_alias_maps", CFG_STR, "", &var_valias_maps, 0, 0 },
	{ "recipient_delimiter", CFG_STR, "", &var_rcpt_delim, 0, 0 },
	{ "message_size_limit", CFG_INT, "10240000", &var_size_limit, 0, 0 },
	{ "smtpd_recipient_limit", CFG_INT, "1000", &var_rcpt_limit, 1, 0 },
	{ "smtpd_timeout", CFG_TIME, "300s", &var_timeout, 1, 3600 },
	{ "smtpd_hard_error_limit", CFG_INT, "20", &var_hard_errors, 1, 0 },
	{ "line_length_limit", CFG_INT, "2048", &var_line_limit, 512, 8192 },
	{ "smtpd_tls_security_level", CFG_STR, "may", &var_tls_level, 0, 0 },
	{ "smtpd_tls_cert_file", CFG_STR, "", &var_tls_cert, 0, 0 },
	{ "smtpd_tls_key_file", CFG_STR, "$smtpd_tls_cert_file", &var_tls_key, 0, 0 },
	{ "smtpd_forbid_bare_newline", CFG_BOOL, "yes", &var_forbid_bare_nl, 0, 0 },
	{ "smtpd_client_connection_rate_limit", CFG_INT, "0", &var_conn_rate, 0, 0 },
	{ "smtpd_client_message_rate_limit", CFG_INT, "0", &var_msg_rate, 0, 0 },
	/* Postfix's name and meaning; the total is what master.cf's process
	 * limit is to Postfix. 0: no limit. */
	{ "smtpd_client_connection_count_limit", CFG_INT, "50",
	  &var_client_conn_limit, 0, 1000000 },
	{ "smtpd_connection_limit", CFG_INT, "2000", &var_conn_limit, 0,
	  1000000 },
	{ "anvil_rate_time_unit", CFG_TIME, "60s", &var_rate_unit, 1, 0 },
	{ "postscreen_greet_wait", CFG_TIME, "0s", &var_greet_wait, 0, 60 },
	{ "smtpd_listen_backlog", CFG_INT, "1024", &var_backlog, 1, 65535 },
	{ "smtpd_worker_threads", CFG_INT, "4", &var_threads, 1, 256 },
	{ "redis_connections", CFG_INT, "16", &var_redis_conns, 1, 64 },
	/* no: accept and queue only (another process forwards, or tests) */
	{ "mx_forward_enable", CFG_BOOL, "yes", &var_forward_enable, 0, 0 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};

static const struct cfg_param *const mx_main_tabs[] = {
	params_common, redisc_params, queue_params, mx_main_params,
	mx_forward_params, milter_params,
	NULL,
};

static const char mx_main_help[] =
	"Usage: mx-relay [-c DIR] [-n]\n"
	"       mx-relay -h | --help\n"
	"The open MX: accepts mail for relay_domains and virtual_mailbox_domains\n"
	"(recipients checked against relay_recipient_maps, virtual_mailbox_maps,\n"
	"virtual_alias_maps), queues it durably in Redis, and forwards it to\n"
	"relayhost (the internal host's intake) with SMTP AUTH over STARTTLS.\n"
	"  -c DIR      configuration folder, default /etc/mailpair; the\n"
	"              parameters are read from DIR/mx-relay.cf\n"
	"  -n          print the non-default settings (like postconf -n), exit\n"
	"  -h, --help  this help\n"
	"Runs in the foreground; logs to syslog (mail) and stderr. Signals:\n"
	"TERM/INT stop; HUP re-reads smtpd_tls_cert_file and smtpd_tls_key_file\n"
	"for new TLS sessions. Parameters (Postfix's names): mx-relay(8) and the\n"
	"README; samples in /usr/local/share/mailpair/examples.\n";

static void mx_main_fatal(const char *what, const struct err *err)
{
	log_error("fatal: %s: %s", what, err->msg);
	exit(1);
}

static struct vlookup_domains *mx_main_domains(const char *name,
                                               const char *value)
{
	struct vlookup_domains *d;
	struct err err;

	if (value == NULL || value[0] == '\0')
		return NULL;
	d = vlookup_domains_new(value, &err);
	if (d == NULL)
		mx_main_fatal(name, &err);
	return d;
}

static struct map *mx_main_map(const char *name, const char *spec)
{
	struct map *m;
	struct err err;

	if (spec == NULL || spec[0] == '\0')
		return NULL;
	m = map_open(spec, &err);
	if (m == NULL)
		mx_main_fatal(name, &err);
	return m;
}

static void mx_main_maps(struct mx_relay *mx)
{
	mx->relay_domains = mx_main_domains("relay_domains", var_relay_domains);
	mx->virtual_domains = mx_main_domains("virtual_mailbox_domains",
	                                      var_vmb_domains);
	mx->relay_rcpt = mx_main_map("relay_recipient_maps", var_relay_rcpt_maps);
	mx->vmailbox = mx_main_map("virtual_mailbox_maps", var_vmb_maps);
	mx->valias = mx_main_map("virtual_alias_maps", var_valias_maps);
	mx->delims = var_rcpt_delim;
	mx->mydomain = var_mydomain;
	mx->conn_rate = var_conn_rate;
	mx->msg_rate = var_msg_rate;
	mx->rate_unit = var_rate_unit;
	mx->inline_lookups = mx_session_spec_inline(var_relay_domains) &&
	                     mx_session_spec_inline(var_vmb_domains) &&
	                     mx_session_spec_inline(var_relay_rcpt_maps) &&
	                     mx_session_spec_inline(var_vmb_maps) &&
	                     mx_session_spec_inline(var_valias_maps);
	if (mx->relay_domains == NULL && mx->virtual_domains == NULL)
		log_warn("relay_domains and virtual_mailbox_domains are empty: "
		         "every recipient will be refused");
	if (mx->relay_rcpt == NULL && mx->vmailbox == NULL && mx->valias == NULL)
		log_warn("no recipient maps (relay_recipient_maps): every user "
		         "of our domains is accepted");
}

/* smtpd_listen: "25", "2525", "127.0.0.1:2525", "[::1]:2525". A host part
 * replaces inet_interfaces. */
static int mx_main_bind(int *fds)
{
	char host[256];
	const char *spec = var_smtpd_listen, *colon = strrchr(spec, ':');
	const char *ifs = var_inet_interfaces;
	long port;
	struct err err;
	int n;

	if (colon != NULL) {
		size_t hl = (size_t)(colon - spec);

		if (hl == 0 || hl >= sizeof(host)) {
			err_set(&err, 0, "bad value \"%s\"", spec);
			mx_main_fatal("smtpd_listen", &err);
		}
		memcpy(host, spec, hl);
		host[hl] = '\0';
		ifs = host;
		spec = colon + 1;
	}
	if (cfg_parse_int(spec, &port) < 0 || port < 1 || port > 65535) {
		err_set(&err, 0, "bad port \"%s\"", spec);
		mx_main_fatal("smtpd_listen", &err);
	}
	/* SO_REUSEPORT: several mx-relay processes may share the port */
	n = listen_inet(ifs, (int)port, (int)var_backlog, 1, fds,
	                MX_MAIN_MAXFDS, &err);
	if (n < 0)
		mx_main_fatal("smtpd_listen", &err);
	return n;
}

static SSL_CTX *mx_main_tls(void)
{
	SSL_CTX *ctx;
	struct err err;

	if (strcasecmp(var_tls_level, "none") == 0 || var_tls_level[0] == '\0')
		return NULL;
	if (strcasecmp(var_tls_level, "may") != 0 &&
	    strcasecmp(var_tls_level, "encrypt") != 0) {
		err_set(&err, 0, "bad value \"%s\": none, may or encrypt",
		        var_tls_level);
		mx_main_fatal("smtpd_tls_security_level", &err);
	}
	if (var_tls_cert[0] == '\0') {
		if (strcasecmp(var_tls_level, "encrypt") == 0) {
			err_set(&err, 0, "encrypt needs smtpd_tls_cert_file");
			mx_main_fatal("smtpd_tls_security_level", &err);
		}
		log_warn("smtpd_tls_cert_file is empty: STARTTLS not offered");
		return NULL;
	}
	ctx = tls_server_ctx(var_tls_cert, var_tls_key, &err);
	if (ctx == NULL)
		mx_main_fatal("smtpd_tls_cert_file", &err);
	return ctx;
}

static void mx_main_redis(struct mx_relay *mx)
{
	struct err err;
	int i;

	if (var_redis_require_durable &&
	    redisc_check_durable(var_redis_server, var_redis_password,
	                         &err) < 0) {
		if (!err.temp)
			mx_main_fatal("redis_require_durable", &err);
		log_warn("redis_require_durable: cannot check now: %s", err.msg);
	}
	mx->nqueue = (int)var_redis_conns;
	mx->redisv = calloc((size_t)mx->nqueue, sizeof(*mx->redisv));
	mx->queuev = calloc((size_t)mx->nqueue, sizeof(*mx->queuev));
	if (mx->redisv == NULL || mx->queuev == NULL) {
		err_set(&err, 1, "out of memory");
		mx_main_fatal("redis_connections", &err);
	}
	for (i = 0; i < mx->nqueue; i++) {
		mx->redisv[i] = redisc_new(mx->base, var_redis_server,
		                           var_redis_password,
		                           (int)var_redis_database, &err);
		if (mx->redisv[i] == NULL)
			mx_main_fatal("redis_server", &err);
		mx->queuev[i] = queue_new(mx->base, mx->redisv[i], "mx", &err);
		if (mx->queuev[i] == NULL)
			mx_main_fatal("queue", &err);
	}
	mx->redis = mx->redisv[0];
	mx->queue = mx->queuev[0];
}

static void mx_main_server(struct mx_relay *mx, SSL_CTX *tls, int *fds,
                           int nfds)
{
	struct smtpd_settings set = {
		.name = "mx-relay",
		.myhostname = var_myhostname,
		.message_size_limit = (size_t)var_size_limit,
		.recipient_limit = (int)var_rcpt_limit,
		.timeout = (int)var_timeout,
		.hard_error_limit = (int)var_hard_errors,
		.greet_wait_ms = (int)var_greet_wait * 1000,
		.line_limit = (size_t)var_line_limit,
		.allow_bare_newline = !var_forbid_bare_nl,
		.tls_ctx = tls,
		.tls_required = strcasecmp(var_tls_level, "encrypt") == 0,
		.auth_enable = 0,      /* the MX never offers AUTH */
		.pool = mx->pool,
		.connection_limit = (unsigned)var_conn_limit,
		.client_connection_limit = (unsigned)var_client_conn_limit,
	};
	static struct milter_conf milters;  /* smtpd_milters: inbound checks */
	struct err err;
	int i;

	if (milter_conf_from_params(&milters, &err) < 0)
		mx_main_fatal("milter", &err);
	set.milters = &milters;
	mx->smtpd = smtpd_server_new(mx->base, &set, &mx_session_hooks, mx,
	                             &err);
	if (mx->smtpd == NULL)
		mx_main_fatal("smtpd", &err);
	for (i = 0; i < nfds; i++)
		if (smtpd_server_listen(mx->smtpd, fds[i], 0, &err) < 0)
			mx_main_fatal("smtpd_listen", &err);
}

static void mx_main_signal(evutil_socket_t sig, short what, void *arg)
{
	struct mx_relay *mx = arg;

	log_info("stopping on signal %d", (int)sig);
	event_base_loopbreak(mx->base);
}

/* SIGHUP (systemctl reload): new handshakes get the certificate and key
 * read again from the same files; sessions in TLS keep theirs, and a bad
 * new pair leaves the old one in use. Maps: every open
 * table reads its definition again (map_reload_all: texthash files at
 * once, mysql .cf files for new queries). */
static void mx_main_reload(evutil_socket_t sig, short what, void *arg)
{
	SSL_CTX *tls = arg;
	char desc[512];
	struct err err;

	map_main_reload("reload");
	if (tls == NULL) {
		log_info("reload: STARTTLS was off at start-up (no "
		         "smtpd_tls_cert_file): restart to turn it on");
		return;
	}
	if (tls_server_ctx_reload(tls, var_tls_cert, var_tls_key, &err) < 0) {
		log_warn("reload: keeping the current certificate: %s", err.msg);
		return;
	}
	tls_server_ctx_describe(tls, desc, sizeof(desc));
	log_info("reload: new TLS handshakes get %s", desc);
}

static void mx_main_cleanup(struct mx_relay *mx, SSL_CTX *tls)
{
	int i;

	smtpd_server_stop_listening(mx->smtpd);
	mx_forward_stop();
	/* the internal host gets a QUIT on each cached connection, not a
	 * "lost connection after DATA" */
	smtpc_closing_drain(mx->base);
	/* pending callbacks (queue writes, lookups) still find the server */
	for (i = 0; i < mx->nqueue; i++) {
		queue_free(mx->queuev[i]);
		redisc_free(mx->redisv[i]);
	}
	free(mx->queuev);
	free(mx->redisv);
	work_pool_free(mx->pool);
	mx->stopping = 1;
	smtpd_server_free(mx->smtpd);
	vlookup_domains_free(mx->relay_domains);
	vlookup_domains_free(mx->virtual_domains);
	map_free(mx->relay_rcpt);
	map_free(mx->vmailbox);
	map_free(mx->valias);
	if (tls != NULL)
		SSL_CTX_free(tls);
}

int main(int argc, char **argv)
{
	static struct mx_relay mx;
	int fds[MX_MAIN_MAXFDS], nfds;
	struct event *sig[3];
	SSL_CTX *tls;
	struct err err;

	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		fputs(mx_main_help, stdout);
		return 0;
	}
	cfg_daemon_init("mx-relay", argc, argv, mx_main_tabs, mx_main_help);
	log_open("mx-relay", var_syslog_enable, 1);
	log_set_debug(var_debug);
	signal(SIGPIPE, SIG_IGN);
	mx.base = evbase_new();
	if (mx.base == NULL) {
		err_set(&err, 1, "event_base_new failed");
		mx_main_fatal("libevent", &err);
	}
	mx_main_maps(&mx);
	nfds = mx_main_bind(fds);
	tls = mx_main_tls();
	mx_main_redis(&mx);
	if (priv_drop(var_mail_owner, &err) < 0)
		mx_main_fatal("mail_owner", &err);
	mx.pool = work_pool_new(mx.base, (int)var_threads, &err);
	if (mx.pool == NULL)
		mx_main_fatal("worker pool", &err);
	mx_main_server(&mx, tls, fds, nfds);
	if (var_forward_enable &&
	    mx_forward_start(mx.base, mx.pool, mx.queue, &err) < 0)
		mx_main_fatal("forwarder", &err);
	sig[0] = evsignal_new(mx.base, SIGTERM, mx_main_signal, &mx);
	sig[1] = evsignal_new(mx.base, SIGINT, mx_main_signal, &mx);
	sig[2] = evsignal_new(mx.base, SIGHUP, mx_main_reload, tls);
	event_add(sig[0], NULL);
	event_add(sig[1], NULL);
	event_add(sig[2], NULL);
	log_info("daemon started: listening on %s", var_smtpd_listen);
	event_base_dispatch(mx.base);
	mx_main_cleanup(&mx, tls);
	event_free(sig[0]);
	event_free(sig[1]);
	event_free(sig[2]);
	event_base_free(mx.base);
	cfg_free(mx_main_tabs);
	return 0;
}
