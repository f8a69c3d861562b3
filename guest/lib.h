/*
 * Freestanding helpers for the test guest: the mem* functions the compiler
 * may call, a small printf-style formatter and string parsing. Used at both
 * CPL0 and CPL3, so plain integer code only.
 */
#ifndef FERRY_GUEST_LIB_H
#define FERRY_GUEST_LIB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/* %s %c %d %u %x with l/ll modifiers and '0'/width; always NUL-terminates. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Parse a decimal number with optional K/M/G suffix (binary units).
 * Returns 0 on success. */
int parse_size(const char *s, size_t len, uint64_t *out);

#endif
