/* milter: the MTA side of the milter protocol (Postfix's smtpd_milters)
 * over inet:host:port and unix:/path sockets, with Postfix's parameters.
 * The calls that talk to milters block (poll() with the milter_*_timeout
 * limits), so the SMTP engine runs them on a worker pool, one job per SMTP
 * stage, the job owning the session's struct milter_sess while it is out:
 * a milter conversation is strictly one request, then its replies, so a
 * straight-line exchange per stage is simplest and the slow milter holds a
 * pool thread, never the loop. The wire format is milter_proto.c; message
 * edits are milter_edit.c. */
#ifndef MILTER_H
#define MILTER_H

#include <stddef.h>
#include "cfg.h"
#include "err.h"
#include "milter_edit.h"
#include "milter_proto.h"

/* Parameters, Postfix names and defaults: smtpd_milters,
 * milter_default_action, milter_protocol, milter_connect_timeout,
 * milter_command_timeout, milter_content_timeout, milter_connect_macros,
 * milter_helo_macros, milter_mail_macros, milter_rcpt_macros,
 * milter_data_macros, milter_end_of_header_macros,
 * milter_end_of_data_macros, milter_macro_daemon_name, milter_macro_v;
 * and ours: milter_worker_threads (how many milter calls run at once).
 * A daemon lists milter_params in its tables. */
extern const struct cfg_param milter_params[];

enum milter_action {
	MILTER_ACT_ACCEPT, MILTER_ACT_REJECT, MILTER_ACT_TEMPFAIL,
	MILTER_ACT_QUARANTINE,
};

struct milter_conf {
	char **specs;                  /* smtpd_milters, split */
	int n;
	enum milter_action default_action;
	int protocol;                  /* 2..6 */
	int connect_timeout, command_timeout, content_timeout; /* seconds */
	char *macros[MILTER_NSTAGES];  /* name lists, by stage */
	char *daemon_name;             /* {daemon_name} */
	char *version;                 /* v */
	int threads;
	int peername_lookup;           /* smtpd_peername_lookup */
};

/* From the loaded parameters (after cfg_load). -1 with err (the parameter
 * named) for a bad socket spec or action. The conf owns copies. */
int milter_conf_from_params(struct milter_conf *c, struct err *err);
/* Parse one spec: "inet:host:port", "inet:[v6]:port", "unix:/path". */
int milter_spec_check(const char *spec, struct err *err);
void milter_conf_free(struct milter_conf *c);

/* What the milters are told about the SMTP session: the macro values and
 * the command arguments (copies owned by the caller; NULL: unknown, the
 * macro is not sent). */
struct milter_env {
	const char *myhostname;        /* j */
	const char *client_name, *client_addr;
	const char *client_ptr;        /* {client_ptr}: the PTR name, even
	                                  when it does not resolve back */
	int client_port;
	unsigned client_connections;   /* {client_connections}; 0: not sent */
	const char *daemon_addr;       /* our address */
	const char *helo;
	const char *qid;               /* i */
	const char *auth_type, *auth_authen;
	const char *auth_author;       /* MAIL AUTH= (RFC 4954 §5), decoded */
	const char *tls_version, *cipher;
	int cipher_bits;
	const char *cert_subject, *cert_issuer; /* a verified client cert's
	                                  subject and issuer CN */
	const char *sender;            /* MAIL, without <> */
	const char *const *mail_args;  /* ESMTP args of MAIL */
	size_t nmail_args;
	const char *mail_mailer, *mail_host; /* the sender's transport and
	                                  next hop ({mail_mailer} ...) */
	const char *rcpt;              /* RCPT, without <> */
	const char *rcpt_mailer, *rcpt_host; /* the recipient's */
};

/* The outcome of a stage for the SMTP reply. */
enum milter_verdict {
	MILTER_V_CONTINUE,             /* go on as without milters */
	MILTER_V_REJECT,               /* code (4xx/5xx) and text */
	MILTER_V_DISCARD,              /* accept, then drop the message */
};
struct milter_result {
	enum milter_verdict verdict;
	int code;                      /* REJECT: 421, 450, 451, 550, 554, ... */
	char text[512];                /* REJECT: "5.7.1 Command rejected" */
	char quarantine[256];          /* non-empty: hold the message */
	char why[256];                 /* a milter that failed: for the log */
};

/* The envelope and message changes from the end of data. */
struct milter_mods {
	char *sender;                  /* CHGFROM, or NULL */
	char **add_rcpts;              /* ADDRCPT(_PAR) */
	size_t nadd;
	char **del_rcpts;              /* DELRCPT */
	size_t ndel;
	struct buf msg;                /* the new message when changed */
	int changed;                   /* 1: msg holds it */
};
void milter_mods_free(struct milter_mods *m);

struct milter_sess;

/* No I/O: the milters are connected at the first stage. NULL: no memory.
 * conf is borrowed and must outlive the session. */
struct milter_sess *milter_sess_new(const struct milter_conf *conf);
/* Tell each connected milter QUIT (without waiting) and close. NULL ok. */
void milter_sess_free(struct milter_sess *ms);

/* The stages; each blocks (worker thread only), fills res and never
 * fails otherwise: a milter that is down, slow or speaks nonsense is
 * dropped for the rest of the connection and gets milter_default_action. */
/* CONNECT (once, connecting the milters) then HELO. */
void milter_helo(struct milter_sess *ms, const struct milter_env *env,
                 struct milter_result *res);
/* A new transaction: ABORT to each milter whose last transaction did not
 * reach end of message (RSET, a refusal), then MAIL. */
void milter_mail(struct milter_sess *ms, const struct milter_env *env,
                 struct milter_result *res);
void milter_rcpt(struct milter_sess *ms, const struct milter_env *env,
                 struct milter_result *res);
/* The DATA command, before the 354 (Postfix's DATA event, with
 * milter_data_macros): a refusal answers DATA itself. */
void milter_data(struct milter_sess *ms, const struct milter_env *env,
                 struct milter_result *res);
/* DATA (unless milter_data() sent it this transaction), the headers, EOH,
 * the body, end of message: msg is the whole
 * message (CRLF); the changes the milters asked for land in mods (the new
 * message in mods->msg, capped at max_size bytes when not 0: a milter
 * that grows it beyond gets the default action). */
void milter_message(struct milter_sess *ms, const struct milter_env *env,
                    const char *msg, size_t len, size_t max_size,
                    struct milter_mods *mods, struct milter_result *res);

/* The client's name as Postfix finds it, blocking (worker thread only):
 * the PTR name of addr (a numeric address) into ptr ("" when none), and
 * into name only when that name resolves back to addr (forward-confirmed
 * reverse DNS), else "unknown". */
void milter_client_names(const char *addr, char *name, size_t namelen,
                         char *ptr, size_t ptrlen);

#endif
