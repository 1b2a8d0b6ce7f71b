/* dns_mx: MX and address lookups for outbound delivery (RFC 5321 §5.1),
 * through res_nquery. Blocking: call only on the worker pool (work.h).
 * resolver: NULL or "" for the system's (/etc/resolv.conf; addresses also
 * through getaddrinfo, so /etc/hosts works), or "ip:port" (IPv4) to ask
 * one server, e.g. a test's dnsmasq. */
#ifndef DNS_MX_H
#define DNS_MX_H

#include <stddef.h>
#include <sys/socket.h>
#include "err.h"

struct dns_mx_host {
	char name[256];
	int pref;
};

/* The domain's mail exchangers, best first; hosts of equal preference in
 * random order. No MX records: the domain itself (the implicit MX). A
 * null MX (RFC 7505) or NXDOMAIN: -1 with err->temp = 0. Server failure
 * or timeout: -1 with err->temp = 1. *hosts_r is malloc'd: free(). */
int dns_mx_lookup(const char *domain, const char *resolver,
    struct dns_mx_host **hosts_r, size_t *n_r, struct err *err);

/* A and AAAA addresses of host (or host itself when it is an IP
 * literal), each with port set. Up to max; returns the count (>= 1) or
 * -1 with err (temp as above). */
int dns_mx_addrs(const char *host, const char *resolver, int port,
    struct sockaddr_storage *out, size_t max, struct err *err);

/* Pure: parse a DNS answer of qtype (1 = A, 28 = AAAA, 15 = MX). For MX,
 * fills hosts (up to max); for A/AAAA, fills addrs with the port. Returns
 * the number of records, or -1 when the message is malformed. */
int dns_mx_parse(const unsigned char *msg, size_t len, int qtype,
    struct dns_mx_host *hosts, struct sockaddr_storage *addrs, int port,
    size_t max);

#endif
