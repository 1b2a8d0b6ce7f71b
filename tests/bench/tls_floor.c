/* tls_floor: OpenSSL's own memory per live server-side TLS connection
 * (issue 12), without any of ours: what a connection that keeps its SSL
 * pays (TLS 1.2; a TLS 1.3 one frees it after the handshake, see
 * shared/tls_srv.c). For TLS 1.3 and TLS 1.2 it does N handshakes over
 * socketpairs plus one record each way, then prints the live OpenSSL heap per
 * connection, by allocation site, and glibc's count as a cross-check.
 *
 *   tls_floor CERT KEY [N]        (N connections per version, default 500)
 *
 * How it counts: CRYPTO_set_mem_functions() routes every OpenSSL allocation
 * through the hooks below, which OpenSSL calls with its file and line. A
 * block allocated while the count is on is recorded in a table kept in its
 * own mmap() (outside malloc, so mallinfo2() sees only OpenSSL's blocks and
 * malloc's chunk overhead) until it is freed. A realloc() counts as a free
 * plus an allocation at the realloc's site. Each version runs in a fresh
 * process, and its client in another one, so only the server's blocks are
 * seen. One connection is run first, outside the count, so that one-time
 * set-up (provider fetches, caches) is not charged to the N. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "tls.h"

#define TLS_FLOOR_DEFAULT_N  500
#define TLS_FLOOR_MAX_N      10000
#define TLS_FLOOR_SITES      4096      /* distinct file:line pairs */
#define TLS_FLOOR_CACHE      16384     /* (file pointer, line) -> site */
#define TLS_FLOOR_TOP        12        /* sites printed per version */
#define TLS_FLOOR_POLL_MS    30000

/* ---- allocation accounting ------------------------------------------- */

struct tls_floor_block {
	void *p;                      /* NULL: free slot */
	uint32_t size;
	uint32_t site;
};

struct tls_floor_site {
	const char *file;
	int line;
	long bytes, blocks;           /* live, counted ones only */
};

struct tls_floor_cache_ent {
	const char *file;             /* NULL: free slot */
	int line;
	int site;
};

static int tls_floor_on;              /* count new blocks now */
static int tls_floor_overflow;        /* a block could not be recorded */
static struct tls_floor_block *tls_floor_tab;
static size_t tls_floor_mask, tls_floor_used;
static struct tls_floor_site tls_floor_sites[TLS_FLOOR_SITES];
static int tls_floor_nsites = 1;      /* 0 is "(other)" once full */
static struct tls_floor_cache_ent tls_floor_cache[TLS_FLOOR_CACHE];
static int tls_floor_ncache;

static size_t tls_floor_hash(const void *p)
{
	return (size_t)(((uintptr_t)p >> 4) * UINT64_C(0x9E3779B97F4A7C15) >>
			17) & tls_floor_mask;
}

/* The block table: linear probing, sized for the peak of live blocks
 * during N concurrent handshakes; allocated with mmap() so that it never
 * shows in malloc's figures. */
static int tls_floor_tab_init(size_t n)
{
	size_t cap = 1 << 16;

	while (cap < n * 1024)
		cap <<= 1;
	tls_floor_tab = mmap(NULL, cap * sizeof(*tls_floor_tab),
			     PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (tls_floor_tab == MAP_FAILED) {
		tls_floor_tab = NULL;
		return -1;
	}
	tls_floor_mask = cap - 1;
	return 0;
}

static int tls_floor_site_find(const char *file, int line)
{
	size_t h;
	int i;

	if (file == NULL)
		file = "(unknown)";
	h = (((uintptr_t)file >> 3) ^ (size_t)line * 2654435761u) &
	    (TLS_FLOOR_CACHE - 1);
	while (tls_floor_cache[h].file != NULL) {
		if (tls_floor_cache[h].file == file &&
		    tls_floor_cache[h].line == line)
			return tls_floor_cache[h].site;
		h = (h + 1) & (TLS_FLOOR_CACHE - 1);
	}
	/* the same file may come with several pointers (one per unit that
	 * expanded OPENSSL_malloc): one site per file text and line */
	for (i = 1; i < tls_floor_nsites; i++)
		if (tls_floor_sites[i].line == line &&
		    strcmp(tls_floor_sites[i].file, file) == 0)
			break;
	if (i == tls_floor_nsites) {
		if (tls_floor_nsites == TLS_FLOOR_SITES)
			return 0;
		tls_floor_sites[i].file = file;
		tls_floor_sites[i].line = line;
		tls_floor_nsites++;
	}
	if (tls_floor_ncache < TLS_FLOOR_CACHE / 2) {
		tls_floor_cache[h].file = file;
		tls_floor_cache[h].line = line;
		tls_floor_cache[h].site = i;
		tls_floor_ncache++;
	}
	return i;
}

static void tls_floor_insert(void *p, uint32_t size, uint32_t site)
{
	size_t h = tls_floor_hash(p);

	while (tls_floor_tab[h].p != NULL)
		h = (h + 1) & tls_floor_mask;
	tls_floor_tab[h].p = p;
	tls_floor_tab[h].size = size;
	tls_floor_tab[h].site = site;
	tls_floor_used++;
	tls_floor_sites[site].bytes += size;
	tls_floor_sites[site].blocks++;
}

static void tls_floor_record(void *p, size_t size, const char *file, int line)
{
	if (p == NULL || !tls_floor_on || tls_floor_tab == NULL)
		return;
	if (tls_floor_used >= tls_floor_mask / 4 * 3 || size > UINT32_MAX) {
		tls_floor_overflow = 1;
		return;
	}
	tls_floor_insert(p, (uint32_t)size,
			 (uint32_t)tls_floor_site_find(file, line));
}

/* Drop p's record if it has one (1, with its size and site) or 0;
 * backward-shift deletion keeps every probe chain unbroken without
 * tombstones. */
static int tls_floor_forget(void *p, struct tls_floor_block *was_r)
{
	size_t i, j, k;

	if (p == NULL || tls_floor_tab == NULL || tls_floor_used == 0)
		return 0;
	i = tls_floor_hash(p);
	while (tls_floor_tab[i].p != p) {
		if (tls_floor_tab[i].p == NULL)
			return 0;
		i = (i + 1) & tls_floor_mask;
	}
	*was_r = tls_floor_tab[i];
	tls_floor_sites[tls_floor_tab[i].site].bytes -= tls_floor_tab[i].size;
	tls_floor_sites[tls_floor_tab[i].site].blocks--;
	tls_floor_used--;
	for (j = (i + 1) & tls_floor_mask; tls_floor_tab[j].p != NULL;
	     j = (j + 1) & tls_floor_mask) {
		k = tls_floor_hash(tls_floor_tab[j].p);
		/* the entry at j may move to i unless its home k lies
		 * cyclically in (i, j] */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		tls_floor_tab[i] = tls_floor_tab[j];
		i = j;
	}
	tls_floor_tab[i].p = NULL;
	return 1;
}

/* the hooks: OpenSSL 3.0 hands them a size of 0 too (its own functions
 * return NULL then) */
static void *tls_floor_malloc(size_t n, const char *file, int line)
{
	void *p = n > 0 ? malloc(n) : NULL;

	tls_floor_record(p, n, file, line);
	return p;
}

static void tls_floor_free(void *p, const char *file, int line)
{
	struct tls_floor_block was;

	tls_floor_forget(p, &was);
	free(p);
}

static void *tls_floor_realloc(void *p, size_t n, const char *file, int line)
{
	struct tls_floor_block was;
	int had;
	void *q;

	if (p == NULL)
		return tls_floor_malloc(n, file, line);
	if (n == 0) {
		tls_floor_free(p, file, line);
		return NULL;
	}
	/* forget before: p may not be looked at once realloc() moved it */
	had = tls_floor_forget(p, &was);
	q = realloc(p, n);
	if (q == NULL) {
		if (had)                  /* p is unchanged: count it again */
			tls_floor_insert(p, was.size, was.site);
		return NULL;
	}
	tls_floor_record(q, n, file, line);
	return q;
}

/* What a file's blocks are, for the reader (by file: a file may allocate
 * other things on other lines, the line says which). */
static const char *tls_floor_label(const char *file)
{
	static const struct { const char *file; const char *what; } l[] = {
		{ "ssl/ssl_lib.c", "SSL object (SSL_new)" },
		{ "ciphers/cipher_aes_gcm.c", "AES-GCM key contexts" },
		{ "ciphers/cipher_chacha20_poly1305.c", "ChaCha20 contexts" },
		{ "ssl/ssl_sess.c", "SSL_SESSION" },
		{ "ssl/ssl_cert.c", "CERT (per-SSL copy)" },
		{ "crypto/threads_pthread.c", "locks" },
		{ "digests/sha2_prov.c", "SHA-2 contexts" },
		{ "crypto/evp/evp_enc.c", "EVP_CIPHER_CTX" },
		{ "crypto/evp/digest.c", "EVP_MD_CTX" },
		{ "crypto/evp/p_lib.c", "EVP_PKEY" },
		{ "crypto/ec/ecx_key.c", "X25519 key" },
		{ "crypto/ec/ec_key.c", "EC key" },
		{ "crypto/bio/bio_lib.c", "BIO" },
		{ "crypto/stack/stack.c", "stacks" },
		{ "crypto/x509/x509_vpm.c", "verify params" },
		{ "crypto/ex_data.c", "ex_data" },
		{ "ssl/record/", "record layer" },
	};
	size_t i;

	for (i = 0; file != NULL && i < sizeof(l) / sizeof(l[0]); i++)
		if (strstr(file, l[i].file) != NULL)
			return l[i].what;
	return "";
}

static int tls_floor_site_cmp(const void *a, const void *b)
{
	const struct tls_floor_site *x = a, *y = b;

	return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

/* ---- the connections ---------------------------------------------------- */

enum tls_floor_step {
	TLS_FLOOR_HANDSHAKE, TLS_FLOOR_RECV, TLS_FLOOR_SEND, TLS_FLOOR_DONE,
};

struct tls_floor_conn {
	SSL *ssl;
	int fd;
	int ready;                    /* poll says it may progress */
	short want;                   /* POLLIN or POLLOUT */
	enum tls_floor_step step;
};

/* The server reads one record, then writes one; the client the other way
 * round. The client's read also takes in the TLS 1.3 session tickets the
 * server sent after the handshake (RFC 8446 §4.6.1), so the server has
 * done all it does for a connection that then goes idle. */
static enum tls_floor_step tls_floor_next(enum tls_floor_step s, int server)
{
	switch (s) {
	case TLS_FLOOR_HANDSHAKE:
		return server ? TLS_FLOOR_RECV : TLS_FLOOR_SEND;
	case TLS_FLOOR_RECV:
		return server ? TLS_FLOOR_SEND : TLS_FLOOR_DONE;
	case TLS_FLOOR_SEND:
		return server ? TLS_FLOOR_DONE : TLS_FLOOR_RECV;
	default:
		return TLS_FLOOR_DONE;
	}
}

/* Runs c as far as it goes without blocking: 0, or -1 on a TLS error. */
static int tls_floor_advance(struct tls_floor_conn *c, int server)
{
	char buf[64];
	int r, e;

	while (c->step != TLS_FLOOR_DONE) {
		if (c->step == TLS_FLOOR_HANDSHAKE)
			r = SSL_do_handshake(c->ssl);
		else if (c->step == TLS_FLOOR_RECV)
			r = SSL_read(c->ssl, buf, sizeof(buf));
		else
			r = SSL_write(c->ssl, "x", 1);
		if (r <= 0) {
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				c->want = POLLIN;
			else if (e == SSL_ERROR_WANT_WRITE)
				c->want = POLLOUT;
			else
				return -1;
			return 0;
		}
		c->step = tls_floor_next(c->step, server);
	}
	return 0;
}

/* Drives the n connections at once until each is done; pfd and idx hold n
 * entries (allocated by the caller, before the count starts). */
static int tls_floor_drive(struct tls_floor_conn *c, size_t n, int server,
			   struct pollfd *pfd, size_t *idx)
{
	size_t i, np;
	int r;

	for (i = 0; i < n; i++)
		c[i].ready = 1;
	for (;;) {
		np = 0;
		for (i = 0; i < n; i++) {
			if (c[i].ready && tls_floor_advance(&c[i], server) < 0) {
				fprintf(stderr, "tls_floor: %s connection %zu: "
					"TLS error\n", server ? "server" :
					"client", i);
				ERR_print_errors_fp(stderr);
				return -1;
			}
			c[i].ready = 0;
			if (c[i].step == TLS_FLOOR_DONE)
				continue;
			pfd[np].fd = c[i].fd;
			pfd[np].events = c[i].want;
			pfd[np].revents = 0;
			idx[np++] = i;
		}
		if (np == 0)
			return 0;
		r = poll(pfd, np, TLS_FLOOR_POLL_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "tls_floor: %s: %s\n", server ?
				"server" : "client", r == 0 ? "timed out" :
				strerror(errno));
			return -1;
		}
		for (i = 0; i < np; i++)
			if (pfd[i].revents != 0)
				c[idx[i]].ready = 1;
	}
}

/* SSLs for c[0..n) on fds[i][side], side 0 for the server. The daemons
 * get a socket BIO the same way (bufferevent_openssl_socket_new); after
 * STARTTLS theirs is libevent's bufferevent BIO instead, a few bytes. */
static int tls_floor_conns(struct tls_floor_conn *c, size_t n, int (*fds)[2],
			   SSL_CTX *ctx, int side)
{
	size_t i;

	for (i = 0; i < n; i++) {
		c[i].ssl = SSL_new(ctx);
		if (c[i].ssl == NULL || SSL_set_fd(c[i].ssl, fds[i][side]) != 1)
			return -1;
		if (side == 0)
			SSL_set_accept_state(c[i].ssl);
		else
			SSL_set_connect_state(c[i].ssl);
		c[i].fd = fds[i][side];
		c[i].step = TLS_FLOOR_HANDSHAKE;
	}
	return 0;
}

/* The client process: the same connections from the other end (index 0
 * is the warm-up), then it waits for the server to close ctl. TLS 1.2
 * is had by capping the client, so the server's context stays exactly as
 * the daemons make it. */
static int tls_floor_client(int (*fds)[2], size_t n, int version, int ctl)
{
	struct tls_floor_conn *c = calloc(n + 1, sizeof(*c));
	struct pollfd *pfd = calloc(n + 1, sizeof(*pfd));
	size_t *idx = calloc(n + 1, sizeof(*idx));
	struct err err;
	SSL_CTX *ctx;
	char b;

	if (c == NULL || pfd == NULL || idx == NULL)
		return 1;
	ctx = tls_client_ctx(NULL, 0, &err);
	if (ctx == NULL) {
		fprintf(stderr, "tls_floor: %s\n", err.msg);
		return 1;
	}
	if (SSL_CTX_set_max_proto_version(ctx, version) != 1 ||
	    tls_floor_conns(c, n + 1, fds, ctx, 1) < 0 ||
	    tls_floor_drive(c, 1, 0, pfd, idx) < 0 ||
	    tls_floor_drive(c + 1, n, 0, pfd, idx) < 0)
		return 1;
	while (read(ctl, &b, 1) < 0 && errno == EINTR)
		;
	return 0;
}

/* ---- one version -------------------------------------------------------- */

static void tls_floor_report(const char *name, SSL *ssl, size_t n,
			     long long malloc_delta)
{
	struct tls_floor_site *s = tls_floor_sites;
	long bytes = 0, blocks = 0, rest = 0;
	int i, shown = 0;

	for (i = 0; i < tls_floor_nsites; i++) {
		bytes += s[i].bytes;
		blocks += s[i].blocks;
	}
	qsort(s, tls_floor_nsites, sizeof(*s), tls_floor_site_cmp);
	printf("openssl floor, %s (%s), %zu server connections after "
	       "handshake + 1 record each way:\n", name, SSL_get_cipher(ssl), n);
	printf("  OpenSSL heap %.1f KB per connection (%ld B in %.1f blocks); "
	       "glibc malloc %.1f KB (mallinfo2 uordblks)\n",
	       bytes / 1024.0 / n, bytes / (long)n, (double)blocks / n,
	       malloc_delta / 1024.0 / n);
	for (i = 0; i < tls_floor_nsites; i++) {
		if (s[i].bytes <= 0)
			continue;
		if (shown++ >= TLS_FLOOR_TOP) {
			rest += s[i].bytes;
			continue;
		}
		printf("    %6ld B %5.1f blocks  %-22s %s:%d\n",
		       s[i].bytes / (long)n, (double)s[i].blocks / n,
		       tls_floor_label(s[i].file), s[i].file ? s[i].file :
		       "(other)", s[i].line);
	}
	if (rest > 0)
		printf("    %6ld B               (%d other sites)\n",
		       rest / (long)n, shown - TLS_FLOOR_TOP);
	if (tls_floor_overflow)
		printf("  (some blocks were not counted: table full)\n");
}

/* The server side of one version, in a process of its own: socketpairs,
 * the client forked off, the warm-up connection, then the N counted. */
static int tls_floor_version(const char *cert, const char *key, size_t n,
			     int version, const char *name)
{
	int (*fds)[2] = calloc(n + 1, sizeof(*fds));
	struct tls_floor_conn *c = calloc(n + 1, sizeof(*c));
	struct pollfd *pfd = calloc(n + 1, sizeof(*pfd));
	size_t *idx = calloc(n + 1, sizeof(*idx));
	struct mallinfo2 m0, m1;
	struct err err;
	SSL_CTX *ctx;
	int ctl[2], st;
	size_t i;
	pid_t pid;

	if (fds == NULL || c == NULL || pfd == NULL || idx == NULL ||
	    pipe(ctl) < 0)
		return 1;
	for (i = 0; i <= n; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]) < 0 ||
		    fcntl(fds[i][0], F_SETFL, O_NONBLOCK) < 0 ||
		    fcntl(fds[i][1], F_SETFL, O_NONBLOCK) < 0) {
			fprintf(stderr, "tls_floor: socketpair %zu: %s\n", i,
				strerror(errno));
			return 1;
		}
	}
	/* the daemons' own context: shared/tls.c's options,
	 * SSL_MODE_RELEASE_BUFFERS, session id context, SNI callback */
	ctx = tls_server_ctx(cert, key, &err);
	if (ctx == NULL) {
		fprintf(stderr, "tls_floor: %s\n", err.msg);
		return 1;
	}
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		close(ctl[1]);
		for (i = 0; i <= n; i++)
			close(fds[i][0]);
		_exit(tls_floor_client(fds, n, version, ctl[0]));
	}
	close(ctl[0]);
	for (i = 0; i <= n; i++)
		close(fds[i][1]);
	if (tls_floor_tab_init(n) < 0 ||
	    tls_floor_conns(c, 1, fds, ctx, 0) < 0 ||
	    tls_floor_drive(c, 1, 1, pfd, idx) < 0)
		return 1;
	SSL_free(c[0].ssl);
	m0 = mallinfo2();
	tls_floor_on = 1;
	if (tls_floor_conns(c + 1, n, fds + 1, ctx, 0) < 0 ||
	    tls_floor_drive(c + 1, n, 1, pfd, idx) < 0)
		return 1;
	tls_floor_on = 0;
	m1 = mallinfo2();
	tls_floor_report(name, c[1].ssl, n,
			 (long long)m1.uordblks - (long long)m0.uordblks);
	fflush(stdout);
	close(ctl[1]);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 1;
	return 0;
}

static int tls_floor_usage(void)
{
	fprintf(stderr, "usage: tls_floor CERT KEY [N]   (1 <= N <= %d, "
		"default %d)\n", TLS_FLOOR_MAX_N, TLS_FLOOR_DEFAULT_N);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct { int version; const char *name; } runs[] = {
		{ TLS1_3_VERSION, "TLS 1.3" }, { TLS1_2_VERSION, "TLS 1.2" },
	};
	struct rlimit rl;
	long n = TLS_FLOOR_DEFAULT_N;
	char *end;
	size_t i;
	pid_t pid;
	int st;

	/* before OpenSSL's first allocation, or it refuses */
	if (CRYPTO_set_mem_functions(tls_floor_malloc, tls_floor_realloc,
				     tls_floor_free) != 1) {
		fprintf(stderr, "tls_floor: CRYPTO_set_mem_functions refused\n");
		return 1;
	}
	if (argc < 3 || argc > 4)
		return tls_floor_usage();
	if (argc == 4) {
		errno = 0;
		n = strtol(argv[3], &end, 10);
		if (errno != 0 || *end != '\0' || n < 1 || n > TLS_FLOOR_MAX_N)
			return tls_floor_usage();
	}
	/* two fds per connection until the client is forked off */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		fflush(stdout);
		pid = fork();
		if (pid < 0) {
			perror("tls_floor: fork");
			return 1;
		}
		if (pid == 0)
			_exit(tls_floor_version(argv[1], argv[2], (size_t)n,
						runs[i].version, runs[i].name));
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			fprintf(stderr, "tls_floor: %s run failed\n",
				runs[i].name);
			return 1;
		}
	}
	return 0;
}
