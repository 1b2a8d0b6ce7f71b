/* mx_forward: mx-relay's policy for the shared scheduler: where mail goes
 * (transport_maps, then relayhost, then the recipient domain's MX), the
 * SASL credentials per next hop (smtp_sasl_password_maps) and the TLS
 * level. The parameters are Postfix smtp(8)'s names and defaults, except
 * that smtp_tls_security_level defaults to encrypt: this hop carries
 * mail between our own hosts and must never go in plaintext. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "log.h"
#include "map.h"
#include "mx_forward.h"
#include "mx_session.h"
#include "params.h"
#include "qmgr.h"
#include "queue.h"
#include "tls.h"

static char *var_relayhost, *var_transport_maps, *var_tls_level;
static char *var_tls_cafile, *var_sasl_passwd_maps, *var_dns_resolver;
static int var_sasl_enable, var_xforward;
static long var_dest_conc, var_min_backoff, var_max_backoff, var_lifetime;
static long var_bounce_lifetime;
static long var_run_delay, var_connect_tmout, var_helo_tmout, var_data_tmout;
static long var_conn_cache_time, var_lease_time, var_active_limit;

const struct cfg_param mx_forward_params[] = {
	{ "relayhost", CFG_STR, "", &var_relayhost, 0, 0 },
	{ "transport_maps", CFG_STR, "", &var_transport_maps, 0, 0 },
	/* none | may | encrypt | verify | secure (Postfix levels; verify and
	 * secure check the certificate against smtp_tls_CAfile) */
	{ "smtp_tls_security_level", CFG_STR, "encrypt", &var_tls_level, 0, 0 },
	{ "smtp_tls_CAfile", CFG_STR, "", &var_tls_cafile, 0, 0 },
	{ "smtp_sasl_auth_enable", CFG_BOOL, "no", &var_sasl_enable, 0, 0 },
	{ "smtp_sasl_password_maps", CFG_STR, "", &var_sasl_passwd_maps, 0, 0 },
	{ "smtp_send_xforward_command", CFG_BOOL, "yes", &var_xforward, 0, 0 },
	{ "smtp_destination_concurrency_limit", CFG_INT, "20", &var_dest_conc, 1, 1000 },
	{ "smtp_connect_timeout", CFG_TIME, "30s", &var_connect_tmout, 1, 3600 },
	{ "smtp_helo_timeout", CFG_TIME, "300s", &var_helo_tmout, 1, 3600 },
	{ "smtp_data_done_timeout", CFG_TIME, "600s", &var_data_tmout, 1, 3600 },
	{ "smtp_connection_cache_time_limit", CFG_TIME, "2s", &var_conn_cache_time, 1, 3600 },
	{ "smtp_dns_resolver", CFG_STR, "", &var_dns_resolver, 0, 0 },
	{ "minimal_backoff_time", CFG_TIME, "300s", &var_min_backoff, 1, 0 },
	{ "maximal_backoff_time", CFG_TIME, "4000s", &var_max_backoff, 1, 0 },
	{ "maximal_queue_lifetime", CFG_TIME, "5d", &var_lifetime, 0, 0 },
	{ "bounce_queue_lifetime", CFG_TIME, "5d", &var_bounce_lifetime, 0, 0 },
	{ "queue_run_delay", CFG_TIME, "300s", &var_run_delay, 0, 0 },
	/* how long a claimed message stays ours without renewal: a forwarder
	 * killed mid-delivery has its mail taken over after this. qmgr renews
	 * every third of it while it works, so it can be short (issue 12:
	 * in-flight mail delivered within 60 s of a restart after SIGKILL). */
	{ "queue_lease_time", CFG_TIME, "30s", &var_lease_time, 1, 86400 },
	{ "qmgr_message_active_limit", CFG_INT, "100", &var_active_limit, 1, 100000 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};

static struct {
	struct qmgr *qmgr;
	struct map *transport, *passwd;
	SSL_CTX *tls;
} mx_forward;

/* transport_maps value: "smtp:[host]:port", "relay:host", ":[host]"
 * (default transport), "smtp:" (default next hop) or "error:text". */
static int mx_forward_transport(const char *value, const char *domain,
    char **nexthop_r, struct err *err)
{
	const char *colon = strchr(value, ':');
	size_t tl = colon != NULL ? (size_t)(colon - value) : 0;
	const char *nh = colon != NULL ? colon + 1 : value;

	if (colon != NULL && tl == 5 && strncasecmp(value, "error", 5) == 0)
		return err_set(err, 0, "%s", *nh ? nh : "mail for this domain "
		    "is refused");
	if (colon != NULL && tl > 0 && !(tl == 4 && strncasecmp(value, "smtp", 4) == 0) &&
	    !(tl == 5 && strncasecmp(value, "relay", 5) == 0))
		return err_set(err, 1, "transport_maps: unsupported transport "
		    "\"%.*s\"", (int)tl, value);
	if (*nh == '\0')
		nh = *var_relayhost ? var_relayhost : domain;
	*nexthop_r = strdup(nh);
	return *nexthop_r != NULL ? 0 : err_set(err, 1, "out of memory");
}

/* qmgr route function, on a worker thread (the loop with route_inline). */
static int mx_forward_route(void *arg, const char *rcpt, char **nexthop_r,
    struct err *err)
{
	const char *at = strrchr(rcpt, '@');
	const char *domain = at != NULL ? at + 1 : var_myhostname;
	const char *keys[2] = { rcpt, domain };
	char *value = NULL;
	int i;

	for (i = 0; mx_forward.transport != NULL && i < 2; i++) {
		switch (map_lookup(mx_forward.transport, keys[i], &value, err)) {
		case MAP_FOUND: {
			int rc = mx_forward_transport(value, domain, nexthop_r, err);
			free(value);
			return rc;
		}
		case MAP_TEMPFAIL:
			return -1;
		case MAP_NOTFOUND:
			break;
		}
	}
	*nexthop_r = strdup(*var_relayhost ? var_relayhost : domain);
	return *nexthop_r != NULL ? 0 : err_set(err, 1, "out of memory");
}

/* qmgr credentials function, where the route runs: the next hop as written
 * ("[host]:port"), then without the port, then the bare host. */
static int mx_forward_creds(void *arg, const char *nexthop, char **user_r,
    char **pass_r, struct err *err)
{
	char keys[3][300], *value = NULL, *sep;
	const char *p;
	int i;

	*user_r = *pass_r = NULL;
	if (!var_sasl_enable || mx_forward.passwd == NULL)
		return 0;
	snprintf(keys[0], sizeof(keys[0]), "%s", nexthop);
	snprintf(keys[1], sizeof(keys[1]), "%s", nexthop);
	if ((sep = strrchr(keys[1], ':')) != NULL && strchr(keys[1], ']') < sep)
		*sep = '\0';
	p = keys[1][0] == '[' ? keys[1] + 1 : keys[1];
	snprintf(keys[2], sizeof(keys[2]), "%.*s", (int)strcspn(p, "]"), p);
	for (i = 0; i < 3; i++) {
		switch (map_lookup(mx_forward.passwd, keys[i], &value, err)) {
		case MAP_TEMPFAIL:
			return -1;
		case MAP_NOTFOUND:
			continue;
		case MAP_FOUND:
			break;
		}
		sep = strchr(value, ':');
		if (sep == NULL) {
			free(value);
			return err_set(err, 1, "smtp_sasl_password_maps: value "
			    "for %s is not user:password", keys[i]);
		}
		*user_r = strndup(value, (size_t)(sep - value));
		*pass_r = strdup(sep + 1);
		explicit_bzero(value, strlen(value));
		free(value);
		return 1;
	}
	return 0;
}

static int mx_forward_tls_level(enum smtpc_tls *level, int *verify,
    struct err *err)
{
	*verify = 0;
	if (strcasecmp(var_tls_level, "none") == 0)
		*level = SMTPC_TLS_NONE;
	else if (strcasecmp(var_tls_level, "may") == 0)
		*level = SMTPC_TLS_MAY;
	else if (strcasecmp(var_tls_level, "encrypt") == 0)
		*level = SMTPC_TLS_ENCRYPT;
	else if (strcasecmp(var_tls_level, "verify") == 0 ||
	    strcasecmp(var_tls_level, "secure") == 0) {
		*level = SMTPC_TLS_ENCRYPT;
		*verify = 1;
	} else
		return err_set(err, 0, "smtp_tls_security_level: bad value "
		    "\"%s\" (none, may, encrypt, verify, secure)", var_tls_level);
	return 0;
}

/* The qmgr is gone and no worker uses the maps any more. */
static void mx_forward_release(void *arg)
{
	map_free(mx_forward.transport);
	map_free(mx_forward.passwd);
	if (mx_forward.tls != NULL)
		SSL_CTX_free(mx_forward.tls);
	mx_forward.transport = mx_forward.passwd = NULL;
	mx_forward.tls = NULL;
}

static void mx_forward_wake(void *arg)
{
	qmgr_wake(arg);
}

int mx_forward_start(struct event_base *base, struct work_pool *pool,
    struct queue *q, struct err *err)
{
	struct qmgr_conf c;
	enum smtpc_tls level = SMTPC_TLS_ENCRYPT;
	int verify = 0;

	if (mx_forward_tls_level(&level, &verify, err) < 0)
		return -1;
	if (level != SMTPC_TLS_NONE) {
		mx_forward.tls = tls_client_ctx(*var_tls_cafile ? var_tls_cafile :
		    NULL, verify, err);
		if (mx_forward.tls == NULL)
			return -1;
	}
	if (*var_transport_maps &&
	    (mx_forward.transport = map_open(var_transport_maps, err)) == NULL)
		goto fail;
	if (var_sasl_enable && *var_sasl_passwd_maps &&
	    (mx_forward.passwd = map_open(var_sasl_passwd_maps, err)) == NULL)
		goto fail;
	memset(&c, 0, sizeof(c));
	c.myhostname = var_myhostname;
	c.minimal_backoff = var_min_backoff;
	c.maximal_backoff = var_max_backoff;
	c.queue_lifetime = var_lifetime;
	c.bounce_lifetime = var_bounce_lifetime;
	c.queue_run_delay = var_run_delay;
	c.lease_time = (int)var_lease_time;
	c.max_active = (int)var_active_limit;
	c.dest_concurrency = (int)var_dest_conc;
	c.conn_idle_time = (int)var_conn_cache_time;
	c.default_port = 25;
	c.dns_resolver = *var_dns_resolver ? var_dns_resolver : NULL;
	c.smtpc.helo_name = var_myhostname;
	c.smtpc.tls_level = level;
	c.smtpc.tls_ctx = mx_forward.tls;
	c.smtpc.connect_timeout = (int)var_connect_tmout;
	c.smtpc.cmd_timeout = (int)var_helo_tmout;
	c.smtpc.data_timeout = (int)var_data_tmout;
	c.smtpc.xforward = var_xforward;
	c.route = mx_forward_route;
	c.creds = mx_forward_creds;
	/* the two-host default (relayhost = [address]:port, texthash
	 * passwords): nothing to look up that can block */
	c.route_inline = *var_transport_maps == '\0' &&
	    qmgr_nexthop_is_literal(var_relayhost) &&
	    (!var_sasl_enable || mx_session_spec_inline(var_sasl_passwd_maps));
	c.on_free = mx_forward_release;
	mx_forward.qmgr = qmgr_new(base, pool, q, &c, err);
	if (mx_forward.qmgr == NULL)
		goto fail;
	queue_set_notify(q, mx_forward_wake, mx_forward.qmgr);
	log_info("forwarder started: relayhost=%s, tls=%s, sasl=%s",
	    *var_relayhost ? var_relayhost : "(MX)", var_tls_level,
	    var_sasl_enable ? "yes" : "no");
	return 0;
fail:
	mx_forward_release(NULL);
	return -1;
}

void mx_forward_stop(void)
{
	struct qmgr *m = mx_forward.qmgr;

	mx_forward.qmgr = NULL;
	if (m != NULL)
		qmgr_free(m);   /* mx_forward_release runs when it is gone */
}
