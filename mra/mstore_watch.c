/* mstore_watch: inotify on a folder's new/ and cur/ for IMAP IDLE. Events
 * are coalesced: the callback runs once, MSTORE_WATCH_DELAY_MS after the
 * first change of a burst, on the event loop. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>
#include <event2/event.h>
#include "mstore.h"

#define MSTORE_WATCH_DELAY_MS 200

struct mstore_watch {
	int fd;
	struct event *ev, *timer;
	void (*cb)(void *arg);
	void *arg;
};

static void mstore_watch_fire(evutil_socket_t fd, short what, void *arg)
{
	struct mstore_watch *w = arg;

	w->cb(w->arg);
}

static void mstore_watch_read(evutil_socket_t fd, short what, void *arg)
{
	struct mstore_watch *w = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct timeval tv = { 0, MSTORE_WATCH_DELAY_MS * 1000 };

	while (read(fd, buf, sizeof(buf)) > 0)
		;   /* drain: what changed is found by the next sync */
	if (!evtimer_pending(w->timer, NULL))
		evtimer_add(w->timer, &tv);
}

struct mstore_watch *mstore_watch_new(struct event_base *base,
                                      struct mstore *ms, const char *name,
                                      void (*cb)(void *arg), void *arg,
                                      struct err *err)
{
	static const char *const subs[] = { "new", "cur" };
	struct mstore_watch *w;
	char p[PATH_MAX];
	size_t i;

	if (strcasecmp(name, "INBOX") != 0 && mstore_name_check(name, err) < 0)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		err_set(err, 1, "out of memory");
		return NULL;
	}
	w->cb = cb;
	w->arg = arg;
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		err_set(err, 1, "inotify_init1: %s", strerror(errno));
		free(w);
		return NULL;
	}
	for (i = 0; i < 2; i++) {
		int r;

		if (strcasecmp(name, "INBOX") == 0)
			r = snprintf(p, sizeof(p), "%s/%s", mstore_root(ms), subs[i]);
		else
			r = snprintf(p, sizeof(p), "%s/.%s/%s", mstore_root(ms), name, subs[i]);
		if (r < 0 || (size_t)r >= sizeof(p) ||
		    inotify_add_watch(w->fd, p, IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM |
		                      IN_DELETE | IN_ONLYDIR) < 0) {
			err_set(err, 0, "cannot watch %s: %s", p, strerror(errno));
			mstore_watch_free(w);
			return NULL;
		}
	}
	w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, mstore_watch_read, w);
	w->timer = evtimer_new(base, mstore_watch_fire, w);
	if (w->ev == NULL || w->timer == NULL || event_add(w->ev, NULL) < 0) {
		err_set(err, 1, "out of memory");
		mstore_watch_free(w);
		return NULL;
	}
	return w;
}

void mstore_watch_free(struct mstore_watch *w)
{
	if (w == NULL)
		return;
	if (w->ev != NULL)
		event_free(w->ev);
	if (w->timer != NULL)
		event_free(w->timer);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
}
