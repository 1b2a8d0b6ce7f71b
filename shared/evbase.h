/* evbase: the libevent base each daemon runs its loop on. */
#ifndef EVBASE_H
#define EVBASE_H

#include <event2/event.h>

/* A new base (NULL on failure), the caller's to free. */
struct event_base *evbase_new(void);

#endif
