/* milter_proto: the Sendmail milter protocol, version 6, as Postfix speaks
 * it (MTA side), as pure functions: packet framing, the commands we send
 * (encoded into a caller's struct buf) and the replies a milter sends
 * (parsed in place: outputs point into the caller's buffer; no I/O, no
 * allocation). A milter's bytes are untrusted input. The I/O is milter.c. */
#ifndef MILTER_PROTO_H
#define MILTER_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define MILTER_VERSION     6
#define MILTER_CHUNK_MAX   65535      /* a body chunk we send */
#define MILTER_PKT_MAX     (1024 * 1024) /* a packet we accept (SMFIP_MDS_1M) */
#define MILTER_NSTAGES     7          /* macro stages, SMFIM_* */

/* Commands, MTA to milter (SMFIC_*) */
enum milter_cmd {
	MILTER_C_ABORT = 'A', MILTER_C_BODY = 'B', MILTER_C_CONNECT = 'C',
	MILTER_C_MACRO = 'D', MILTER_C_EOB = 'E', MILTER_C_HELO = 'H',
	MILTER_C_QUIT_NC = 'K', MILTER_C_HEADER = 'L', MILTER_C_MAIL = 'M',
	MILTER_C_EOH = 'N', MILTER_C_OPTNEG = 'O', MILTER_C_QUIT = 'Q',
	MILTER_C_RCPT = 'R', MILTER_C_DATA = 'T', MILTER_C_UNKNOWN = 'U',
};

/* Replies, milter to MTA (SMFIR_*) */
enum milter_reply_type {
	MILTER_R_ADDRCPT = '+', MILTER_R_DELRCPT = '-',
	MILTER_R_ADDRCPT_PAR = '2', MILTER_R_SHUTDOWN = '4',
	MILTER_R_ACCEPT = 'a', MILTER_R_REPLBODY = 'b',
	MILTER_R_CONTINUE = 'c', MILTER_R_DISCARD = 'd',
	MILTER_R_CHGFROM = 'e', MILTER_R_CONN_FAIL = 'f',
	MILTER_R_ADDHEADER = 'h', MILTER_R_INSHEADER = 'i',
	MILTER_R_SETSYMLIST = 'l', MILTER_R_CHGHEADER = 'm',
	MILTER_R_PROGRESS = 'p', MILTER_R_QUARANTINE = 'q',
	MILTER_R_REJECT = 'r', MILTER_R_SKIP = 's', MILTER_R_TEMPFAIL = 't',
	MILTER_R_REPLYCODE = 'y', MILTER_R_OPTNEG = 'O',
};

/* Actions a milter may take (SMFIF_*), offered in OPTNEG */
#define MILTER_A_ADDHDRS     0x001
#define MILTER_A_CHGBODY     0x002
#define MILTER_A_ADDRCPT     0x004
#define MILTER_A_DELRCPT     0x008
#define MILTER_A_CHGHDRS     0x010
#define MILTER_A_QUARANTINE  0x020
#define MILTER_A_CHGFROM     0x040
#define MILTER_A_ADDRCPT_PAR 0x080
#define MILTER_A_SETSYMLIST  0x100
#define MILTER_A_ALL         0x1ff

/* Protocol steps (SMFIP_*): what the milter does not want (NO*), what it
 * will not answer (NR_*), and options. */
#define MILTER_P_NOCONNECT   0x00000001
#define MILTER_P_NOHELO      0x00000002
#define MILTER_P_NOMAIL      0x00000004
#define MILTER_P_NORCPT      0x00000008
#define MILTER_P_NOBODY      0x00000010
#define MILTER_P_NOHDRS      0x00000020
#define MILTER_P_NOEOH       0x00000040
#define MILTER_P_NR_HDR      0x00000080
#define MILTER_P_NOUNKNOWN   0x00000100
#define MILTER_P_NODATA      0x00000200
#define MILTER_P_SKIP        0x00000400
#define MILTER_P_RCPT_REJ    0x00000800
#define MILTER_P_NR_CONN     0x00001000
#define MILTER_P_NR_HELO     0x00002000
#define MILTER_P_NR_MAIL     0x00004000
#define MILTER_P_NR_RCPT     0x00008000
#define MILTER_P_NR_DATA     0x00010000
#define MILTER_P_NR_UNKN     0x00020000
#define MILTER_P_NR_EOH      0x00040000
#define MILTER_P_NR_BODY     0x00080000
#define MILTER_P_HDR_LEADSPC 0x00100000
#define MILTER_P_MDS_256K    0x10000000
#define MILTER_P_MDS_1M      0x20000000
/* What we offer: every step may be skipped or left unanswered, SKIP,
 * leading space kept, replies up to 1 MB; not RCPT_REJ (a rejected
 * recipient is never shown to the milters); we never send UNKNOWN. */
#define MILTER_P_OFFER       0x301ff7ff

/* Macro stages (SMFIM_*), the index in a SETSYMLIST */
enum milter_stage {
	MILTER_M_CONNECT, MILTER_M_HELO, MILTER_M_ENVFROM, MILTER_M_ENVRCPT,
	MILTER_M_DATA, MILTER_M_EOM, MILTER_M_EOH,
};

enum milter_rc {
	MILTER_OK = 0,
	MILTER_NEED_MORE = -2,
	MILTER_ERR_TOO_LONG = -3,   /* a packet over the limit */
	MILTER_ERR_SYNTAX = -4,     /* a malformed packet */
	MILTER_ERR_BUF = -5,        /* encoding: the output buffer is full */
};

/* ---- framing ---------------------------------------------------------- */

/* One packet at the start of buf: a 4-byte length in network order
 * (command byte included), the command byte, then len-1 data bytes.
 * MILTER_OK: *cmd_r, *data_r (into buf), *datalen_r, *used_r (bytes to
 * consume). MILTER_NEED_MORE until all of it is there; a length of 0 is
 * MILTER_ERR_SYNTAX, one over max MILTER_ERR_TOO_LONG as soon as the
 * length is read. */
enum milter_rc milter_packet_next(const char *buf, size_t len, size_t max,
    char *cmd_r, const char **data_r, size_t *datalen_r, size_t *used_r);

/* ---- replies ----------------------------------------------------------- */

/* A parsed reply; strings point into the packet data and are NUL-ended
 * there (the protocol sends them so), lengths exclude the NUL. */
struct milter_reply {
	char type;                    /* enum milter_reply_type */
	uint32_t index;               /* INSHEADER, CHGHEADER */
	const char *name;             /* header name */
	size_t name_len;
	const char *value;            /* header value (may be empty) */
	size_t value_len;
	const char *addr;             /* ADDRCPT(_PAR), DELRCPT, CHGFROM */
	size_t addr_len;
	const char *args;             /* ESMTP args of ADDRCPT_PAR/CHGFROM or NULL */
	size_t args_len;
	const char *text;             /* REPLYCODE whole line, QUARANTINE reason,
	                                 REPLBODY chunk (not NUL-ended) */
	size_t text_len;
	int code;                     /* REPLYCODE: 400..599 */
};

/* Judge one reply packet (type and data from milter_packet_next).
 * MILTER_ERR_SYNTAX for an unknown type, a missing NUL, a header name
 * that is empty or holds a colon, white space or a control, a header value
 * with a bare CR, a NUL or a line break not followed by white space
 * (RFC 5322 §2.2.3: that would start a new header), a REPLYCODE that is
 * not "4xx" or "5xx" followed by a space or '-', or a control character,
 * an address that is empty or holds a control. */
enum milter_rc milter_reply_parse(char type, const char *data, size_t len,
    struct milter_reply *r);

/* The milter's OPTNEG answer: version, actions, protocol, then optional
 * macro lists (a 4-byte stage, a NUL-ended list of names), SMFIR_SETSYMLIST
 * style. macros[i] is NULL when the milter named none for stage i. */
struct milter_optneg {
	uint32_t version, actions, protocol;
	const char *macros[MILTER_NSTAGES];
	size_t macro_len[MILTER_NSTAGES];
};
/* MILTER_ERR_SYNTAX: shorter than 12 bytes, version < 2 or > 6, a
 * stage out of range or given twice, a list without its NUL. */
enum milter_rc milter_optneg_parse(const char *data, size_t len,
    struct milter_optneg *o);

/* ---- commands ----------------------------------------------------------- */

/* Each appends one whole packet to b, or returns MILTER_ERR_BUF with b
 * unchanged (b->max reached or out of memory). Strings are sent up to
 * their NUL. */
int milter_put_optneg(struct buf *b, uint32_t version, uint32_t actions,
    uint32_t protocol);
/* cmd: the command the macros go with; names[i] / values[i], n pairs. */
int milter_put_macros(struct buf *b, char cmd, const char *const *names,
    const char *const *values, size_t n);
/* family '4', '6' (TCP: port and address) or 'L' (local: address is a
 * path), 'U' (unknown: port and address not sent). */
int milter_put_connect(struct buf *b, const char *host, char family,
    uint16_t port, const char *addr);
int milter_put_helo(struct buf *b, const char *helo);
/* MAIL and RCPT: the address in angle brackets, then ESMTP arguments. */
int milter_put_envelope(struct buf *b, char cmd, const char *addr,
    const char *const *args, size_t nargs);
int milter_put_header(struct buf *b, const char *name, size_t name_len,
    const char *value, size_t value_len);
/* len <= MILTER_CHUNK_MAX */
int milter_put_body(struct buf *b, const char *data, size_t len);
/* ABORT, EOH, EOB, DATA, QUIT, QUIT_NC: no data */
int milter_put_simple(struct buf *b, char cmd);

#endif
