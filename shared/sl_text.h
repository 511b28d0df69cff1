/*
 * sl_text.h - untrusted bytes made fit for JSON and for log lines: valid
 * UTF-8 (invalid sequences replaced with U+FFFD), cut on character
 * boundaries, control characters escaped.
 */
#ifndef SL_TEXT_H
#define SL_TEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is valid UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
bool sl_text_valid(const char *s, size_t len);

/*
 * Returns a copy of s[0..len) (free() it) that is valid UTF-8: each byte
 * that does not start a valid sequence becomes U+FFFD. An embedded NUL
 * ends the copy.
 */
char *sl_text_fix(const char *s, size_t len);

/* The length of the longest prefix of the valid UTF-8 text s[0..len) that
 * is at most max bytes and does not end inside a character. */
size_t sl_text_cut(const char *s, size_t len, size_t max);

/* A JSON string of any NUL-terminated text: s itself when it is valid
 * UTF-8, else its sl_text_fix() copy. Never NULL. */
json_t *sl_text_json(const char *s);

/*
 * Copies s into out (size bytes, NUL-terminated, cut on a character
 * boundary) with control characters (below 0x20, and 0x7f) written as
 * \n, \r, \t or \xNN and invalid UTF-8 replaced: a log line stays one line
 * whatever its arguments hold.
 */
void sl_text_escape(const char *s, char *out, size_t size);

#endif
