/* stderr logger (see log.h). One write() per line so lines from threads do
 * not interleave; with a log file, a lock so that a rotation does not race
 * a write or another rotation. */
#include "common/log.h"

#include <pthread.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/caplog.h"

static const char *log_prog = "ferry";
static enum log_level log_max = LOG_INFO;
static struct caplog log_file = { .fd = -1 };
static pthread_mutex_t log_file_lock = PTHREAD_MUTEX_INITIALIZER;

void log_init(const char *progname, enum log_level level)
{
	log_prog = progname;
	log_max = level;
}

int log_to_file(const char *path, uint64_t max, struct err *e)
{
	int rc;

	pthread_mutex_lock(&log_file_lock);
	rc = caplog_open_stderr(&log_file, path, max, e);
	pthread_mutex_unlock(&log_file_lock);
	return rc;
}

/* The line goes to stderr either way; through the capped file when there
 * is one. Best effort: a failed log write has nowhere better to go, but a
 * failed rotation is said once, in the file that goes on growing. */
static void log_emit(const char *line, size_t n)
{
	char note[512];
	int rc, len;

	/* log_to_file runs at start-up, before there are threads */
	if (log_file.fd < 0) {
		ssize_t w = write(STDERR_FILENO, line, n);
		(void)w;
		return;
	}
	pthread_mutex_lock(&log_file_lock);
	rc = caplog_write(&log_file, line, n);
	if (rc < 0) {
		len = snprintf(note, sizeof(note), "%s[%d] warn: log %s: %s: %s; it grows on past its limit\n",
			       log_prog, (int)getpid(), log_file.path, log_file.fail_what,
			       strerror(log_file.fail_errno));
		if (len > 0)
			(void)caplog_write(&log_file, note, strnlen(note, sizeof(note)));
	}
	pthread_mutex_unlock(&log_file_lock);
}

void log_text_clean(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = *s == '\t' ? ' ' : '?';
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (lvl > log_max)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s[%d] %s: ",
		     tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		     log_prog, (int)getpid(), names[lvl]);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	/* Messages carry text from peers (a source's abort reason, a request's
	 * field): one line per message, so no forged or garbled lines. */
	log_text_clean(line);
	line[n++] = '\n';
	log_emit(line, (size_t)n);
}
