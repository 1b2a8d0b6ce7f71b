/* sasl_glue: Cyrus SASL wired to our password check and our options. The
 * server side never lets Cyrus look for sasldb, saslauthd or a config
 * file: every option comes from sasl_glue_getopt(), and PLAIN/LOGIN
 * passwords go to the daemon's checkpass function. Each glue object owns
 * its sasl_conn_t and the callback table Cyrus points into. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sasl/sasl.h>
#include <sasl/saslplug.h>
#include <sasl/saslutil.h>
#include "listen.h"
#include "log.h"
#include "sasl_glue.h"

#define SASL_GLUE_DEFAULT_MECHS "PLAIN LOGIN"
/* No file of ours: Cyrus then finds no <appname>.conf to read. */
#define SASL_GLUE_NO_CONF "/nonexistent/mailpair-sasl"
/* Cyrus keeps every callback as int (*)(void); void (*)(void) in between
 * tells the compiler the type change is meant. */
#define SASL_GLUE_PROC(f) ((int (*)(void))(void (*)(void))(f))

enum sasl_glue_cb {
	SASL_GLUE_CB_CHECKPASS, SASL_GLUE_CB_END, SASL_GLUE_NCB
};

/* What our password check said, which Cyrus's own codes do not keep: after
 * a refusal it falls back to pwcheck_method and reports that instead. */
enum sasl_glue_verdict {
	SASL_GLUE_V_NONE, SASL_GLUE_V_GOOD, SASL_GLUE_V_BAD, SASL_GLUE_V_TEMP
};

struct sasl_glue_server {
	sasl_conn_t *conn;
	sasl_callback_t cbs[SASL_GLUE_NCB];
	int ssf;
	enum sasl_glue_verdict verdict;  /* of checkpass in this call */
	int authenticated;
	char mech[32];
	char error[160];
	char attempted[256];             /* authentication id of the last
	                                    checkpass, for failure logs */
};

struct sasl_glue_client {
	sasl_conn_t *conn;
	sasl_callback_t cbs[5];
	char *user;
	sasl_secret_t *secret;
	const char *mech;
	char error[160];
};

static pthread_mutex_t sasl_glue_lock = PTHREAD_MUTEX_INITIALIZER;
static int sasl_glue_mutex_set, sasl_glue_server_ready, sasl_glue_client_ready;
static char *sasl_glue_server_mechlist, *sasl_glue_client_mechlist;
static sasl_glue_checkpass_fn *sasl_glue_checkpass_cb;
static void *sasl_glue_checkpass_arg;

/* ---- process-wide callbacks ---- */

static int sasl_glue_getopt(void *context, const char *plugin_name,
			    const char *option, const char **result,
			    unsigned *len)
{
	const char *v = NULL;

	if (strcmp(option, "mech_list") == 0)
		v = sasl_glue_server_mechlist;
	else if (strcmp(option, "client_mech_list") == 0)
		v = sasl_glue_client_mechlist;
	/* No auxprop store exists for us: PLAIN and LOGIN check passwords
	 * through SASL_CB_SERVER_USERDB_CHECKPASS only. */
	else if (strcmp(option, "auxprop_plugin") == 0)
		v = "mailpair";
	else if (strcmp(option, "pwcheck_method") == 0)
		v = "auxprop";
	else if (strcmp(option, "canon_user_plugin") == 0)
		v = "INTERNAL";
	else if (strcmp(option, "log_level") == 0)
		v = "3";        /* SASL_LOG_WARN: failures stay quiet */
	if (v == NULL)
		return SASL_FAIL;
	*result = v;
	if (len != NULL)
		*len = strlen(v);
	return SASL_OK;
}

static int sasl_glue_log(void *context, int level, const char *message)
{
	if (message != NULL)
		log_debug("sasl: %s", message);
	return SASL_OK;
}

/* Cyrus 2.1.28 does not free the string it asks for here, so we keep a
 * pointer to it (reachable, not a leak) rather than hand it a static one
 * that another version might free. Asked once, by sasl_server_init(). */
static char *volatile sasl_glue_confpath_kept;

static int sasl_glue_confpath(void *context, char **path)
{
	*path = strdup(SASL_GLUE_NO_CONF);
	sasl_glue_confpath_kept = *path;
	return *path == NULL ? SASL_NOMEM : SASL_OK;
}

/* An auxprop store that holds nothing: Cyrus looks properties up while
 * canonicalising every user name, and without a store of ours it would
 * open sasldb (or log a missing plugin) each time. */
static int sasl_glue_auxprop_lookup(void *glob_context,
				    sasl_server_params_t *sparams,
				    unsigned flags, const char *user,
				    unsigned ulen)
{
	return SASL_OK;
}

static sasl_auxprop_plug_t sasl_glue_auxprop = {
	.auxprop_lookup = sasl_glue_auxprop_lookup,
	.name = "mailpair",
};

static int sasl_glue_auxprop_init(const sasl_utils_t *utils, int max_version,
				  int *out_version, sasl_auxprop_plug_t **plug,
				  const char *plugname)
{
	if (max_version < SASL_AUXPROP_PLUG_VERSION)
		return SASL_BADVERS;
	*out_version = SASL_AUXPROP_PLUG_VERSION;
	*plug = &sasl_glue_auxprop;
	return SASL_OK;
}

static const sasl_callback_t sasl_glue_global_cbs[] = {
	{ SASL_CB_GETOPT, SASL_GLUE_PROC(sasl_glue_getopt), NULL },
	{ SASL_CB_LOG, SASL_GLUE_PROC(sasl_glue_log), NULL },
	{ SASL_CB_GETCONFPATH, SASL_GLUE_PROC(sasl_glue_confpath), NULL },
	{ SASL_CB_LIST_END, NULL, NULL },
};

static void *sasl_glue_mutex_alloc(void)
{
	pthread_mutex_t *m = malloc(sizeof(*m));

	if (m != NULL)
		pthread_mutex_init(m, NULL);
	return m;
}

static int sasl_glue_mutex_lock(void *m)
{
	return pthread_mutex_lock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static int sasl_glue_mutex_unlock(void *m)
{
	return pthread_mutex_unlock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static void sasl_glue_mutex_free(void *m)
{
	if (m != NULL) {
		pthread_mutex_destroy(m);
		free(m);
	}
}

/* Cyrus's built-in mutexes do nothing; steps run on worker threads. Must
 * precede both sasl_server_init() and sasl_client_init(). Lock held. */
static void sasl_glue_set_mutex(void)
{
	if (sasl_glue_mutex_set)
		return;
	sasl_set_mutex(sasl_glue_mutex_alloc, sasl_glue_mutex_lock,
		       sasl_glue_mutex_unlock, sasl_glue_mutex_free);
	sasl_glue_mutex_set = 1;
}

static enum sasl_glue_rc sasl_glue_map(int r)
{
	switch (r) {
	case SASL_OK:
		return SASL_GLUE_OK;
	case SASL_CONTINUE:
		return SASL_GLUE_CONTINUE;
	case SASL_NOMECH:
	case SASL_TOOWEAK:
	case SASL_ENCRYPT:
		return SASL_GLUE_NOMECH;
	case SASL_BADPROT:
	case SASL_BADPARAM:
		return SASL_GLUE_BADPROT;
	case SASL_TRYAGAIN:
	case SASL_UNAVAIL:
	case SASL_NOMEM:
		return SASL_GLUE_TEMPFAIL;
	default:
		return SASL_GLUE_FAIL;
	}
}

/* Wire text -> bytes. in "=" is the empty initial response (RFC 4954 §4)
 * only where eq_empty is set. *buf_r is malloc'd; 0 or -1 (not base64). */
static int sasl_glue_decode(const char *in, int eq_empty, char **buf_r,
			    unsigned *len_r)
{
	size_t inlen = strlen(in);
	unsigned cap;

	*buf_r = NULL;
	*len_r = 0;
	if (inlen > 65536)
		return -1;
	cap = inlen / 4 * 3 + 4;
	*buf_r = malloc(cap);
	if (*buf_r == NULL)
		return -1;
	(*buf_r)[0] = '\0';
	if (eq_empty && strcmp(in, "=") == 0)
		return 0;
	if (inlen == 0)
		return 0;
	if (sasl_decode64(in, inlen, *buf_r, cap, len_r) != SASL_OK) {
		free(*buf_r);
		*buf_r = NULL;
		return -1;
	}
	return 0;
}

/* Bytes -> malloc'd base64 text ("" for none). NULL when out of memory. */
static char *sasl_glue_encode(const char *data, unsigned len)
{
	unsigned cap = (len + 2) / 3 * 4 + 1, outlen = 0;
	char *out = malloc(cap);

	if (out == NULL)
		return NULL;
	out[0] = '\0';
	if (len > 0 && sasl_encode64(data, len, out, cap, &outlen) != SASL_OK) {
		free(out);
		return NULL;
	}
	out[outlen] = '\0';
	return out;
}

void sasl_glue_ipport(const struct sockaddr *sa, char *out, size_t n)
{
	char host[64];

	if (n == 0)
		return;
	listen_addr_string(sa, host, sizeof(host));
	snprintf(out, n, "%s;%d", host, listen_addr_port(sa));
}

/* ---- server ---- */

static char *sasl_glue_mechs_dup(const char *mech_list)
{
	return strdup(mech_list != NULL && mech_list[0] != '\0' ? mech_list :
		      SASL_GLUE_DEFAULT_MECHS);
}

int sasl_glue_server_init(const char *appname, const char *mech_list,
			  sasl_glue_checkpass_fn *fn, void *arg,
			  struct err *err)
{
	int r;

	if (fn == NULL)
		return err_set(err, 0, "sasl: no password check function");
	pthread_mutex_lock(&sasl_glue_lock);
	if (sasl_glue_server_ready) {
		pthread_mutex_unlock(&sasl_glue_lock);
		return 0;
	}
	sasl_glue_set_mutex();
	sasl_glue_server_mechlist = sasl_glue_mechs_dup(mech_list);
	sasl_glue_checkpass_cb = fn;
	sasl_glue_checkpass_arg = arg;
	r = sasl_glue_server_mechlist == NULL ? SASL_NOMEM :
		sasl_server_init(sasl_glue_global_cbs,
				 appname ? appname : "mailpair");
	if (r == SASL_OK)
		r = sasl_auxprop_add_plugin("mailpair",
					    sasl_glue_auxprop_init);
	if (r == SASL_OK)
		sasl_glue_server_ready = 1;
	pthread_mutex_unlock(&sasl_glue_lock);
	if (r != SASL_OK)
		return err_set(err, 0, "sasl_server_init: %s",
			       sasl_errstring(r, NULL, NULL));
	return 0;
}

/* SASL_CB_SERVER_USERDB_CHECKPASS: PLAIN and LOGIN land here with the
 * authentication id as the client sent it (no realm: user_realm is NULL,
 * so Cyrus's canonicalisation only trims white space). */
static int sasl_glue_checkpass(sasl_conn_t *conn, void *context,
			       const char *user, const char *pass,
			       unsigned passlen, struct propctx *propctx)
{
	struct sasl_glue_server *s = context;
	char *p;
	int ok;

	/* Kept for the failure log (fail2ban wants the name tried); cut at
	 * the buffer, cleaned by whoever prints it. */
	snprintf(s->attempted, sizeof(s->attempted), "%s", user);
	p = malloc(passlen + 1);
	if (p == NULL) {
		s->verdict = SASL_GLUE_V_TEMP;
		return SASL_NOMEM;
	}
	memcpy(p, pass, passlen);
	p[passlen] = '\0';
	/* A NUL inside the password would make it compare as a prefix. */
	ok = strlen(p) != passlen ? 0 :
		sasl_glue_checkpass_cb(sasl_glue_checkpass_arg, user, p);
	explicit_bzero(p, passlen);
	free(p);
	if (ok < 0) {
		s->verdict = SASL_GLUE_V_TEMP;
		return SASL_UNAVAIL;
	}
	s->verdict = ok == 1 ? SASL_GLUE_V_GOOD : SASL_GLUE_V_BAD;
	return ok == 1 ? SASL_OK : SASL_BADAUTH;
}

static int sasl_glue_server_props(struct sasl_glue_server *s, unsigned flags)
{
	sasl_security_properties_t sp;

	memset(&sp, 0, sizeof(sp));
	/* No SASL security layer: TLS protects the session, and the
	 * bufferevents carry no SASL framing. */
	sp.min_ssf = 0;
	sp.max_ssf = 0;
	sp.maxbufsize = 0;
	sp.security_flags = flags;
	return sasl_setprop(s->conn, SASL_SEC_PROPS, &sp);
}

struct sasl_glue_server *sasl_glue_server_new(const char *service,
					      const char *fqdn,
					      const char *local_ipport,
					      const char *remote_ipport,
					      int ssf, struct err *err)
{
	struct sasl_glue_server *s;
	sasl_ssf_t ext = ssf > 0 ? (sasl_ssf_t)ssf : 0;
	int r;

	if (!sasl_glue_server_ready) {
		err_set(err, 0, "sasl: sasl_glue_server_init() not called");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		err_set(err, 1, "sasl: out of memory");
		return NULL;
	}
	s->ssf = ssf;
	s->cbs[SASL_GLUE_CB_CHECKPASS].id = SASL_CB_SERVER_USERDB_CHECKPASS;
	s->cbs[SASL_GLUE_CB_CHECKPASS].proc =
		SASL_GLUE_PROC(sasl_glue_checkpass);
	s->cbs[SASL_GLUE_CB_CHECKPASS].context = s;
	s->cbs[SASL_GLUE_CB_END].id = SASL_CB_LIST_END;
	r = sasl_server_new(service, fqdn, NULL, local_ipport, remote_ipport,
			    s->cbs, SASL_SUCCESS_DATA, &s->conn);
	if (r == SASL_OK)
		r = sasl_setprop(s->conn, SASL_SSF_EXTERNAL, &ext);
	if (r == SASL_OK)
		r = sasl_glue_server_props(s, SASL_SEC_NOANONYMOUS);
	if (r != SASL_OK) {
		err_set(err, r == SASL_NOMEM, "sasl_server_new: %s",
			s->conn ? sasl_errdetail(s->conn) :
			sasl_errstring(r, NULL, NULL));
		sasl_glue_server_free(s);
		return NULL;
	}
	return s;
}

int sasl_glue_server_set_options(struct sasl_glue_server *s,
				 const char *options, struct err *err)
{
	static const struct { const char *name; unsigned flag; } words[] = {
		{ "noanonymous", SASL_SEC_NOANONYMOUS },
		{ "noplaintext", SASL_SEC_NOPLAINTEXT },
		{ "nodictionary", SASL_SEC_NODICTIONARY },
		{ "noactive", SASL_SEC_NOACTIVE },
		{ "mutual_auth", SASL_SEC_MUTUAL_AUTH },
		{ "forward_secrecy", SASL_SEC_FORWARD_SECRECY },
	};
	const char *p = options ? options : "";
	unsigned flags = 0, i;
	size_t len;

	while (*p != '\0') {
		p += strspn(p, ", \t");
		len = strcspn(p, ", \t");
		if (len == 0)
			break;
		for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (strlen(words[i].name) == len &&
			    strncmp(words[i].name, p, len) == 0)
				break;
		if (i == sizeof(words) / sizeof(words[0]))
			return err_set(err, 0, "unknown SASL security option "
				       "\"%.*s\"", (int)(len > 40 ? 40 : len),
				       p);
		flags |= words[i].flag;
		p += len;
	}
	if (sasl_glue_server_props(s, flags) != SASL_OK)
		return err_set(err, 0, "sasl: cannot set security options");
	return 0;
}

const char *sasl_glue_server_mechs(struct sasl_glue_server *s)
{
	const char *list = NULL;
	unsigned len = 0;
	int count = 0;

	if (s == NULL ||
	    sasl_listmech(s->conn, NULL, "", " ", "", &list, &len,
			  &count) != SASL_OK || list == NULL)
		return "";
	return list;
}

/* Turn Cyrus's answer into ours, with the challenge or success data. */
static enum sasl_glue_rc sasl_glue_server_result(struct sasl_glue_server *s,
						 int r, const char *out,
						 unsigned outlen, char **out_r)
{
	enum sasl_glue_rc rc = sasl_glue_map(r);

	if (rc != SASL_GLUE_OK && s->verdict == SASL_GLUE_V_TEMP)
		rc = SASL_GLUE_TEMPFAIL;
	else if (rc != SASL_GLUE_OK && s->verdict == SASL_GLUE_V_BAD)
		rc = SASL_GLUE_FAIL;
	s->authenticated = rc == SASL_GLUE_OK;
	if (rc == SASL_GLUE_CONTINUE || (rc == SASL_GLUE_OK && out != NULL &&
					 outlen > 0)) {
		*out_r = sasl_glue_encode(out, outlen);
		if (*out_r == NULL)
			rc = SASL_GLUE_TEMPFAIL;
	}
	if (rc != SASL_GLUE_OK && rc != SASL_GLUE_CONTINUE)
		snprintf(s->error, sizeof(s->error), "%s",
			 sasl_errdetail(s->conn));
	return rc;
}

enum sasl_glue_rc sasl_glue_server_start(struct sasl_glue_server *s,
					 const char *mech, const char *in,
					 char **out_r)
{
	const char *out = NULL;
	unsigned outlen = 0, inlen = 0;
	char *buf = NULL;
	int r;

	*out_r = NULL;
	s->verdict = SASL_GLUE_V_NONE;
	s->authenticated = 0;
	s->error[0] = '\0';
	s->attempted[0] = '\0';
	if (mech == NULL || strlen(mech) >= sizeof(s->mech)) {
		snprintf(s->error, sizeof(s->error), "bad mechanism name");
		return SASL_GLUE_NOMECH;
	}
	snprintf(s->mech, sizeof(s->mech), "%s", mech);
	if (in != NULL && sasl_glue_decode(in, 1, &buf, &inlen) < 0) {
		snprintf(s->error, sizeof(s->error), "bad base64 in initial "
			 "response");
		return SASL_GLUE_BADPROT;
	}
	r = sasl_server_start(s->conn, mech, buf, inlen, &out, &outlen);
	if (buf != NULL) {
		explicit_bzero(buf, inlen);
		free(buf);
	}
	return sasl_glue_server_result(s, r, out, outlen, out_r);
}

enum sasl_glue_rc sasl_glue_server_step(struct sasl_glue_server *s,
					const char *in, char **out_r)
{
	const char *out = NULL;
	unsigned outlen = 0, inlen = 0;
	char *buf = NULL;
	int r;

	*out_r = NULL;
	s->verdict = SASL_GLUE_V_NONE;
	s->authenticated = 0;
	s->error[0] = '\0';
	/* RFC 4954 §4, RFC 3501 §6.2.2: "*" cancels the exchange. */
	if (in == NULL || strcmp(in, "*") == 0) {
		snprintf(s->error, sizeof(s->error), "cancelled by client");
		return SASL_GLUE_BADPROT;
	}
	if (sasl_glue_decode(in, 0, &buf, &inlen) < 0) {
		snprintf(s->error, sizeof(s->error), "bad base64 in response");
		return SASL_GLUE_BADPROT;
	}
	r = sasl_server_step(s->conn, buf, inlen, &out, &outlen);
	explicit_bzero(buf, inlen);
	free(buf);
	return sasl_glue_server_result(s, r, out, outlen, out_r);
}

const char *sasl_glue_server_user(struct sasl_glue_server *s)
{
	const void *user = NULL;

	if (s == NULL || !s->authenticated ||
	    sasl_getprop(s->conn, SASL_USERNAME, &user) != SASL_OK)
		return NULL;
	return user;
}

const char *sasl_glue_server_attempted_user(struct sasl_glue_server *s)
{
	const void *user = NULL;

	if (s == NULL)
		return NULL;
	if (s->attempted[0] != '\0')
		return s->attempted;
	/* A mechanism that never reached checkpass may still have parsed
	 * and canonicalised the name. */
	if (sasl_getprop(s->conn, SASL_USERNAME, &user) != SASL_OK ||
	    user == NULL || ((const char *)user)[0] == '\0')
		return NULL;
	return user;
}

const char *sasl_glue_server_mech(struct sasl_glue_server *s)
{
	return s != NULL ? s->mech : "";
}

const char *sasl_glue_server_error(struct sasl_glue_server *s)
{
	return s != NULL ? s->error : "";
}

void sasl_glue_server_free(struct sasl_glue_server *s)
{
	if (s == NULL)
		return;
	if (s->conn != NULL)
		sasl_dispose(&s->conn);
	free(s);
}

/* ---- client ---- */

int sasl_glue_client_init(const char *appname, const char *mech_list,
			  struct err *err)
{
	int r;

	pthread_mutex_lock(&sasl_glue_lock);
	if (sasl_glue_client_ready) {
		pthread_mutex_unlock(&sasl_glue_lock);
		return 0;
	}
	sasl_glue_set_mutex();
	sasl_glue_client_mechlist = sasl_glue_mechs_dup(mech_list);
	r = sasl_glue_client_mechlist == NULL ? SASL_NOMEM :
		sasl_client_init(sasl_glue_global_cbs);
	if (r == SASL_OK)
		sasl_glue_client_ready = 1;
	pthread_mutex_unlock(&sasl_glue_lock);
	if (r != SASL_OK)
		return err_set(err, 0, "sasl_client_init: %s",
			       sasl_errstring(r, NULL, NULL));
	return 0;
}

static int sasl_glue_client_simple(void *context, int id,
				   const char **result, unsigned *len)
{
	struct sasl_glue_client *c = context;

	/* SASL_CB_USER is the authorization id: "" means "the same as the
	 * authentication id" (RFC 4616 §2). */
	*result = id == SASL_CB_AUTHNAME ? c->user : "";
	if (len != NULL)
		*len = strlen(*result);
	return SASL_OK;
}

static int sasl_glue_client_pass(sasl_conn_t *conn, void *context, int id,
				 sasl_secret_t **psecret)
{
	struct sasl_glue_client *c = context;

	*psecret = c->secret;
	return SASL_OK;
}

static int sasl_glue_client_setup(struct sasl_glue_client *c, const char *pass)
{
	size_t plen = strlen(pass);

	c->secret = malloc(sizeof(*c->secret) + plen + 1);
	if (c->user == NULL || c->secret == NULL)
		return -1;
	c->secret->len = plen;
	memcpy(c->secret->data, pass, plen + 1);
	c->cbs[0] = (sasl_callback_t){ SASL_CB_AUTHNAME,
		SASL_GLUE_PROC(sasl_glue_client_simple), c };
	c->cbs[1] = (sasl_callback_t){ SASL_CB_USER,
		SASL_GLUE_PROC(sasl_glue_client_simple), c };
	c->cbs[2] = (sasl_callback_t){ SASL_CB_PASS,
		SASL_GLUE_PROC(sasl_glue_client_pass), c };
	c->cbs[3] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };
	return 0;
}

struct sasl_glue_client *sasl_glue_client_new(const char *service,
					      const char *server_fqdn,
					      const char *user,
					      const char *pass, int ssf,
					      struct err *err)
{
	struct sasl_glue_client *c;
	sasl_security_properties_t sp;
	sasl_ssf_t ext = ssf > 0 ? (sasl_ssf_t)ssf : 0;
	int r;

	if (user == NULL || pass == NULL) {
		err_set(err, 0, "sasl: no user name or password");
		return NULL;
	}
	if (sasl_glue_client_init(NULL, NULL, err) < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->user = strdup(user),
			  sasl_glue_client_setup(c, pass) < 0)) {
		err_set(err, 1, "sasl: out of memory");
		sasl_glue_client_free(c);
		return NULL;
	}
	r = sasl_client_new(service, server_fqdn, NULL, NULL, c->cbs, 0,
			    &c->conn);
	if (r == SASL_OK)
		r = sasl_setprop(c->conn, SASL_SSF_EXTERNAL, &ext);
	if (r == SASL_OK) {
		memset(&sp, 0, sizeof(sp));
		/* Never send a password in the clear without TLS under us. */
		sp.security_flags = SASL_SEC_NOANONYMOUS |
			(ssf > 0 ? 0 : SASL_SEC_NOPLAINTEXT);
		r = sasl_setprop(c->conn, SASL_SEC_PROPS, &sp);
	}
	if (r != SASL_OK) {
		err_set(err, r == SASL_NOMEM, "sasl_client_new: %s",
			sasl_errstring(r, NULL, NULL));
		sasl_glue_client_free(c);
		return NULL;
	}
	return c;
}

/* The server's mechanisms that are also in our client list, so a server
 * offering GSSAPI or a mechanism we lack credentials for is never tried. */
static char *sasl_glue_client_filter(const char *server_mechs)
{
	const char *p = server_mechs, *q;
	char *out = malloc(strlen(server_mechs) + 1);
	size_t len, olen = 0, qlen;

	if (out == NULL)
		return NULL;
	while (*p != '\0') {
		p += strspn(p, " \t,");
		len = strcspn(p, " \t,");
		if (len == 0)
			break;
		for (q = sasl_glue_client_mechlist; *q != '\0'; q += qlen) {
			q += strspn(q, " \t,");
			qlen = strcspn(q, " \t,");
			if (qlen == len && strncasecmp(p, q, len) == 0) {
				if (olen > 0)
					out[olen++] = ' ';
				memcpy(out + olen, p, len);
				olen += len;
				break;
			}
		}
		p += len;
	}
	out[olen] = '\0';
	return out;
}

static enum sasl_glue_rc sasl_glue_client_result(struct sasl_glue_client *c,
						 int r, const char *out,
						 unsigned outlen,
						 int initial, char **out_r)
{
	enum sasl_glue_rc rc = sasl_glue_map(r);

	if (rc != SASL_GLUE_OK && rc != SASL_GLUE_CONTINUE) {
		snprintf(c->error, sizeof(c->error), "%s",
			 sasl_errdetail(c->conn));
		return rc;
	}
	if (initial && out == NULL)
		return rc;      /* no initial response: "AUTH LOGIN" */
	/* RFC 4954 §4: an empty initial response is sent as "=". */
	*out_r = initial && outlen == 0 ? strdup("=") :
		sasl_glue_encode(out, outlen);
	return *out_r == NULL ? SASL_GLUE_TEMPFAIL : rc;
}

enum sasl_glue_rc sasl_glue_client_start(struct sasl_glue_client *c,
					 const char *server_mechs,
					 const char **mech_r, char **out_r)
{
	sasl_interact_t *prompts = NULL;
	const char *out = NULL, *mech = NULL;
	unsigned outlen = 0;
	char *list;
	int r;

	*out_r = NULL;
	*mech_r = NULL;
	c->error[0] = '\0';
	list = sasl_glue_client_filter(server_mechs ? server_mechs : "");
	if (list == NULL)
		return SASL_GLUE_TEMPFAIL;
	if (list[0] == '\0') {
		free(list);
		snprintf(c->error, sizeof(c->error), "no common mechanism");
		return SASL_GLUE_NOMECH;
	}
	r = sasl_client_start(c->conn, list, &prompts, &out, &outlen, &mech);
	free(list);
	if (r == SASL_INTERACT)
		r = SASL_BADPARAM;
	c->mech = mech;
	*mech_r = mech;
	return sasl_glue_client_result(c, r, out, outlen, 1, out_r);
}

enum sasl_glue_rc sasl_glue_client_step(struct sasl_glue_client *c,
					const char *in_b64, char **out_r)
{
	sasl_interact_t *prompts = NULL;
	const char *out = NULL;
	unsigned outlen = 0, inlen = 0;
	char *buf = NULL;
	int r;

	*out_r = NULL;
	c->error[0] = '\0';
	if (in_b64 == NULL || sasl_glue_decode(in_b64, 0, &buf, &inlen) < 0) {
		snprintf(c->error, sizeof(c->error), "bad base64 challenge");
		return SASL_GLUE_BADPROT;
	}
	r = sasl_client_step(c->conn, buf, inlen, &prompts, &out, &outlen);
	free(buf);
	if (r == SASL_INTERACT)
		r = SASL_BADPARAM;
	return sasl_glue_client_result(c, r, out, outlen, 0, out_r);
}

const char *sasl_glue_client_error(struct sasl_glue_client *c)
{
	return c != NULL ? c->error : "";
}

void sasl_glue_client_free(struct sasl_glue_client *c)
{
	if (c == NULL)
		return;
	if (c->conn != NULL)
		sasl_dispose(&c->conn);
	if (c->secret != NULL) {
		explicit_bzero(c->secret->data, c->secret->len);
		free(c->secret);
	}
	free(c->user);
	free(c);
}
