/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Logging: one line per event, `key=value` pairs, the queue id first when
 * there is one:
 *
 *   2026-11-24T07:00:00.123Z info id=1578a823de00009fbb event=accepted from=<a@b>
 *
 * Lines go to stderr, or to a file (reopened on SIGHUP for log rotation), and
 * optionally to syslog as well.  Each line is written with one write(2), so
 * lines from several threads never interleave.  Control characters in a line
 * are escaped: a line on disk is always exactly one event.
 */
#ifndef ZMTA_LOG_H
#define ZMTA_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Longest line written; longer lines are cut and end in "...". */
#define LOG_LINE_MAX 4096

/* Parses "error", "warn", "info" or "debug"; returns 0 or -1. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/*
 * Sends lines to `path` (appending, created 0640) instead of stderr; NULL
 * goes back to stderr.  Returns 0, or -1 with errno set and the previous
 * destination kept.
 */
int log_set_file(const char *path);
/* Reopens the current log file under its name (after rotation); 0 or -1. */
int log_reopen(void);
/* Also sends lines to syslog (facility mail) under `ident`, or stops. */
void log_set_syslog(bool enabled, const char *ident);

/* Formats one line (with trailing newline) into buf; returns its length. */
size_t log_format(char *buf, size_t len, const struct timespec *now, enum log_level level,
		  const char *qid, const char *event, const char *fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));

/* Logs one event.  `qid` may be NULL; `fmt` gives the remaining key=value pairs. */
void log_msg(enum log_level level, const char *qid, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(event, ...) log_msg(LOG_LEVEL_ERROR, NULL, event, __VA_ARGS__)
#define log_warn(event, ...) log_msg(LOG_LEVEL_WARN, NULL, event, __VA_ARGS__)
#define log_info(event, ...) log_msg(LOG_LEVEL_INFO, NULL, event, __VA_ARGS__)
#define log_debug(event, ...) log_msg(LOG_LEVEL_DEBUG, NULL, event, __VA_ARGS__)

#endif
