/* Fuzz target for mra/pop3_cmd: frame lines from arbitrary bytes under a
 * limit and parse each, checking the outputs stay inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../mra/pop3_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t off = 0;

	while (off < size) {
		struct pop3_cmd c;
		size_t n, used;
		unsigned long v;
		unsigned i;

		if (pop3_cmd_line(p + off, size - off, 300, &n, &used) != POP3_OK)
			break;
		if (pop3_cmd_parse(p + off, n, &c) == POP3_OK) {
			for (i = 0; i < c.narg; i++) {
				if (c.arg[i] < p + off || c.arg[i] + c.arg_len[i] > p + off + n)
					abort();
				pop3_cmd_number(c.arg[i], c.arg_len[i], &v);
			}
		}
		off += used;
	}
	return 0;
}
