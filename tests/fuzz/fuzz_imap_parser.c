/* Fuzz target for mra/imap_parser: any bytes must give a count, need-more
 * or an error, never a read outside the input; sequence sets too, and
 * mailbox names must round-trip through modified UTF-7. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../mra/imap_cmd.h"
#include "../../mra/imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct imap_parser_limits lim = {
		.max_line = 1024, .max_literal = 2048, .max_depth = 10
	};
	struct imap_arg args[128];
	struct imap_parse_need need;
	enum imap_parse_err err;
	struct imap_seq_range rng[16];
	char name[512], name2[512], back[1024];
	size_t used, off = 0;
	char *buf = malloc(size + 1), *tag;
	int n;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	while (off < size) {
		n = imap_parser_parse(&lim, buf + off, size - off, &tag, args,
				      128, &used, &need, &err);
		if (n >= 0 && args[0].type == IMAP_ARG_ATOM)
			(void)imap_seqset_parse(args[0].s, rng, 16);
		if (n >= 1 && imap_arg_is_string(args[0].next) &&
		    imap_cmd_mutf7_decode(args[0].next->s, name,
					  sizeof(name)) == 0 &&
		    imap_cmd_mutf7_encode(name, back, sizeof(back)) == 0 &&
		    imap_cmd_mutf7_decode(back, name2, sizeof(name2)) == 0 &&
		    strcmp(name, name2) != 0)
			abort();   /* modified UTF-7 must round-trip */
		if (used == 0 || used > size - off)
			break;
		off += used;
	}
	free(buf);
	return 0;
}
