/* mra_userip: logged-in sessions per (user, client address), shared by
 * IMAP and POP3 (Dovecot's mail_max_userip_connections). The daemon owns
 * one table (mra/main.c) and hands it to both servers; loop thread only. */
#ifndef MRA_USERIP_H
#define MRA_USERIP_H

struct mra_userip;

/* max: sessions of one user from one address; 0: no limit. NULL when out
 * of memory. */
struct mra_userip *mra_userip_new(unsigned max);
void mra_userip_free(struct mra_userip *u);
unsigned mra_userip_max(const struct mra_userip *u);
/* At login: 0 taken (release it when the session ends), 1 over the limit
 * (nothing taken), -1 out of memory (nothing taken). The user name is
 * compared without case. */
int mra_userip_acquire(struct mra_userip *u, const char *user,
		       const char *addr);
void mra_userip_release(struct mra_userip *u, const char *user,
			const char *addr);
/* Sessions held now for (user, addr) (tests, logs). */
unsigned mra_userip_count(const struct mra_userip *u, const char *user,
			  const char *addr);

#endif
