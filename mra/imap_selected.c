/* imap_selected: the selected mailbox of a logged-in user. */
#include <stdlib.h>
#include <string.h>
#include "imap_selected.h"
#include "mstore.h"

void imap_selected_unselect(struct imap_user *u)
{
	unsigned opts = u->view.opts;

	mstore_folder_free(u->folder);
	u->folder = NULL;
	free(u->sel_name);
	u->sel_name = NULL;
	free(u->sel_path);
	u->sel_path = NULL;
	imap_view_free(&u->view);
	u->view.opts = opts;
	u->readonly = 0;
}

int imap_selected_select(struct imap_user *u, const char *name, int readonly,
			 struct buf *out, struct err *err)
{
	struct imap_view_src src;
	struct mstore_folder *f;

	imap_selected_unselect(u);
	f = mstore_folder_open(u->ms, name, readonly, err);
	if (f == NULL)
		return -1;
	u->sel_name = strdup(f->name);
	u->sel_path = strdup(f->path);
	if (u->sel_name == NULL || u->sel_path == NULL) {
		mstore_folder_free(f);
		imap_selected_unselect(u);
		return err_set(err, 1, "out of memory");
	}
	u->folder = f;
	u->readonly = readonly || f->readonly;
	u->view.opts = u->enabled;
	imap_view_src_of(&src, f);
	if (imap_view_open(&u->view, &src, u->readonly, out) < 0) {
		imap_selected_unselect(u);
		return err_set(err, 1, "out of memory");
	}
	return 0;
}

void imap_selected_park(struct imap_user *u)
{
	mstore_folder_free(u->folder);
	u->folder = NULL;
}

int imap_selected_open(struct imap_user *u, struct err *err)
{
	struct mstore_folder *f;

	if (u->folder != NULL || u->sel_name == NULL)
		return 0;
	f = mstore_folder_open(u->ms, u->sel_name, u->readonly, err);
	if (f == NULL)
		return -1;
	if (f->uidvalidity != u->view.uidvalidity) {
		mstore_folder_free(f);
		return err_set(err, 0, "UIDVALIDITY of %s changed",
			       u->sel_name);
	}
	u->folder = f;
	return 0;
}

int imap_selected_sync(struct imap_user *u, unsigned flags, struct buf *out,
		       struct err *err)
{
	struct mstore_changes ch;
	struct imap_view_src src;
	int rc;

	if (u->sel_name == NULL)
		return 0;
	if (u->folder == NULL)
		return imap_selected_open(u, err) < 0 ? -1 :
			imap_selected_sync(u, flags, out, err);
	memset(&ch, 0, sizeof(ch));
	rc = mstore_sync(u->folder, &ch, err);
	if (rc < 0 && err->temp)
		return 1;
	if (rc == 0 && ch.uidvalidity_changed)
		rc = err_set(err, 0, "UIDVALIDITY of %s changed", u->sel_name);
	mstore_changes_free(&ch);
	if (rc < 0)
		return -1;
	u->view.opts = u->enabled;
	imap_view_src_of(&src, u->folder);
	if (imap_view_sync(&u->view, &src, flags, out) < 0)
		return err_set(err, 1, "out of memory for untagged responses");
	return 0;
}

long imap_selected_msg(const struct imap_user *u, size_t vidx)
{
	if (u->folder == NULL || vidx >= u->view.count ||
	    u->view.msgs[vidx].gone)
		return -1;
	return mstore_find_uid(u->folder, u->view.msgs[vidx].uid);
}
