/* map_static: "static:VALUE" answers VALUE for every key (Postfix
 * dict_static). "static:{ text }" strips the braces and the white space
 * inside them, so the value may hold commas and spaces. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "map_backend.h"

static void *map_static_open(const char *arg, struct err *err)
{
	size_t len = strlen(arg);
	char *v;

	if (len >= 2 && arg[0] == '{' && arg[len - 1] == '}') {
		arg++;
		len -= 2;
		while (len > 0 && isspace((unsigned char)*arg)) {
			arg++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)arg[len - 1]))
			len--;
	}
	v = strndup(arg, len);
	if (v == NULL)
		err_set(err, 1, "static map: out of memory");
	return v;
}

static enum map_rc map_static_lookup(void *h, const char *key, char **value_r,
                                     struct err *err)
{
	*value_r = strdup(h);
	if (*value_r == NULL) {
		err_set(err, 1, "static map: out of memory");
		return MAP_TEMPFAIL;
	}
	return MAP_FOUND;
}

static void map_static_close(void *h)
{
	free(h);
}

const struct map_backend map_static_backend = {
	"static", map_static_open, map_static_lookup, map_static_close, NULL, 1,
};
