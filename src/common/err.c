/* Error-with-context helpers (see err.h). */
#include "common/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int err_set(struct err *e, const char *fmt, ...)
{
	va_list ap;
	if (!e)
		return -1;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	e->code = 0;
	return -1;
}

int err_sys(struct err *e, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	size_t n;
	if (!e)
		return -1;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	n = strlen(e->msg);
	if (n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(saved));
	e->code = saved;
	errno = saved;
	return -1;
}

int err_prefix(struct err *e, const char *fmt, ...)
{
	char buf[2 * ERR_MSG_MAX + 4];
	va_list ap;
	size_t n;
	if (!e)
		return -1;
	va_start(ap, fmt);
	vsnprintf(buf, ERR_MSG_MAX, fmt, ap);
	va_end(ap);
	n = strlen(buf);
	buf[n++] = ':';
	buf[n++] = ' ';
	memcpy(buf + n, e->msg, ERR_MSG_MAX);
	buf[sizeof(buf) - 1] = 0;
	/* Keep the most specific context: truncate at the end, not the start. */
	memcpy(e->msg, buf, ERR_MSG_MAX - 1);
	e->msg[ERR_MSG_MAX - 1] = 0;
	return -1;
}
