/* listen: listening sockets from a Postfix inet_interfaces value, address
 * text for logs, and the privilege drop after binding. The caller owns the
 * returned descriptors. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "listen.h"

struct listen_set {
	int *fds;
	int n, max;
};

static void listen_set_close(struct listen_set *set)
{
	while (set->n > 0)
		close(set->fds[--set->n]);
}

static int listen_socket(const struct sockaddr *sa, socklen_t salen,
			 int backlog, int reuseport, struct err *err)
{
	char host[INET6_ADDRSTRLEN];
	int fd, saved, on = 1;

	listen_addr_string(sa, host, sizeof(host));
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		err_set(err, 0, "socket %s: %s", host, strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
	    (reuseport &&
	     setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0) ||
	    /* The IPv6 wildcard must not take the IPv4 port as well: "all"
	     * binds both separately. */
	    (sa->sa_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)) {
		err_set(err, 0, "setsockopt %s: %s", host, strerror(errno));
		close(fd);
		return -1;
	}
	if (bind(fd, sa, salen) < 0 || listen(fd, backlog) < 0) {
		saved = errno;
		err_set(err, saved == EADDRINUSE, "bind %s port %d: %s", host,
			listen_addr_port(sa), strerror(saved));
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int listen_add(struct listen_set *set, const struct sockaddr *sa,
		      socklen_t salen, int backlog, int reuseport,
		      struct err *err)
{
	int fd;

	if (set->n >= set->max) {
		errno = ENOSPC;
		return err_set(err, 0, "inet_interfaces: more than %d "
			       "addresses", set->max);
	}
	fd = listen_socket(sa, salen, backlog, reuseport, err);
	if (fd < 0)
		return -1;
	set->fds[set->n++] = fd;
	return 0;
}

/* "all" and "loopback-only": the wildcard or loopback of each family.
 * A family the kernel does not have (no IPv6) is skipped, not an error. */
static int listen_special(struct listen_set *set, int loopback, int port,
			  int backlog, int reuseport, struct err *err)
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	int probe;

	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	s6.sin6_port = htons(port);
	s6.sin6_addr = loopback ? in6addr_loopback : in6addr_any;
	probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0) {
		close(probe);
		/* IPv6 may exist but be disabled on every interface. */
		if (listen_add(set, (struct sockaddr *)&s6, sizeof(s6),
			       backlog, reuseport, err) < 0) {
			if (errno != EADDRNOTAVAIL)
				return -1;
			err_clear(err);
		}
	}
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_port = htons(port);
	s4.sin_addr.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY);
	return listen_add(set, (struct sockaddr *)&s4, sizeof(s4), backlog,
			  reuseport, err);
}

/* One list element: an address (IPv6 optionally in []) or a host name. */
static int listen_one(struct listen_set *set, const char *name, int port,
		      int backlog, int reuseport, struct err *err)
{
	struct addrinfo hints, *res, *ai;
	char portstr[16];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(name, portstr, &hints, &res);
	if (rc != 0)
		return err_set(err, rc == EAI_AGAIN,
			       "inet_interfaces: %s: %s", name,
			       gai_strerror(rc));
	rc = 0;
	for (ai = res; ai != NULL && rc == 0; ai = ai->ai_next)
		rc = listen_add(set, ai->ai_addr, ai->ai_addrlen, backlog,
				reuseport, err);
	freeaddrinfo(res);
	return rc;
}

/* Split the list on commas and white space, as Postfix does. */
static int listen_list(struct listen_set *set, const char *list, int port,
		       int backlog, int reuseport, struct err *err)
{
	char name[256];
	const char *p = list;
	size_t len;

	while (*p != '\0') {
		p += strspn(p, ", \t\r\n");
		len = strcspn(p, ", \t\r\n");
		if (len == 0)
			break;
		if (len >= sizeof(name))
			return err_set(err, 0, "inet_interfaces: name too "
				       "long");
		memcpy(name, p, len);
		name[len] = '\0';
		p += len;
		if (name[0] == '[' && name[len - 1] == ']') {
			memmove(name, name + 1, len - 2);
			name[len - 2] = '\0';
		}
		if (strcmp(name, "all") == 0 ||
		    strcmp(name, "loopback-only") == 0)
			return err_set(err, 0, "inet_interfaces: \"%s\" must "
				       "stand alone", name);
		if (listen_one(set, name, port, backlog, reuseport, err) < 0)
			return -1;
	}
	if (set->n == 0)
		return err_set(err, 0, "inet_interfaces: empty");
	return 0;
}

int listen_inet(const char *interfaces, int port, int backlog, int reuseport,
		int *fds, int maxfds, struct err *err)
{
	struct listen_set set = { fds, 0, maxfds };
	const char *s;
	int rc;

	if (interfaces == NULL || fds == NULL || maxfds < 1 || port < 0 ||
	    port > 65535)
		return err_set(err, 0, "listen_inet: bad arguments");
	s = interfaces + strspn(interfaces, " \t");
	if (strncmp(s, "all", 3) == 0 && s[3 + strspn(s + 3, " \t")] == '\0')
		rc = listen_special(&set, 0, port, backlog, reuseport, err);
	else if (strncmp(s, "loopback-only", 13) == 0 &&
		 s[13 + strspn(s + 13, " \t")] == '\0')
		rc = listen_special(&set, 1, port, backlog, reuseport, err);
	else
		rc = listen_list(&set, s, port, backlog, reuseport, err);
	if (rc < 0) {
		listen_set_close(&set);
		return -1;
	}
	return set.n;
}

int listen_unix(const char *path, int backlog, int mode, struct err *err)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (path == NULL || strlen(path) >= sizeof(sun.sun_path))
		return err_set(err, 0, "listen_unix: bad path");
	memcpy(sun.sun_path, path, strlen(path) + 1);
	/* Remove a stale socket, never a regular file someone put there. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(err, 0, "socket unix: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(path, mode) < 0 || listen(fd, backlog) < 0) {
		err_set(err, 0, "listen %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void listen_addr_string(const struct sockaddr *sa, char *out, size_t n)
{
	const struct sockaddr_in6 *s6;
	struct in_addr v4;
	const char *r = NULL;

	if (n == 0)
		return;
	out[0] = '\0';
	if (sa == NULL) {
		snprintf(out, n, "unknown");
		return;
	}
	switch (sa->sa_family) {
	case AF_INET:
		r = inet_ntop(AF_INET,
			      &((const struct sockaddr_in *)sa)->sin_addr,
			      out, n);
		break;
	case AF_INET6:
		s6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			memcpy(&v4, &s6->sin6_addr.s6_addr[12], 4);
			r = inet_ntop(AF_INET, &v4, out, n);
		} else {
			r = inet_ntop(AF_INET6, &s6->sin6_addr, out, n);
		}
		break;
	case AF_UNIX:
		snprintf(out, n, "unix");
		return;
	}
	if (r == NULL)
		snprintf(out, n, "unknown");
}

int listen_addr_port(const struct sockaddr *sa)
{
	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

static int listen_priv_lookup(const char *user, uid_t *uid, gid_t *gid,
			      struct err *err)
{
	struct passwd pw, *res = NULL;
	long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
	char *buf;
	int rc;

	if (sz < 16384)
		sz = 16384;
	buf = malloc(sz);
	if (buf == NULL)
		return err_set(err, 1, "priv_drop: out of memory");
	rc = getpwnam_r(user, &pw, buf, sz, &res);
	if (res == NULL) {
		free(buf);
		return err_set(err, rc != 0, "priv_drop: user \"%s\": %s",
			       user, rc != 0 ? strerror(rc) : "not found");
	}
	*uid = pw.pw_uid;
	*gid = pw.pw_gid;
	rc = initgroups(user, pw.pw_gid);
	free(buf);
	if (rc < 0)
		return err_set(err, 0, "priv_drop: initgroups %s: %s", user,
			       strerror(errno));
	return 0;
}

/* Check that no real, effective or saved id is left at the old value and
 * that root cannot be regained. */
static int listen_priv_verify(uid_t uid, gid_t gid, struct err *err)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
		return err_set(err, 0, "priv_drop: getresuid: %s",
			       strerror(errno));
	if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid ||
	    sg != gid)
		return err_set(err, 0, "priv_drop: ids not dropped");
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
		return err_set(err, 0, "priv_drop: root could be regained");
	return 0;
}

int listen_priv_drop(const char *user, struct err *err)
{
	uid_t uid = 0;
	gid_t gid = 0;

	if (geteuid() != 0)
		return 0;
	if (user == NULL || user[0] == '\0')
		return err_set(err, 0, "priv_drop: no user given");
	if (listen_priv_lookup(user, &uid, &gid, err) < 0)
		return -1;
	if (uid == 0)
		return err_set(err, 0, "priv_drop: user \"%s\" is root", user);
	if (setresgid(gid, gid, gid) < 0)
		return err_set(err, 0, "priv_drop: setresgid %u: %s",
			       (unsigned)gid, strerror(errno));
	if (setresuid(uid, uid, uid) < 0)
		return err_set(err, 0, "priv_drop: setresuid %u: %s",
			       (unsigned)uid, strerror(errno));
	return listen_priv_verify(uid, gid, err);
}

int priv_drop(const char *user, struct err *err)
{
	return listen_priv_drop(user, err);
}
