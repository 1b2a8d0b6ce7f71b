/* Tests for listen: binding from inet_interfaces values (loopback only),
 * address text, AF_UNIX listeners, and the privilege drop (in a child
 * process, since it cannot be undone). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <cmocka.h>
#include "listen.h"

static void test_close_all(int *fds, int n)
{
	while (n > 0)
		close(fds[--n]);
}

static int test_port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return listen_addr_port((struct sockaddr *)&ss);
}

/* A port that was free a moment ago on 127.0.0.1. */
static int test_free_port(void)
{
	int fds[1], n, port;
	struct err err;

	n = listen_inet("127.0.0.1", 0, 8, 0, fds, 1, &err);
	assert_int_equal(n, 1);
	port = test_port_of(fds[0]);
	close(fds[0]);
	return port;
}

static int test_has_ipv6_loopback(void)
{
	struct sockaddr_in6 s6;
	int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;

	if (fd < 0)
		return 0;
	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	s6.sin6_addr = in6addr_loopback;
	ok = bind(fd, (struct sockaddr *)&s6, sizeof(s6)) == 0;
	close(fd);
	return ok;
}

static void test_one_address(void **st)
{
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	struct err err;
	int fds[4], n, c, a, on = 0, flags, port;
	char host[64];

	n = listen_inet("127.0.0.1", 0, 16, 0, fds, 4, &err);
	assert_int_equal(n, 1);
	port = test_port_of(fds[0]);
	assert_true(port > 0);
	flags = fcntl(fds[0], F_GETFL);
	assert_true(flags & O_NONBLOCK);
	assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	socklen_t ol = sizeof(on);
	assert_int_equal(getsockopt(fds[0], SOL_SOCKET, SO_REUSEADDR, &on,
				    &ol), 0);
	assert_true(on);
	/* A client connects; the peer address prints as on a log line. */
	c = socket(AF_INET, SOCK_STREAM, 0);
	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_port = htons(port);
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(c, (struct sockaddr *)&peer, sizeof(peer)),
			 0);
	do
		a = accept(fds[0], (struct sockaddr *)&peer, &plen);
	while (a < 0 && errno == EAGAIN);
	assert_true(a >= 0);
	listen_addr_string((struct sockaddr *)&peer, host, sizeof(host));
	assert_string_equal(host, "127.0.0.1");
	assert_true(listen_addr_port((struct sockaddr *)&peer) > 0);
	close(a);
	close(c);
	test_close_all(fds, n);
}

static void test_list_and_names(void **st)
{
	struct err err;
	int fds[8], n, port = test_free_port(), i;
	int v6 = test_has_ipv6_loopback();

	/* Postfix lists: commas and/or spaces, [bracketed] IPv6. */
	n = listen_inet(v6 ? "127.0.0.1, [::1]" : "127.0.0.1,", port, 16, 0,
			fds, 8, &err);
	assert_int_equal(n, v6 ? 2 : 1);
	for (i = 0; i < n; i++)
		assert_int_equal(test_port_of(fds[i]), port);
	test_close_all(fds, n);

	/* loopback-only: 127.0.0.1, and ::1 where the host has it. */
	n = listen_inet("loopback-only", port, 16, 0, fds, 8, &err);
	assert_true(n == 1 || n == 2);
	if (v6)
		assert_int_equal(n, 2);
	test_close_all(fds, n);

	/* A host name binds what it resolves to (loopback here). */
	n = listen_inet("localhost", port, 16, 0, fds, 8, &err);
	assert_true(n >= 1);
	test_close_all(fds, n);
}

static void test_reuseport(void **st)
{
	struct err err;
	int a[2], b[2], port = test_free_port();

	assert_int_equal(listen_inet("127.0.0.1", port, 16, 1, a, 2, &err), 1);
	/* A second worker process shares the port with SO_REUSEPORT... */
	assert_int_equal(listen_inet("127.0.0.1", port, 16, 1, b, 2, &err), 1);
	close(b[0]);
	/* ...but without it the port is taken. */
	err_clear(&err);
	assert_int_equal(listen_inet("127.0.0.1", port, 16, 0, b, 2, &err),
			 -1);
	assert_non_null(strstr(err.msg, "127.0.0.1"));
	close(a[0]);
}

static void test_bad_values(void **st)
{
	struct err err;
	int fds[1], fd2[2];

	err_clear(&err);
	assert_int_equal(listen_inet("no-such-host.invalid", 0, 8, 0, fds, 1,
				     &err), -1);
	assert_true(err.msg[0] != '\0');
	assert_int_equal(listen_inet("192.0.2.1x", 0, 8, 0, fds, 1, &err), -1);
	assert_int_equal(listen_inet("all, 127.0.0.1", 0, 8, 0, fds, 1, &err),
			 -1);
	assert_int_equal(listen_inet("", 0, 8, 0, fds, 1, &err), -1);
	assert_int_equal(listen_inet("127.0.0.1", 70000, 8, 0, fds, 1, &err),
			 -1);
	/* Too many addresses for the array: nothing stays open. */
	assert_int_equal(listen_inet("127.0.0.1 127.0.0.1", 0, 8, 0, fds, 1,
				     &err), -1);
	assert_int_equal(listen_inet("127.0.0.1 127.0.0.2", test_free_port(),
				     8, 0, fd2, 1, &err), -1);
}

static void test_addr_string(void **st)
{
	struct sockaddr_in6 s6;
	struct sockaddr_un sun;
	char out[64];

	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	s6.sin6_port = htons(25);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr), 1);
	listen_addr_string((struct sockaddr *)&s6, out, sizeof(out));
	assert_string_equal(out, "2001:db8::1");
	assert_int_equal(listen_addr_port((struct sockaddr *)&s6), 25);
	/* A v4 client on a dual-stack socket logs as plain IPv4. */
	assert_int_equal(inet_pton(AF_INET6, "::ffff:192.0.2.7",
				   &s6.sin6_addr), 1);
	listen_addr_string((struct sockaddr *)&s6, out, sizeof(out));
	assert_string_equal(out, "192.0.2.7");
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	listen_addr_string((struct sockaddr *)&sun, out, sizeof(out));
	assert_string_equal(out, "unix");
	assert_int_equal(listen_addr_port((struct sockaddr *)&sun), 0);
	/* Too small a buffer never overflows. */
	out[3] = 'Z';
	listen_addr_string((struct sockaddr *)&s6, out, 3);
	assert_true(strlen(out) < 3);
	assert_int_equal(out[3], 'Z');
	listen_addr_string(NULL, out, sizeof(out));
	assert_string_equal(out, "unknown");
}

static void test_unix(void **st)
{
	char dir[] = "/tmp/test_listen.XXXXXX", path[64];
	struct sockaddr_un sun;
	struct stat sb;
	struct err err;
	int fd, c;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sock", dir);
	fd = listen_unix(path, 8, 0660, &err);
	assert_true(fd >= 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISSOCK(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0660);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	assert_int_equal(connect(c, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(c);
	close(fd);
	/* A stale socket from a previous run is replaced. */
	fd = listen_unix(path, 8, 0600, &err);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	rmdir(dir);
}

/* Run fn in a child; return its exit status. */
static int test_in_child(int (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int test_child_drop(void)
{
	struct passwd *pw = getpwnam("nobody");
	struct err err;
	uid_t r, e, s;
	gid_t gr, ge, gs;
	gid_t groups[64];
	int i, n;

	if (pw == NULL)
		return 10;
	if (listen_priv_drop("nobody", &err) != 0)
		return 11;
	if (getresuid(&r, &e, &s) < 0 || r != pw->pw_uid || e != pw->pw_uid ||
	    s != pw->pw_uid)
		return 12;
	if (getresgid(&gr, &ge, &gs) < 0 || gr != pw->pw_gid ||
	    ge != pw->pw_gid || gs != pw->pw_gid)
		return 13;
	if (setuid(0) == 0 || seteuid(0) == 0)
		return 14;
	/* root's supplementary groups are gone. */
	n = getgroups(64, groups);
	for (i = 0; i < n; i++)
		if (groups[i] == 0)
			return 15;
	/* Now not root: a second call does nothing and succeeds. */
	if (priv_drop("root", &err) != 0 || getuid() != pw->pw_uid)
		return 16;
	return 0;
}

static int test_child_unknown(void)
{
	struct err err;

	err_clear(&err);
	if (listen_priv_drop("no-such-user-mailpair", &err) != -1)
		return 20;
	if (strstr(err.msg, "no-such-user-mailpair") == NULL)
		return 21;
	/* Failing must not have half-dropped anything. */
	return geteuid() == 0 ? 0 : 22;
}

static void test_priv_drop(void **st)
{
	if (geteuid() != 0) {
		struct err err;

		/* Not root: nothing to do, by contract. */
		assert_int_equal(listen_priv_drop("nobody", &err), 0);
		skip();
	}
	assert_int_equal(test_in_child(test_child_drop), 0);
	assert_int_equal(test_in_child(test_child_unknown), 0);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_one_address),
		cmocka_unit_test(test_list_and_names),
		cmocka_unit_test(test_reuseport),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_addr_string),
		cmocka_unit_test(test_unix),
		cmocka_unit_test(test_priv_drop),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
