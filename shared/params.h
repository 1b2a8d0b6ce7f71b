/* params: the parameters every daemon reads (Postfix names and meaning).
 * Daemons put params_common first in their table list:
 *   static const struct cfg_param *const tabs[] = { params_common, smtpd_params, NULL };
 * The variables are owned by cfg (strings malloc'd, freed on reload). */
#ifndef PARAMS_H
#define PARAMS_H

#include "cfg.h"

extern const struct cfg_param params_common[];

extern char *var_myhostname;       /* default: gethostname(), made fully qualified */
extern char *var_mydomain;         /* default: $myhostname minus its first label */
extern char *var_myorigin;         /* default: $myhostname */
extern char *var_inet_interfaces;  /* default: all */
extern char *var_mail_owner;       /* default: vmail */
extern int var_syslog_enable;      /* syslog_enable, default yes */
extern int var_debug;              /* debug, default no */
extern char *var_default_pass_scheme; /* default: SHA512-CRYPT */

#endif
