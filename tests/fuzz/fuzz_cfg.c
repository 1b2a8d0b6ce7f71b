/* Fuzz target for shared/cfg.c: the input is the text of a config file,
 * loaded against a table of every type (with $name defaults that refer
 * to each other), then read again with the raw pair reader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cfg.h"

static char *fuzz_s1, *fuzz_s2, *fuzz_s3;
static long fuzz_i, fuzz_t;
static int fuzz_b;

static const struct cfg_param fuzz_tab[] = {
	{ "a", CFG_STR, "x$b", &fuzz_s1, 0, 0 },
	{ "b", CFG_STR, "${c?y}", &fuzz_s2, 0, 0 },
	{ "c", CFG_STR, "", &fuzz_s3, 0, 0 },
	{ "n", CFG_INT, "5", &fuzz_i, 1, 100 },
	{ "t", CFG_TIME, "1h", &fuzz_t, 0, 0 },
	{ "f", CFG_BOOL, "no", &fuzz_b, 0, 0 },
	{ NULL, CFG_STR, NULL, NULL, 0, 0 },
};
static const struct cfg_param *const fuzz_tabs[] = { fuzz_tab, NULL };

static int fuzz_cfg_pair(void *arg, const char *name, const char *value,
			 const char *file, int line, struct err *err)
{
	size_t *count = arg;

	if (name[0] == '\0' || line < 1)
		abort();
	(*count)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct err err;
	size_t count = 0;
	char *copy = malloc(size ? size : 1);
	char **v;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	if (cfg_load_text(fuzz_tabs, copy, size, "fuzz.cf", &err) == 0) {
		if (fuzz_s1 == NULL || fuzz_s2 == NULL || fuzz_s3 == NULL ||
		    fuzz_i < 1 || fuzz_i > 100 || fuzz_t < 0)
			abort();
		if ((v = cfg_list_split(fuzz_s1)) != NULL)
			cfg_list_free(v);
		cfg_list_contains(fuzz_s1, "x");
	} else if (memchr(err.msg, '\0', sizeof(err.msg)) == NULL) {
		abort();
	}
	cfg_read_pairs_text(copy, size, "fuzz.cf", fuzz_cfg_pair, &count, &err);
	cfg_free(fuzz_tabs);
	free(copy);
	return 0;
}
