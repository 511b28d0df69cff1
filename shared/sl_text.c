/*
 * sl_text.c - UTF-8 repair and escaping of untrusted text.
 */
#include "sl_text.h"
#include "sl_common.h"

#include <stdio.h>
#include <string.h>

/* The length of the valid UTF-8 sequence at s (at most len bytes), or 0
 * when s does not start one. */
static size_t seq_len(const unsigned char *s, size_t len)
{
	unsigned c = s[0];
	size_t n;
	unsigned lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* no overlong form */
		else if (c == 0xed)
			hi = 0x9f; /* no surrogate */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f; /* nothing past U+10FFFF */
	} else
		return 0;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

bool sl_text_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0, n; i < len; i += n)
		if (!(n = seq_len(p + i, len - i)))
			return false;
	return true;
}

char *sl_text_fix(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = sl_malloc(len * 3 + 1), *o = out;

	for (size_t i = 0, n; i < len && p[i]; i += n) {
		n = seq_len(p + i, len - i);
		if (n) {
			memcpy(o, p + i, n);
			o += n;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			n = 1;
		}
	}
	*o = '\0';
	return out;
}

size_t sl_text_cut(const char *s, size_t len, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;

	if (len <= max)
		return len;
	/* back over continuation bytes to the start of the cut character */
	while (max > 0 && (p[max] & 0xc0) == 0x80)
		max--;
	return max;
}

json_t *sl_text_json(const char *s)
{
	size_t len = strlen(s);
	json_t *j;
	char *fixed;

	if (sl_text_valid(s, len))
		return json_stringn_nocheck(s, len);
	fixed = sl_text_fix(s, len);
	j = json_string_nocheck(fixed);
	free(fixed);
	return j;
}

void sl_text_escape(const char *s, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s), o = 0;

	if (size == 0)
		return;
	for (size_t i = 0, n; i < len; i += n) {
		char esc[8];
		const char *add = esc;
		size_t k;

		n = seq_len(p + i, len - i);
		if (n == 0) {
			add = "\xef\xbf\xbd";
			k = 3;
			n = 1;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			if (p[i] == '\n')
				add = "\\n";
			else if (p[i] == '\r')
				add = "\\r";
			else if (p[i] == '\t')
				add = "\\t";
			else
				snprintf(esc, sizeof(esc), "\\x%02x", p[i]);
			k = strlen(add);
		} else {
			add = s + i;
			k = n;
		}
		if (o + k >= size)
			break;
		memcpy(out + o, add, k);
		o += k;
	}
	out[o] = '\0';
}
