/* params: parameters common to all daemons. myhostname and mydomain have
 * computed defaults, registered with cfg_default_fn() from a constructor
 * (no I/O there): myhostname = gethostname(), and when that has no dot,
 * the canonical name getaddrinfo(AI_CANONNAME) gives (normally from
 * /etc/hosts), else NAME.localdomain as Postfix does; mydomain = the
 * loaded $myhostname minus its first label. Both run at cfg_load time. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "params.h"

char *var_myhostname;
char *var_mydomain;
char *var_myorigin;
char *var_inet_interfaces;
char *var_mail_owner;
int var_syslog_enable;
int var_debug;
char *var_default_pass_scheme;

const struct cfg_param params_common[] = {
	{ "myhostname", CFG_STR, "localhost.localdomain", &var_myhostname, 0, 0 },
	{ "mydomain", CFG_STR, "localdomain", &var_mydomain, 0, 0 },
	{ "myorigin", CFG_STR, "$myhostname", &var_myorigin, 0, 0 },
	{ "inet_interfaces", CFG_STR, "all", &var_inet_interfaces, 0, 0 },
	{ "mail_owner", CFG_STR, "vmail", &var_mail_owner, 0, 0 },
	{ "syslog_enable", CFG_BOOL, "yes", &var_syslog_enable, 0, 0 },
	{ "debug", CFG_BOOL, "no", &var_debug, 0, 0 },
	{ "default_pass_scheme", CFG_STR, "SHA512-CRYPT", &var_default_pass_scheme, 0, 0 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};

static char params_hostname[256];
static char params_domain[256];

static const char *params_myhostname_default(void)
{
	struct addrinfo hints, *res = NULL;

	if (params_hostname[0] != '\0')
		return params_hostname;
	if (gethostname(params_hostname, sizeof(params_hostname) - 1) < 0 ||
	    params_hostname[0] == '\0')
		snprintf(params_hostname, sizeof(params_hostname), "localhost");
	if (strchr(params_hostname, '.') != NULL)
		return params_hostname;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_flags = AI_CANONNAME;
	if (getaddrinfo(params_hostname, NULL, &hints, &res) == 0 && res != NULL &&
	    res->ai_canonname != NULL && strchr(res->ai_canonname, '.') != NULL &&
	    strlen(res->ai_canonname) < sizeof(params_hostname))
		snprintf(params_hostname, sizeof(params_hostname), "%s", res->ai_canonname);
	if (res != NULL)
		freeaddrinfo(res);
	/* Postfix (check_myhostname): a name without a dot gets .localdomain. */
	if (strchr(params_hostname, '.') == NULL) {
		size_t l = strlen(params_hostname);

		snprintf(params_hostname + l, sizeof(params_hostname) - l, ".localdomain");
	}
	return params_hostname;
}

static const char *params_mydomain_default(void)
{
	const char *h = cfg_get("myhostname");
	const char *dot = h != NULL ? strchr(h, '.') : NULL;

	/* $ would be expanded again: a host name never holds one. */
	if (dot == NULL || dot[1] == '\0' || strchr(dot, '$') != NULL)
		return "localdomain";
	snprintf(params_domain, sizeof(params_domain), "%s", dot + 1);
	return params_domain;
}

__attribute__((constructor)) static void params_register(void)
{
	cfg_default_fn("myhostname", params_myhostname_default);
	cfg_default_fn("mydomain", params_mydomain_default);
}
