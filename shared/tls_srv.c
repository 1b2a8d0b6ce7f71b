/* tls_srv: the server side of TLS on a connection, as a libevent filter
 * bufferevent over the socket's (or, after STARTTLS, the plain)
 * bufferevent. OpenSSL does the handshake, through a BIO that reads and
 * writes the bufferevent under the filter. Then:
 *
 *  - TLS 1.3 with an AEAD suite (what every current client negotiates):
 *    the two application traffic secrets (from OpenSSL's key log
 *    callback) and the sequence numbers go to tls13_rec, and the SSL is
 *    freed. OpenSSL 3's SSL object alone is 7.6 KB and a live connection
 *    holds 13.3 KB of OpenSSL state (tests/bench/tls_floor.c); what is
 *    left is one struct tls13_rec, about 250 bytes. Cipher contexts exist
 *    only while records are sealed or opened. Kernel TLS would do the
 *    same in the kernel; it is not available everywhere we run.
 *  - Anything else (TLS 1.2): the SSL stays and does every record.
 *
 * The sequence numbers at the hand-over: the client's Finished was the
 * last record under its handshake key and OpenSSL reads record by record
 * (no read-ahead), so the client's next record is its first under the
 * application key (sequence 0). The server's records under its
 * application key are the NewSessionTickets written after the client's
 * Finished (RFC 8446 §4.6.1), all in the SSL_do_handshake call that
 * completes; the BIO counts them. The hand-over happens only when
 * OpenSSL holds no unread bytes and every record it wrote is whole.
 * Loop thread only. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "tls.h"
#include "tls13_rec.h"

#define TLS_SRV_IDLE_RECS 32   /* records in a row without data */

enum tls_srv_state {
	TLS_SRV_HANDSHAKE,
	TLS_SRV_OPENSSL,      /* the SSL does the records */
	TLS_SRV_RECORDS,      /* tls13_rec does them */
	TLS_SRV_FAILED,       /* error reported; input dropped */
};

/* What the handshake needs and the connection after it does not. */
struct tls_srv_hs {
	unsigned char csec[TLS13_REC_MAX_SECRET], ssec[TLS13_REC_MAX_SECRET];
	size_t clen, slen;
	unsigned wrecs;               /* application_data records written
	                                 in the current SSL_do_handshake */
	unsigned wother;              /* other records written in it */
	size_t wleft;                 /* bytes left of the record written */
	unsigned char whdr[TLS13_REC_HDR];
	unsigned whdr_len;
};

struct tls_srv {
	struct bufferevent *bev;      /* the filter; ts is its context */
	struct bufferevent *under;    /* what it reads and writes */
	SSL *ssl;                     /* owned; NULL once records are ours */
	struct tls13_rec *rec;        /* owned; NULL until then */
	struct tls_srv_hs *hs;        /* owned; NULL after the handshake */
	const SSL_CIPHER *cipher;     /* libssl's static table */
	int version;                  /* SSL_version(), 0 before the end */
	enum tls_srv_state state;
	int rd_closed;                /* the client sent close_notify */
	unsigned idle_recs;           /* records in a row without data */
	int alert;                    /* TLS13_AL_* sent, 256 + received,
	                                 -1 none */
	unsigned long ossl_err;       /* first OpenSSL error, 0 none */
};

/* ---- the BIO between OpenSSL and the bufferevent under the filter ---- */

static pthread_once_t tls_srv_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *tls_srv_bio_meth;   /* made once, never freed */

/* Count the records OpenSSL writes while the handshake runs. */
static void tls_srv_count(struct tls_srv_hs *hs, const unsigned char *p,
			  size_t n)
{
	while (n > 0) {
		if (hs->wleft > 0) {
			size_t k = n < hs->wleft ? n : hs->wleft;

			hs->wleft -= k;
			p += k;
			n -= k;
			continue;
		}
		hs->whdr[hs->whdr_len++] = *p++;
		n--;
		if (hs->whdr_len == TLS13_REC_HDR) {
			hs->whdr_len = 0;
			hs->wleft = (size_t)hs->whdr[3] << 8 | hs->whdr[4];
			if (hs->whdr[0] == TLS13_CT_APPDATA)
				hs->wrecs++;
			else
				hs->wother++;
		}
	}
}

static int tls_srv_bio_write(BIO *b, const char *p, int n)
{
	struct tls_srv *ts = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	if (ts->hs != NULL)
		tls_srv_count(ts->hs, (const unsigned char *)p, (size_t)n);
	if (evbuffer_add(bufferevent_get_output(ts->under), p,
			 (size_t)n) != 0)
		return -1;
	return n;
}

static int tls_srv_bio_read(BIO *b, char *p, int n)
{
	struct tls_srv *ts = BIO_get_data(b);
	int r;

	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	r = evbuffer_remove(bufferevent_get_input(ts->under), p, (size_t)n);
	if (r <= 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	return r;
}

static long tls_srv_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_srv *ts = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return ts == NULL ? 0 : (long)evbuffer_get_length(
			bufferevent_get_input(ts->under));
	default:
		return 0;
	}
}

static int tls_srv_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void tls_srv_bio_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() |
				     BIO_TYPE_SOURCE_SINK, "mailpair-bev");

	if (m == NULL)
		return;
	if (BIO_meth_set_write(m, tls_srv_bio_write) != 1 ||
	    BIO_meth_set_read(m, tls_srv_bio_read) != 1 ||
	    BIO_meth_set_ctrl(m, tls_srv_bio_ctrl) != 1 ||
	    BIO_meth_set_create(m, tls_srv_bio_create) != 1) {
		BIO_meth_free(m);
		return;
	}
	tls_srv_bio_meth = m;
}

/* ---- the key log: where OpenSSL hands out the traffic secrets -------- */

/* "LABEL <client random hex> <secret hex>" (NSS key log format) */
void tls_srv_keylog(const SSL *ssl, const char *line)
{
	static const char cl[] = "CLIENT_TRAFFIC_SECRET_0 ";
	static const char sl[] = "SERVER_TRAFFIC_SECRET_0 ";
	struct tls_srv *ts = SSL_get_app_data(ssl);
	unsigned char *dst;
	size_t *dlen, n = 0;
	const char *p;

	if (ts == NULL || ts->hs == NULL)
		return;
	if (strncmp(line, cl, sizeof(cl) - 1) == 0) {
		dst = ts->hs->csec, dlen = &ts->hs->clen;
	} else if (strncmp(line, sl, sizeof(sl) - 1) == 0) {
		dst = ts->hs->ssec, dlen = &ts->hs->slen;
	} else {
		return;
	}
	p = strchr(line + sizeof(cl) - 1, ' ');
	if (p == NULL)
		return;
	for (p++; p[0] != '\0' && p[1] != '\0'; p += 2) {
		int hi = OPENSSL_hexchar2int((unsigned char)p[0]),
		    lo = OPENSSL_hexchar2int((unsigned char)p[1]);

		if (hi < 0 || lo < 0 || n == TLS13_REC_MAX_SECRET) {
			n = 0;       /* not what we expect: no hand-over */
			break;
		}
		dst[n++] = (unsigned char)(hi << 4 | lo);
	}
	*dlen = p[0] == '\0' ? n : 0;
}

/* ---- failures --------------------------------------------------------- */

static void tls_srv_fail(struct tls_srv *ts, short what)
{
	evutil_socket_t fd = bufferevent_getfd(ts->under);

	if (ts->state == TLS_SRV_FAILED)
		return;
	ts->state = TLS_SRV_FAILED;
	/* the alert just queued (ours, or OpenSSL's) goes out now: the
	 * session frees the bufferevent, and what it holds, at the error.
	 * A socket bufferevent keeps the front of its output frozen but
	 * while it writes itself; so do we here. (The daemons ignore
	 * SIGPIPE.) */
	if (fd >= 0) {
		struct evbuffer *out = bufferevent_get_output(ts->under);

		evbuffer_unfreeze(out, 1);
		(void)evbuffer_write(out, fd);
		evbuffer_freeze(out, 1);
	}
	/* deferred: the filter callbacks are on the stack */
	bufferevent_trigger_event(ts->bev, BEV_EVENT_ERROR | what,
				  BEV_TRIG_DEFER_CALLBACKS);
}

static void tls_srv_fail_ossl(struct tls_srv *ts, short what)
{
	unsigned long e = ERR_peek_error();

	if (ts->ossl_err == 0)
		ts->ossl_err = e;
	ERR_clear_error();
	tls_srv_fail(ts, what);
}

/* ---- records that are ours ------------------------------------------- */

/* Seal n bytes of type onto the socket's output; -1 on failure. *wc is
 * the write cipher context, made here when NULL (the caller frees it). */
static int tls_srv_seal(struct tls_srv *ts, EVP_CIPHER_CTX **wc, int type,
			const unsigned char *p, size_t n)
{
	struct evbuffer *out = bufferevent_get_output(ts->under);
	struct evbuffer_iovec v;
	long len;

	if (*wc == NULL && (*wc = tls13_rec_cipher_ctx(ts->rec, 1)) == NULL)
		return -1;
	if (evbuffer_reserve_space(out, n + TLS13_REC_OVERHEAD, &v, 1) < 1)
		return -1;
	len = type == TLS13_CT_HANDSHAKE ?
	      tls13_rec_key_update(ts->rec, *wc, v.iov_base) :
	      tls13_rec_seal(ts->rec, *wc, type, p, n, v.iov_base);
	if (len < 0)
		return -1;
	v.iov_len = (size_t)len;
	evbuffer_commit_space(out, &v, 1);
	if (type == TLS13_CT_HANDSHAKE) {
		/* the write key changed: *wc is stale */
		EVP_CIPHER_CTX_free(*wc);
		*wc = NULL;
	}
	return 0;
}

/* Our KeyUpdate (the only handshake message we send), then the next
 * write key (RFC 8446 §4.6.3). */
static int tls_srv_key_update(struct tls_srv *ts, EVP_CIPHER_CTX **wc)
{
	return tls_srv_seal(ts, wc, TLS13_CT_HANDSHAKE, NULL, 5);
}

/* Application data: rekey first when the key is worn (§5.5). */
static int tls_srv_seal_data(struct tls_srv *ts, EVP_CIPHER_CTX **wc,
			     const unsigned char *p, size_t n)
{
	if (tls13_rec_write_worn(ts->rec) && tls_srv_key_update(ts, wc) < 0)
		return -1;
	return tls_srv_seal(ts, wc, TLS13_CT_APPDATA, p, n);
}

/* An alert of ours: the connection is over (RFC 8446 §6.2). */
static void tls_srv_alert(struct tls_srv *ts, EVP_CIPHER_CTX **wc, int desc)
{
	unsigned char a[2] = { 2, (unsigned char)desc };   /* fatal */

	ts->alert = desc;
	(void)tls_srv_seal(ts, wc, TLS13_CT_ALERT, a, sizeof(a));
	tls_srv_fail(ts, BEV_EVENT_READING);
}

/* Open every whole record in src into dst. 1 when data was added. */
static int tls_srv_open_all(struct tls_srv *ts, struct evbuffer *src,
			    struct evbuffer *dst)
{
	EVP_CIPHER_CTX *rc = NULL, *wc = NULL;
	unsigned char hdr[TLS13_REC_HDR], *rec;
	enum tls13_open res;
	int added = 0, alert = 0;
	size_t have, reclen, outlen;
	long blen;

	while (ts->state == TLS_SRV_RECORDS && !ts->rd_closed &&
	       (have = evbuffer_get_length(src)) >= TLS13_REC_HDR) {
		evbuffer_copyout(src, hdr, sizeof(hdr));
		blen = tls13_rec_header(hdr, &alert);
		if (blen < 0) {
			tls_srv_alert(ts, &wc, alert);
			break;
		}
		reclen = TLS13_REC_HDR + (size_t)blen;
		if (have < reclen)
			break;
		rec = evbuffer_pullup(src, (ev_ssize_t)reclen);
		if (rec == NULL || (rc == NULL &&
		    (rc = tls13_rec_cipher_ctx(ts->rec, 0)) == NULL)) {
			tls_srv_alert(ts, &wc, TLS13_AL_INTERNAL_ERROR);
			break;
		}
		/* opened in place: the plaintext overwrites the body */
		res = tls13_rec_open(ts->rec, rc, rec, reclen,
				     rec + TLS13_REC_HDR, &outlen, &alert);
		/* empty records and KeyUpdates cost us work and carry
		 * nothing: a client sending only those is refused, as
		 * OpenSSL refuses more than 32 empty records in a row */
		if (res == TLS13_OPEN_DATA && outlen > 0)
			ts->idle_recs = 0;
		else if (res != TLS13_OPEN_ERROR &&
			 ++ts->idle_recs > TLS_SRV_IDLE_RECS) {
			res = TLS13_OPEN_ERROR;
			alert = TLS13_AL_UNEXPECTED_MESSAGE;
		}
		switch (res) {
		case TLS13_OPEN_DATA:
			if (outlen > 0) {
				if (evbuffer_add(dst, rec + TLS13_REC_HDR,
						 outlen) != 0)
					tls_srv_fail(ts, BEV_EVENT_READING);
				added = 1;
			}
			break;
		case TLS13_OPEN_NOTHING:
			break;
		case TLS13_OPEN_KEY_REQUESTED:
			/* §4.6.3: ours goes before any more data */
			if (tls_srv_key_update(ts, &wc) < 0)
				tls_srv_fail(ts, BEV_EVENT_READING);
			/* fall through */
		case TLS13_OPEN_KEY_CHANGED:
			EVP_CIPHER_CTX_free(rc);
			rc = NULL;
			break;
		case TLS13_OPEN_CLOSE:
			ts->rd_closed = 1;
			bufferevent_trigger_event(ts->bev, BEV_EVENT_EOF |
				BEV_EVENT_READING, BEV_TRIG_DEFER_CALLBACKS);
			break;
		case TLS13_OPEN_ERROR:
			if (alert >= 256) {          /* the client's */
				ts->alert = alert;
				tls_srv_fail(ts, BEV_EVENT_READING);
			} else {
				tls_srv_alert(ts, &wc, alert);
			}
			break;
		}
		evbuffer_drain(src, reclen);
	}
	EVP_CIPHER_CTX_free(rc);
	EVP_CIPHER_CTX_free(wc);
	return added;
}

/* ---- records OpenSSL does -------------------------------------------- */

static int tls_srv_read_ssl(struct tls_srv *ts, struct evbuffer *dst)
{
	/* on the stack, not reserved in dst: a reservation would stay
	 * allocated, empty, on an idle connection */
	unsigned char buf[TLS13_REC_MAX_PLAIN];
	int added = 0, r;

	while (ts->state == TLS_SRV_OPENSSL && !ts->rd_closed) {
		ERR_clear_error();
		r = SSL_read(ts->ssl, buf, sizeof(buf));
		if (r > 0) {
			if (evbuffer_add(dst, buf, (size_t)r) != 0) {
				tls_srv_fail(ts, BEV_EVENT_READING);
				break;
			}
			added = 1;
			continue;
		}
		switch (SSL_get_error(ts->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			return added;
		case SSL_ERROR_ZERO_RETURN:          /* close_notify */
			ts->rd_closed = 1;
			bufferevent_trigger_event(ts->bev, BEV_EVENT_EOF |
				BEV_EVENT_READING, BEV_TRIG_DEFER_CALLBACKS);
			return added;
		default:
			tls_srv_fail_ossl(ts, BEV_EVENT_READING);
			return added;
		}
	}
	return added;
}

/* ---- the handshake ---------------------------------------------------- */

/* The handshake is done: hand the records to tls13_rec when we can. */
static void tls_srv_established(struct tls_srv *ts)
{
	struct tls_srv_hs *hs = ts->hs;
	struct tls13_rec *rec;
	unsigned suite;

	ts->cipher = SSL_get_current_cipher(ts->ssl);
	ts->version = SSL_version(ts->ssl);
	suite = ts->cipher != NULL ? SSL_CIPHER_get_protocol_id(ts->cipher) :
				     0;
	ts->state = TLS_SRV_OPENSSL;
	if (ts->version == TLS1_3_VERSION && tls13_rec_suite_ok(suite) &&
	    hs->clen > 0 && hs->clen == hs->slen && hs->whdr_len == 0 &&
	    hs->wleft == 0 && hs->wother == 0 && !SSL_has_pending(ts->ssl) &&
	    (rec = malloc(sizeof(*rec))) != NULL) {
		if (tls13_rec_init(rec, suite, hs->csec, hs->ssec, hs->clen, 0,
				   hs->wrecs) == 0) {
			SSL_free(ts->ssl);
			ts->ssl = NULL;
			ts->rec = rec;
			ts->state = TLS_SRV_RECORDS;
		} else {
			free(rec);
			ERR_clear_error();
		}
	}
	OPENSSL_cleanse(hs, sizeof(*hs));
	free(hs);
	ts->hs = NULL;
	bufferevent_trigger_event(ts->bev, BEV_EVENT_CONNECTED,
				  BEV_TRIG_DEFER_CALLBACKS);
}

static void tls_srv_handshake(struct tls_srv *ts)
{
	int r;

	ERR_clear_error();
	ts->hs->wrecs = ts->hs->wother = 0;
	r = SSL_do_handshake(ts->ssl);
	if (r == 1) {
		tls_srv_established(ts);
		/* what the session wrote meanwhile (an implicit-TLS
		 * greeting) waits in the filter's output */
		bufferevent_flush(ts->bev, EV_WRITE, BEV_NORMAL);
		return;
	}
	if (SSL_get_error(ts->ssl, r) != SSL_ERROR_WANT_READ)
		tls_srv_fail_ossl(ts, BEV_EVENT_READING);
}

/* ---- the filter ------------------------------------------------------- */

static enum bufferevent_filter_result
tls_srv_filter_in(struct evbuffer *src, struct evbuffer *dst,
		  ev_ssize_t lim, enum bufferevent_flush_mode mode, void *arg)
{
	struct tls_srv *ts = arg;
	int added = 0;

	/* Every whole record is opened, whatever lim says: records left
	 * in src would wait for the socket to be readable again, which
	 * a client waiting for our answer never makes it. */
	(void)lim;
	(void)mode;
	if (ts->state == TLS_SRV_HANDSHAKE)
		tls_srv_handshake(ts);
	if (ts->state == TLS_SRV_OPENSSL)
		added = tls_srv_read_ssl(ts, dst);
	else if (ts->state == TLS_SRV_RECORDS)
		added = tls_srv_open_all(ts, src, dst);
	if (ts->state == TLS_SRV_FAILED || ts->rd_closed)
		evbuffer_drain(src, evbuffer_get_length(src));
	if (added)
		return BEV_OK;
	return ts->state == TLS_SRV_FAILED ? BEV_ERROR : BEV_NEED_MORE;
}

static enum bufferevent_filter_result
tls_srv_filter_out(struct evbuffer *src, struct evbuffer *dst,
		   ev_ssize_t lim, enum bufferevent_flush_mode mode, void *arg)
{
	struct tls_srv *ts = arg;
	EVP_CIPHER_CTX *wc = NULL;
	size_t len, n;
	int r;

	(void)dst;                   /* == the output of ts->under */
	(void)lim;
	(void)mode;
	if (ts->state == TLS_SRV_HANDSHAKE)
		return BEV_NEED_MORE;        /* held until it is done */
	if (ts->state == TLS_SRV_FAILED) {
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_ERROR;
	}
	while ((len = evbuffer_get_length(src)) > 0) {
		n = len < TLS13_REC_MAX_PLAIN ? len : TLS13_REC_MAX_PLAIN;
		unsigned char *p = evbuffer_pullup(src, (ev_ssize_t)n);

		if (p == NULL) {
			tls_srv_fail(ts, BEV_EVENT_WRITING);
			break;
		}
		if (ts->state == TLS_SRV_RECORDS) {
			if (tls_srv_seal_data(ts, &wc, p, n) < 0) {
				tls_srv_fail(ts, BEV_EVENT_WRITING);
				break;
			}
		} else {
			ERR_clear_error();
			r = SSL_write(ts->ssl, p, (int)n);
			if (r <= 0) {
				tls_srv_fail_ossl(ts, BEV_EVENT_WRITING);
				break;
			}
			n = (size_t)r;
		}
		evbuffer_drain(src, n);
	}
	EVP_CIPHER_CTX_free(wc);
	if (ts->state == TLS_SRV_FAILED) {
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_ERROR;
	}
	return BEV_OK;
}

static void tls_srv_free(void *arg)
{
	struct tls_srv *ts = arg;

	if (ts == NULL)
		return;
	SSL_free(ts->ssl);
	if (ts->rec != NULL) {
		tls13_rec_clear(ts->rec);
		free(ts->rec);
	}
	if (ts->hs != NULL) {
		OPENSSL_cleanse(ts->hs, sizeof(*ts->hs));
		free(ts->hs);
	}
	free(ts);
}

/* ---- making one -------------------------------------------------------- */

/* A filter over under (which it owns from now on: freed with it).
 * NULL on failure, under untouched. */
static struct bufferevent *tls_srv_new(struct bufferevent *under,
				       SSL_CTX *ctx, struct tls_srv **tsp,
				       struct err *err)
{
	struct tls_srv *ts;
	BIO *bio;

	if (ctx == NULL) {
		err_set(err, 0, "tls: no context");
		return NULL;
	}
	if (pthread_once(&tls_srv_once, tls_srv_bio_init) != 0 ||
	    tls_srv_bio_meth == NULL) {
		err_set(err, 1, "tls: cannot make the BIO method");
		return NULL;
	}
	ts = calloc(1, sizeof(*ts));
	if (ts == NULL || (ts->hs = calloc(1, sizeof(*ts->hs))) == NULL) {
		free(ts);
		err_set(err, 1, "tls: out of memory");
		return NULL;
	}
	ts->under = under;
	ts->alert = -1;
	ts->ssl = SSL_new(ctx);
	bio = ts->ssl != NULL ? BIO_new(tls_srv_bio_meth) : NULL;
	if (bio == NULL) {
		err_set(err, 1, "tls: SSL_new failed");
		ERR_clear_error();
		tls_srv_free(ts);
		return NULL;
	}
	BIO_set_data(bio, ts);
	SSL_set_bio(ts->ssl, bio, bio);        /* the SSL owns bio */
	SSL_set_app_data(ts->ssl, ts);
	SSL_set_accept_state(ts->ssl);
	ts->bev = bufferevent_filter_new(under, tls_srv_filter_in,
					 tls_srv_filter_out,
					 BEV_OPT_CLOSE_ON_FREE, tls_srv_free,
					 ts);
	if (ts->bev == NULL) {
		err_set(err, 1, "tls: cannot make a TLS filter");
		tls_srv_free(ts);
		return NULL;
	}
	*tsp = ts;
	return ts->bev;
}

struct bufferevent *tls_bev_accept(struct event_base *base,
				   evutil_socket_t fd, SSL_CTX *ctx,
				   struct tls_srv **tsp, struct err *err)
{
	struct bufferevent *under, *bev;

	under = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (under == NULL) {
		err_set(err, 1, "tls: cannot make a bufferevent");
		return NULL;
	}
	bev = tls_srv_new(under, ctx, tsp, err);
	if (bev == NULL) {
		bufferevent_setfd(under, -1);    /* fd stays the caller's */
		bufferevent_free(under);
		return NULL;
	}
	return bev;
}

struct bufferevent *tls_bev_starttls_server(struct bufferevent *plain,
					    SSL_CTX *ctx,
					    struct tls_srv **tsp,
					    struct err *err)
{
	struct tls_bev_state st;
	struct bufferevent *bev;

	if (plain == NULL) {
		err_set(err, 0, "tls: STARTTLS without a connection");
		return NULL;
	}
	/* RFC 3207 §4.2 and RFC 2595 §3.1: forget everything the client
	 * sent before the handshake, including commands pipelined after
	 * STARTTLS (CVE-2011-0411). */
	evbuffer_drain(bufferevent_get_input(plain),
		       evbuffer_get_length(bufferevent_get_input(plain)));
	tls_bev_state_get(plain, &st);
	/* plain now carries ciphertext for the filter, which installs its
	 * own callbacks on it; the session's thresholds and timeouts belong
	 * to the clear text, on the new bufferevent. */
	bufferevent_setwatermark(plain, EV_READ | EV_WRITE, 0, 0);
	bufferevent_set_timeouts(plain, NULL, NULL);
	bev = tls_srv_new(plain, ctx, tsp, err);
	if (bev == NULL) {
		tls_bev_state_set(plain, &st);
		return NULL;
	}
	tls_bev_state_set(bev, &st);
	return bev;
}

/* ---- what the session asks -------------------------------------------- */

int tls_srv_done(const struct tls_srv *ts)
{
	return ts != NULL && ts->cipher != NULL;
}

int tls_srv_offloaded(const struct tls_srv *ts)
{
	return ts != NULL && ts->rec != NULL;
}

const char *tls_srv_version(const struct tls_srv *ts)
{
	if (!tls_srv_done(ts))
		return NULL;
	switch (ts->version) {
	case TLS1_3_VERSION: return "TLSv1.3";
	case TLS1_2_VERSION: return "TLSv1.2";
	default: return "unknown";
	}
}

const char *tls_srv_cipher(const struct tls_srv *ts)
{
	return tls_srv_done(ts) ? SSL_CIPHER_get_name(ts->cipher) : NULL;
}

int tls_srv_ssf(const struct tls_srv *ts)
{
	return tls_srv_done(ts) ? SSL_CIPHER_get_bits(ts->cipher, NULL) : 0;
}

int tls_srv_describe(const struct tls_srv *ts, char *out, size_t n)
{
	int bits, alg_bits = 0, len;

	if (n == 0)
		return 0;
	out[0] = '\0';
	if (!tls_srv_done(ts))
		return 0;
	bits = SSL_CIPHER_get_bits(ts->cipher, &alg_bits);
	len = snprintf(out, n, "%s with cipher %s (%d/%d bits)",
		       tls_srv_version(ts), tls_srv_cipher(ts), bits, alg_bits);
	if (len < 0) {
		out[0] = '\0';
		return 0;
	}
	return (size_t)len < n ? len : (int)n - 1;
}

const char *tls_srv_error(const struct tls_srv *ts, char *out, size_t n)
{
	if (n == 0)
		return out;
	out[0] = '\0';
	if (ts == NULL)
		return out;
	if (ts->ossl_err != 0)
		ERR_error_string_n(ts->ossl_err, out, n);
	else if (ts->alert >= 256)
		snprintf(out, n, "client sent alert: %s",
			 SSL_alert_desc_string_long(ts->alert - 256));
	else if (ts->alert >= 0)
		snprintf(out, n, "sent alert: %s",
			 SSL_alert_desc_string_long(ts->alert));
	else if (ts->state == TLS_SRV_FAILED)
		snprintf(out, n, "TLS failure");
	return out;
}
