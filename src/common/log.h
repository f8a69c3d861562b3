/*
 * Logging to stderr with a level, a timestamp and the process name. Workers
 * and the daemon redirect stderr to their log files, so this is the one sink.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

#include <stdint.h>

#include "common/err.h"

void log_init(const char *progname, enum log_level level);
/* From now on log into path, which also becomes stderr, kept under max
 * bytes (common/caplog.h; 0: no limit). For a process that runs for months
 * with no one reading its output but a file. */
int log_to_file(const char *path, uint64_t max, struct err *e);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Make text from elsewhere one printable line, in place: control
 * characters (a newline that would forge a log line, a terminal escape)
 * become '?', a tab a space. */
void log_text_clean(char *s);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
