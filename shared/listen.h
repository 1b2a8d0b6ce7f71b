/* listen: binding the daemons' listening sockets (Postfix inet_interfaces),
 * printing socket addresses for logs and Received headers, and the root ->
 * mail_owner privilege drop done after binding. */
#ifndef LISTEN_H
#define LISTEN_H

#include <stddef.h>
#include <sys/socket.h>
#include "err.h"

/* Bind and listen on port for each address of a Postfix-style
 * inet_interfaces value:
 *   "all"            IPv6 wildcard (IPV6_V6ONLY) and IPv4 wildcard;
 *                    an address family the host lacks is skipped
 *   "loopback-only"  127.0.0.1 and ::1 (when available)
 *   a list           addresses or host names separated by commas and/or
 *                    white space ("127.0.0.1, [::1], mail.example.com");
 *                    IPv6 addresses may be written with or without [];
 *                    a host name binds every address it resolves to.
 * Each socket gets SO_REUSEADDR, SO_REUSEPORT when reuseport, FD_CLOEXEC
 * and O_NONBLOCK. Writes at most maxfds descriptors to fds and returns
 * their count (>= 1), or -1 with err filled (and nothing left open).
 * Resolving a host name may block: call this at start-up only. */
int listen_inet(const char *interfaces, int port, int backlog, int reuseport,
		int *fds, int maxfds, struct err *err);

/* A listening AF_UNIX stream socket at path (an existing socket file there
 * is removed first), chmod'ed to mode, non-blocking. fd or -1. */
int listen_unix(const char *path, int backlog, int mode, struct err *err);

/* The address without port: "192.0.2.7", "2001:db8::1" (an IPv4-mapped
 * IPv6 address prints as IPv4), "unix" for AF_UNIX, "unknown" otherwise.
 * Always NUL-terminates out when n > 0. */
void listen_addr_string(const struct sockaddr *sa, char *out, size_t n);
/* The port in host order, 0 when sa has none. */
int listen_addr_port(const struct sockaddr *sa);

/* Started as root (euid 0): look user up, initgroups, setresgid,
 * setresuid to it, then verify (getresuid/getresgid all equal the user's,
 * setuid(0) fails). Returns 0, or -1 with err filled: the caller must then
 * exit, never run on as root. When euid is not 0, does nothing and
 * returns 0. Call after binding and opening keys, before
 * event_base_dispatch() and before any thread is started (work pools). */
int listen_priv_drop(const char *user, struct err *err);
/* The same, under the name the design brief uses. */
int priv_drop(const char *user, struct err *err);

#endif
