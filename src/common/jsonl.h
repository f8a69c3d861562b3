/*
 * JSON-lines helpers on top of json-c: parse one line into exactly one JSON
 * object, and typed, bounds-checked field access that explains what was
 * wrong ("field 'vcpus' must be an integer"). Shared by ferryd's request
 * validation, ferryd's worker-control client and the ferry CLI.
 */
#ifndef FERRY_JSONL_H
#define FERRY_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/err.h"

/* Parse len bytes (no '\n' needed) as one JSON object. Anything else
 * (syntax error, trailing bytes, an array, embedded NUL) fails. The caller
 * owns the result (json_object_put). */
struct json_object *jsonl_parse(const char *line, size_t len, struct err *e);

/* Field getters. Missing field: if required, an error; else 0 is returned
 * and *out left untouched, so callers preset defaults. Present with the
 * wrong type or out of range: an error. */
int jsonl_get_str(struct json_object *o, const char *key, bool required,
		  const char **out, struct err *e);
int jsonl_get_int(struct json_object *o, const char *key, bool required,
		  int64_t min, int64_t max, int64_t *out, struct err *e);
int jsonl_get_bool(struct json_object *o, const char *key, bool required,
		   bool *out, struct err *e);

/* Fail on the first key of o not in the NULL-terminated list allowed, so
 * a typo ("memroy_mib") is reported rather than silently ignored. */
int jsonl_only_keys(struct json_object *o, const char *const *allowed,
		    struct err *e);

/* Compact one-line text of o (owned by o, valid until o changes). */
const char *jsonl_text(struct json_object *o);

/* Small builders that keep call sites short. */
void jsonl_add_str(struct json_object *o, const char *key, const char *val);
void jsonl_add_int(struct json_object *o, const char *key, int64_t val);
void jsonl_add_bool(struct json_object *o, const char *key, bool val);
/* A number written with `decimals` places (0.1 ms, not 17 digits). */
void jsonl_add_fixed(struct json_object *o, const char *key, double val, int decimals);

#endif
