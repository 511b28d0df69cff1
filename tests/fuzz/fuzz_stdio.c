/* libFuzzer target: a "stdio" tool process's output, as the worker reads it:
 * arbitrary bytes in arbitrary chunks, split into lines (a short line limit,
 * so that over-long lines are skipped too), each decoded as an answer. */
#include "../../worker/wk_stdio.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT 64

static void on_line(void *ctx, const char *text, size_t len)
{
	const sl_tool *tool = ctx;
	long long id;
	char *result;

	if (!text)
		return;
	if (len > LIMIT || memchr(text, '\n', len))
		abort(); /* a line is whole, without its newline, within the limit */
	result = wk_stdio_decode(tool, text, len, &id);
	free(result);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sl_tool tool = {.name = "fuzz"};
	bool skipping = false;
	sl_buf b;

	sl_buf_init(&b, LIMIT);
	/* each chunk's length is the byte before it */
	while (size) {
		size_t n = (size_t)data[0] % 97 + 1;
		data++;
		size--;
		if (n > size)
			n = size;
		wk_stdio_feed(&b, &skipping, (const char *)data, n, on_line, &tool);
		data += n;
		size -= n;
	}
	sl_buf_free(&b);
	return 0;
}
