/*
 * Errors with context. Library code never exits: it fills a struct err and
 * returns -1 (or NULL). Callers may prefix context as the error travels up.
 * Only main() prints the message and chooses the exit code.
 */
#ifndef FERRY_ERR_H
#define FERRY_ERR_H

#include <stdarg.h>

#define ERR_MSG_MAX 512

struct err {
	char msg[ERR_MSG_MAX];
	int code; /* errno when the cause was a system call, else 0 */
};

/* Set a message; always returns -1 so callers can `return err_set(...)`. */
int err_set(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Same, appending ": strerror(errno)" and recording errno. */
int err_sys(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prefix existing message with more context ("loading kernel: <old>"). */
int err_prefix(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
