/*
 * sl_log.c - stderr logging. One fprintf per record so lines written by
 * several threads do not interleave.
 */
#include "sl_log.h"
#include "sl_common.h"
#include "sl_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *log_program = "sluice";
static sl_log_level log_min = SL_LOG_INFO;

void sl_log_init(const char *program)
{
	const char *lvl = getenv("SLUICE_LOG_LEVEL");

	log_program = program;
	if (!lvl)
		return;
	if (!strcmp(lvl, "debug"))
		log_min = SL_LOG_DEBUG;
	else if (!strcmp(lvl, "warn"))
		log_min = SL_LOG_WARN;
	else if (!strcmp(lvl, "error"))
		log_min = SL_LOG_ERROR;
}

void sl_log(sl_log_level level, const char *fmt, ...)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	char when[32], msg[2048], line[2048];
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one record, one line, whatever its arguments hold */
	sl_text_escape(msg, line, sizeof(line));
	sl_time_rfc3339(when);
	fprintf(stderr, "%s %s[%d] %s: %s\n", when, log_program, (int)getpid(), names[level], line);
}
