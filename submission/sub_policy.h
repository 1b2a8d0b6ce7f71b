/* sub_policy: the pure pieces of submission's policy: mynetworks
 * matching, Postfix restriction lists (smtpd_relay_restrictions and
 * friends), header scans (Message-ID/Date presence, Delivered-To loops)
 * and the headers an MSA adds (RFC 6409 §8). No I/O, no allocation
 * except sub_policy_net_new/_restr_new. */
#ifndef SUB_POLICY_H
#define SUB_POLICY_H

#include <stddef.h>
#include "err.h"

/* ---- mynetworks: "127.0.0.0/8 [::1]/128 192.0.2.7" ----------------- */
struct sub_policy_net;
struct sub_policy_net *sub_policy_net_new(const char *list, struct err *err);
/* addr: "192.0.2.7" or "2001:db8::1". 1 match, 0 not. NULL net: 0. */
int sub_policy_net_match(const struct sub_policy_net *n, const char *addr);
void sub_policy_net_free(struct sub_policy_net *n);

/* ---- restriction lists ------------------------------------------------ */
enum sub_policy_word {
	SUB_R_PERMIT_MYNETWORKS,
	SUB_R_PERMIT_SASL_AUTHENTICATED,
	SUB_R_REJECT_UNAUTH_DESTINATION,
	SUB_R_PERMIT,
	SUB_R_REJECT,
	SUB_R_PERMIT_AUTH_DESTINATION,
	SUB_R_REJECT_SENDER_LOGIN_MISMATCH,
};
#define SUB_R_MAX 16
struct sub_policy_restr {
	enum sub_policy_word w[SUB_R_MAX];
	int n;
};
/* Parse "permit_mynetworks, permit_sasl_authenticated, ..." into r.
 * Unknown words are an error (start-up refuses them). 0 or -1. */
int sub_policy_restr_parse(const char *text, struct sub_policy_restr *r,
			   struct err *err);

/* Facts a restriction list is judged on. */
struct sub_policy_facts {
	int mynetworks;      /* client in mynetworks */
	int authenticated;   /* SASL login done */
	int local_dest;      /* recipient domain is ours (or no rcpt known) */
	int login_mismatch;  /* sender not owned by the login */
};
enum sub_policy_verdict {
	SUB_V_DUNNO,                 /* list ran out: accept */
	SUB_V_PERMIT,
	SUB_V_REJECT,                /* explicit reject */
	SUB_V_REJECT_RELAY,          /* 554 5.7.1 Relay access denied */
	SUB_V_REJECT_LOGIN,          /* 553 5.7.1 not owned by user */
};
enum sub_policy_verdict sub_policy_eval(const struct sub_policy_restr *r,
					const struct sub_policy_facts *f);
/* 1 when the list holds word w (start-up checks), else 0. */
int sub_policy_restr_has(const struct sub_policy_restr *r,
			 enum sub_policy_word w);

/* ---- headers ---------------------------------------------------------- */
/* Length of the header section of msg (up to and including the empty
 * line, or all of msg when there is none). */
size_t sub_policy_hdr_len(const char *msg, size_t len);
/* 1 when the header section has a field named name (case-insensitive,
 * name without ':'). */
int sub_policy_hdr_has(const char *msg, size_t len, const char *name);
/* 1 when the header section has "Delivered-To: addr" (address compared
 * without case, surrounding white space ignored): a forwarding loop. */
int sub_policy_delivered_to(const char *msg, size_t len, const char *addr);
/* Where the MSA's added headers go: just after the leading trace fields
 * (Received:/Return-Path:) the engine put in front, so the message keeps
 * them first (RFC 5321 §4.4). Offset into msg. */
size_t sub_policy_insert_at(const char *msg, size_t len);

/* ---- misc ------------------------------------------------------------- */
/* 1 when login is among the owners list value ("a@x, b@y" as a map
 * returns it), compared without case. */
int sub_policy_owner_match(const char *owners, const char *login);
/* 1 when s is a safe key fragment for Redis/file names: 1..64 bytes of
 * [A-Za-z0-9._-]. XFORWARD IDENT values are checked with it. */
int sub_policy_token_ok(const char *s);

#endif
