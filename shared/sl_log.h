/*
 * sl_log.h - one-line log records on stderr:
 * "TIME PROGRAM[PID] LEVEL: message".
 */
#ifndef SL_LOG_H
#define SL_LOG_H

typedef enum sl_log_level { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR } sl_log_level;

/* Sets the program name shown on each line; the level comes from
 * SLUICE_LOG_LEVEL (debug, info, warn, error; default info). */
void sl_log_init(const char *program);

void sl_log(sl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sl_debug(...) sl_log(SL_LOG_DEBUG, __VA_ARGS__)
#define sl_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)

#endif
