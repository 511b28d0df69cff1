/*
 * sl_jcs.c - canonical JSON, RFC 8785.
 */
#include "sl_jcs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shortest decimal digits that read back as d (d > 0), as
 * printf's %e writes them: digits[] without the point, no trailing
 * zeros, and the exponent of the first. Of the shortest, %e's correct
 * rounding gives the closest to d, as ECMAScript asks. */
static int shortest(double d, char digits[20], int *exp10)
{
	char buf[40];
	int k = 0;

	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	/* buf: D[.DDD]e±XX */
	for (const char *p = buf; *p && *p != 'e'; p++)
		if (*p != '.')
			digits[k++] = *p;
	while (k > 1 && digits[k - 1] == '0')
		k--;
	digits[k] = '\0';
	*exp10 = (int)strtol(strchr(buf, 'e') + 1, NULL, 10);
	return k;
}

size_t sl_jcs_number(double d, char out[32])
{
	char digits[20], *o = out;
	int k, n, e;

	if (d == 0) /* -0 too */
		return (size_t)snprintf(out, 32, "0");
	if (d < 0) {
		*o++ = '-';
		d = -d;
	}
	k = shortest(d, digits, &e);
	n = e + 1; /* d = 0.DIGITS x 10^n */
	if (k <= n && n <= 21) {
		/* the digits, then n - k zeros */
		memcpy(o, digits, (size_t)k);
		memset(o + k, '0', (size_t)(n - k));
		o += n;
	} else if (0 < n && n <= 21) {
		/* the point among the digits */
		memcpy(o, digits, (size_t)n);
		o[n] = '.';
		memcpy(o + n + 1, digits + n, (size_t)(k - n));
		o += k + 1;
	} else if (-6 < n && n <= 0) {
		/* 0.000DIGITS */
		memcpy(o, "0.", 2);
		memset(o + 2, '0', (size_t)-n);
		memcpy(o + 2 - n, digits, (size_t)k);
		o += 2 - n + k;
	} else {
		/* D[.DDD]e+X */
		*o++ = digits[0];
		if (k > 1) {
			*o++ = '.';
			memcpy(o, digits + 1, (size_t)(k - 1));
			o += k - 1;
		}
		o += snprintf(o, 8, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
	}
	*o = '\0';
	return (size_t)(o - out);
}

/* The next UTF-16 code unit of the UTF-8 text at *s (len bytes left),
 * for sorting member names: a code point past U+FFFF gives its two
 * surrogates in turn (*pending holds the second). jansson's strings are
 * valid UTF-8. */
static unsigned next_unit(const unsigned char **s, size_t *len, unsigned *pending)
{
	const unsigned char *p = *s;
	unsigned cp;
	size_t n;

	if (*pending) {
		cp = *pending;
		*pending = 0;
		return cp;
	}
	if (p[0] < 0x80)
		cp = p[0], n = 1;
	else if (p[0] < 0xe0)
		cp = (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu), n = 2;
	else if (p[0] < 0xf0)
		cp = (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu), n = 3;
	else
		cp = (p[0] & 0x07u) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6 |
		     (p[3] & 0x3fu),
		n = 4;
	if (n > *len) /* cut short: cannot happen with jansson's strings */
		n = *len;
	*s += n;
	*len -= n;
	if (cp > 0xffff) {
		cp -= 0x10000;
		*pending = 0xdc00 + (cp & 0x3ff);
		return 0xd800 + (cp >> 10);
	}
	return cp;
}

typedef struct member {
	const char *name;
	size_t len;
	json_t *value;
} member;

static int by_utf16(const void *x, const void *y)
{
	const member *a = x, *b = y;
	const unsigned char *p = (const unsigned char *)a->name,
	                    *q = (const unsigned char *)b->name;
	size_t lp = a->len, lq = b->len;
	unsigned pp = 0, pq = 0;

	while ((lp || pp) && (lq || pq)) {
		unsigned u = next_unit(&p, &lp, &pp), v = next_unit(&q, &lq, &pq);
		if (u != v)
			return u < v ? -1 : 1;
	}
	return (lp || pp) ? 1 : (lq || pq) ? -1 : 0;
}

static sl_status put_string(sl_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t from = 0;
	sl_status st = sl_buf_append(b, "\"", 1);

	for (size_t i = 0; i < len && !st; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		size_t n = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		esc[0] = '\\';
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
		}
		st = sl_buf_append(b, s + from, i - from);
		if (!st)
			st = sl_buf_append(b, esc, n);
		from = i + 1;
	}
	if (!st)
		st = sl_buf_append(b, s + from, len - from);
	return st ? st : sl_buf_append(b, "\"", 1);
}

static sl_status put(sl_buf *b, const json_t *v)
{
	char num[32];
	sl_status st = SL_OK;

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		size_t n = json_object_size(v), i = 0;
		member *m = sl_calloc(n ? n : 1, sizeof(*m));
		const char *name;
		json_t *value;

		json_object_foreach ((json_t *)v, name, value) {
			m[i].name = name;
			m[i].len = strlen(name); /* jansson's keys hold no NUL */
			m[i++].value = value;
		}
		qsort(m, n, sizeof(*m), by_utf16);
		st = sl_buf_append(b, "{", 1);
		for (i = 0; i < n && !st; i++) {
			if (i)
				st = sl_buf_append(b, ",", 1);
			if (!st)
				st = put_string(b, m[i].name, m[i].len);
			if (!st)
				st = sl_buf_append(b, ":", 1);
			if (!st)
				st = put(b, m[i].value);
		}
		free(m);
		return st ? st : sl_buf_append(b, "}", 1);
	}
	case JSON_ARRAY:
		st = sl_buf_append(b, "[", 1);
		for (size_t i = 0; i < json_array_size(v) && !st; i++) {
			if (i)
				st = sl_buf_append(b, ",", 1);
			if (!st)
				st = put(b, json_array_get(v, i));
		}
		return st ? st : sl_buf_append(b, "]", 1);
	case JSON_STRING: return put_string(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return sl_buf_append(b, num, sl_jcs_number((double)json_integer_value(v), num));
	case JSON_REAL: return sl_buf_append(b, num, sl_jcs_number(json_real_value(v), num));
	case JSON_TRUE: return sl_buf_append(b, "true", 4);
	case JSON_FALSE: return sl_buf_append(b, "false", 5);
	default: return sl_buf_append(b, "null", 4);
	}
}

char *sl_jcs(const json_t *v, size_t max, size_t *len)
{
	sl_buf b;

	sl_buf_init(&b, max);
	if (put(&b, v)) {
		sl_buf_free(&b);
		return NULL;
	}
	if (len)
		*len = b.len;
	return sl_buf_steal(&b);
}

bool sl_jcs_sha256(const json_t *v, size_t max, char hex[65])
{
	size_t len;
	char *text = sl_jcs(v, max, &len);

	if (!text)
		return false;
	sl_sha256_hex(text, len, hex);
	free(text);
	return true;
}
