/* libFuzzer target: canonical JSON (sl_jcs) of any JSON text reads back
 * as JSON and canonicalizes to the same bytes again. */
#include "sl_jcs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL),
	       *w;
	json_error_t err;
	size_t n1, n2;
	char *c1, *c2;

	if (!v)
		return 0;
	c1 = sl_jcs(v, 1 << 22, &n1);
	if (!c1)
		abort();
	w = json_loadb(c1, n1, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (!w && strstr(err.text, "too big")) {
		/* an integral double past 2^63 (1e20): JSON, but more than
		 * jansson's integers hold */
		free(c1);
		json_decref(v);
		return 0;
	}
	if (!w)
		abort(); /* not JSON */
	c2 = sl_jcs(w, 1 << 22, &n2);
	if (!c2 || n1 != n2 || memcmp(c1, c2, n1))
		abort(); /* not canonical */
	free(c1);
	free(c2);
	json_decref(v);
	json_decref(w);
	return 0;
}
