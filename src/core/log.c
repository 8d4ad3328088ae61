/* SPDX-License-Identifier: EUPL-1.2 */
/* Line-per-event key=value logging to stderr, a file and/or syslog; see log.h. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static atomic_int log_level = LOG_LEVEL_INFO;
/* Where lines go.  Starts as stderr; a log file is swapped in with dup2()
 * so concurrent writers always see a valid descriptor. */
static int log_fd = STDERR_FILENO;
static char *log_path;
static atomic_bool log_to_syslog;
static char syslog_ident[64];
/* Serialises changes of destination (not writes: each line is one write). */
static pthread_mutex_t log_dest_lock = PTHREAD_MUTEX_INITIALIZER;

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *log_level_name(enum log_level level)
{
	return level_names[level];
}

void log_set_level(enum log_level level)
{
	atomic_store(&log_level, level);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load(&log_level);
}

static int open_log_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_set_file(const char *path)
{
	int rc = 0;
	pthread_mutex_lock(&log_dest_lock);
	if (path == NULL) {
		if (log_fd != STDERR_FILENO) {
			/* Point the descriptor back at stderr rather than closing it
			 * under a concurrent writer. */
			dup2(STDERR_FILENO, log_fd);
		}
		free(log_path);
		log_path = NULL;
	} else {
		int fd = open_log_file(path);
		if (fd < 0) {
			rc = -1;
		} else if (log_fd == STDERR_FILENO) {
			log_fd = fd;
		} else {
			dup2(fd, log_fd);
			close(fd);
		}
		if (rc == 0) {
			free(log_path);
			log_path = strdup(path);
		}
	}
	pthread_mutex_unlock(&log_dest_lock);
	return rc;
}

int log_reopen(void)
{
	pthread_mutex_lock(&log_dest_lock);
	int rc = 0;
	if (log_path != NULL) {
		int fd = open_log_file(log_path);
		if (fd < 0) {
			rc = -1;
		} else {
			dup2(fd, log_fd);
			close(fd);
		}
	}
	pthread_mutex_unlock(&log_dest_lock);
	return rc;
}

void log_set_syslog(bool enabled, const char *ident)
{
	pthread_mutex_lock(&log_dest_lock);
	if (atomic_load(&log_to_syslog))
		closelog();
	if (enabled) {
		/* openlog() keeps the pointer: give it storage that lives on. */
		snprintf(syslog_ident, sizeof(syslog_ident), "%s", ident ? ident : "zone-mta");
		openlog(syslog_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	}
	atomic_store(&log_to_syslog, enabled);
	pthread_mutex_unlock(&log_dest_lock);
}

/* Appends `s` to buf at *pos, escaping control characters so that a log
 * line always stays one line. */
static void append_escaped(char *buf, size_t len, size_t *pos, const char *s)
{
	/* Room for the longest escape (4) and the final "\n\0" (2). */
	for (; *s != '\0' && *pos + 6 <= len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\n') {
			buf[(*pos)++] = '\\';
			buf[(*pos)++] = 'n';
		} else if (c == '\r') {
			buf[(*pos)++] = '\\';
			buf[(*pos)++] = 'r';
		} else if (c == '\t') {
			buf[(*pos)++] = '\\';
			buf[(*pos)++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			*pos += (size_t)snprintf(buf + *pos, len - *pos, "\\x%02x", c);
		} else {
			buf[(*pos)++] = (char)c;
		}
	}
	if (*s != '\0') {
		/* Out of room: mark the cut, leaving space for "\n\0". */
		*pos = len - 5;
		memcpy(buf + *pos, "...", 3);
		*pos += 3;
	}
}

size_t log_format(char *buf, size_t len, const struct timespec *now, enum log_level level,
		  const char *qid, const char *event, const char *fmt, va_list ap)
{
	char body[LOG_LINE_MAX];
	struct tm tm;
	size_t pos;

	gmtime_r(&now->tv_sec, &tm);
	pos = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	pos += (size_t)snprintf(buf + pos, len - pos, ".%03ldZ %s ", now->tv_nsec / 1000000L,
				level_names[level]);
	if (qid != NULL) {
		append_escaped(buf, len, &pos, "id=");
		append_escaped(buf, len, &pos, qid);
		append_escaped(buf, len, &pos, " ");
	}
	append_escaped(buf, len, &pos, "event=");
	append_escaped(buf, len, &pos, event);
	if (fmt != NULL && *fmt != '\0') {
		int want = vsnprintf(body, sizeof(body), fmt, ap);
		if (body[0] != '\0')
			append_escaped(buf, len, &pos, " ");
		append_escaped(buf, len, &pos, body);
		if (want >= (int)sizeof(body))
			append_escaped(buf, len, &pos, "...");
	}
	buf[pos++] = '\n';
	buf[pos] = '\0';
	return pos;
}

void log_msg(enum log_level level, const char *qid, const char *event, const char *fmt, ...)
{
	char line[LOG_LINE_MAX + 64];
	struct timespec now;
	va_list ap;

	if ((int)level > atomic_load(&log_level))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	va_start(ap, fmt);
	size_t n = log_format(line, sizeof(line), &now, level, qid, event, fmt, ap);
	va_end(ap);

	/* One write per line: O_APPEND files and pipes keep lines whole. */
	ssize_t w;
	do {
		w = write(log_fd, line, n);
	} while (w < 0 && errno == EINTR);

	if (atomic_load(&log_to_syslog)) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		/* syslog stamps its own time: skip ours (up to the level). */
		const char *msg = strchr(line, ' ');
		msg = msg ? strchr(msg + 1, ' ') : NULL;
		line[n - 1] = '\0';
		syslog(prio[level], "%s", msg ? msg + 1 : line);
	}
}
