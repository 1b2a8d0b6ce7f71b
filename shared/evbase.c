/* evbase: the libevent base each daemon runs its loop on.
 *
 * With epoll, libevent makes one epoll_ctl per event_add/event_del unless
 * the base keeps a changelist: then the changes made while callbacks run
 * are merged per descriptor and applied once before the next epoll_wait.
 * A session enables writing for a reply and disables it once the reply is
 * out, hiredis re-adds its read event after every reply, a connection is
 * added and dropped in one callback: with the changelist most of these
 * pairs cancel out and never reach the kernel (issue 12: about 20
 * epoll_ctl per relayed message without it).
 *
 * libevent's one caveat for the changelist (event_config_set_flag(3),
 * EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) is a descriptor cloned by dup():
 * closing one copy leaves the file registered under the other. No daemon
 * here dup()s a descriptor it hands to the loop. */
#include "evbase.h"

struct event_base *evbase_new(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (cfg == NULL)
		return NULL;
	(void)event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}
