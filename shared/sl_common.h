/*
 * sl_common.h - status codes, allocation wrappers and bounded buffers shared
 * by every Sluice program.
 */
#ifndef SL_COMMON_H
#define SL_COMMON_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * The one status type of the project. The class decides what the caller does:
 * SL_RETRY is transient (try again later), SL_INVALID is bad input (dead-letter
 * it, answer 400), SL_NOT_FOUND and SL_CONFLICT are bad input of a more
 * precise kind (404 / 409 over HTTP, dead-letter over Kafka), SL_FATAL stops
 * the process.
 */
typedef enum sl_status {
	SL_OK = 0,
	SL_RETRY,
	SL_INVALID,
	SL_NOT_FOUND,
	SL_CONFLICT,
	SL_FORBIDDEN, /* the caller may not: 403 */
	SL_TOO_BIG,
	SL_FATAL
} sl_status;

/*
 * A process's stop flag: set by its signal handler or by any thread, read
 * by every thread. A lock-free atomic is both what a signal handler may
 * write and what threads may share (a volatile sig_atomic_t is only the
 * former).
 */
typedef atomic_int sl_stop_flag;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop flag must be lock-free");

/*
 * Allocation wrappers: they never return NULL; an allocation failure prints a
 * message and aborts the process.
 */
void *sl_malloc(size_t n);
void *sl_calloc(size_t nmemb, size_t size);
void *sl_realloc(void *p, size_t n);
char *sl_strdup(const char *s);
char *sl_strndup(const char *s, size_t n);
/* Returns a newly allocated formatted string (free() it). */
char *sl_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Frees a NULL-terminated array of strings and the strings; NULL is fine. */
void sl_strv_free(char **v);

/* Writes a formatted message into errbuf (NULL-safe) and returns st. */
sl_status sl_err(char *errbuf, size_t errsize, sl_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * A growable byte buffer with a hard limit. The data is always NUL-terminated
 * so it can be used as a string. Appending past the limit fails with
 * SL_TOO_BIG and leaves the buffer as it was.
 */
typedef struct sl_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t limit;
} sl_buf;

void sl_buf_init(sl_buf *b, size_t limit);
sl_status sl_buf_append(sl_buf *b, const void *p, size_t n);
/* Hands the data to the caller (free() it) and resets the buffer. */
char *sl_buf_steal(sl_buf *b);
void sl_buf_free(sl_buf *b);

/* Parses s as a whole decimal number from lo to hi into *out; false (and
 * *out untouched) for anything else, an empty string included. */
bool sl_parse_long(const char *s, long lo, long hi, long *out);

/* Writes a lowercase random (version 4) UUID into out: for secrets. */
void sl_uuid_v4(char out[37]);

/* Writes a lowercase time-ordered (version 7) UUID into out: for ids that
 * become database keys, so that new rows land at the end of their indexes
 * instead of all over them. */
void sl_uuid_v7(char out[37]);

/* Current time in milliseconds since the epoch / of the monotonic clock. */
long long sl_now_ms(void);

/* The SHA-256 of p[0..n) as 64 lowercase hex digits. */
void sl_sha256_hex(const void *p, size_t n, char hex[65]);
long long sl_mono_ms(void);

/* The wall-clock time ms from now, for pthread_cond_timedwait(). */
struct timespec;
void sl_deadline_ms(struct timespec *out, long ms);

/* Writes the current UTC time as RFC 3339 with milliseconds into out. */
void sl_time_rfc3339(char out[32]);

/* Sleeps ms milliseconds (restarting after signals is the caller's business). */
void sl_sleep_ms(long ms);

#endif
