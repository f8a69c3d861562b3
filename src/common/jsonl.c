/* JSON-lines helpers (see jsonl.h). */
#include "common/jsonl.h"

#include <stdio.h>
#include <string.h>

struct json_object *jsonl_parse(const char *line, size_t len, struct err *e)
{
	struct json_tokener *tok;
	struct json_object *o;
	enum json_tokener_error jerr;
	size_t used;

	if (len > INT32_MAX) {
		err_set(e, "request too large");
		return NULL;
	}
	/* json-c would stop at a NUL and report success on a prefix. */
	if (memchr(line, '\0', len)) {
		err_set(e, "malformed JSON: NUL byte in request");
		return NULL;
	}
	tok = json_tokener_new();
	if (!tok) {
		err_set(e, "out of memory");
		return NULL;
	}
	o = json_tokener_parse_ex(tok, line, (int)len);
	jerr = json_tokener_get_error(tok);
	used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr == json_tokener_continue) {
		err_set(e, "malformed JSON: incomplete object");
		json_object_put(o);
		return NULL;
	}
	if (!o || jerr != json_tokener_success) {
		err_set(e, "malformed JSON: %s", json_tokener_error_desc(jerr));
		json_object_put(o);
		return NULL;
	}
	/* Allow trailing whitespace (e.g. "\r" from telnet-style clients),
	 * nothing else: two objects on one line is a protocol error. */
	for (; used < len; used++) {
		if (!strchr(" \t\r", line[used])) {
			err_set(e, "malformed JSON: unexpected data after the object");
			json_object_put(o);
			return NULL;
		}
	}
	if (!json_object_is_type(o, json_type_object)) {
		err_set(e, "request must be a JSON object");
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* Look up key; 1 = found, 0 = absent and optional, -1 = absent and required. */
static int jsonl_lookup(struct json_object *o, const char *key, bool required,
			struct json_object **v, struct err *e)
{
	if (!json_object_object_get_ex(o, key, v) || !*v) {
		if (required)
			return err_set(e, "missing field '%s'", key);
		return 0;
	}
	return 1;
}

int jsonl_get_str(struct json_object *o, const char *key, bool required,
		  const char **out, struct err *e)
{
	struct json_object *v;
	int rc = jsonl_lookup(o, key, required, &v, e);
	if (rc <= 0)
		return rc;
	if (!json_object_is_type(v, json_type_string))
		return err_set(e, "field '%s' must be a string", key);
	*out = json_object_get_string(v);
	/* Strings are later used as C strings (paths, argv): an embedded NUL
	 * would silently cut them. */
	if (strlen(*out) != (size_t)json_object_get_string_len(v))
		return err_set(e, "field '%s' contains a NUL byte", key);
	return 0;
}

int jsonl_get_int(struct json_object *o, const char *key, bool required,
		  int64_t min, int64_t max, int64_t *out, struct err *e)
{
	struct json_object *v;
	int64_t x;
	int rc = jsonl_lookup(o, key, required, &v, e);
	if (rc <= 0)
		return rc;
	if (!json_object_is_type(v, json_type_int))
		return err_set(e, "field '%s' must be an integer", key);
	x = json_object_get_int64(v);
	/* json-c saturates huge literals to INT64_MIN/MAX, which the range
	 * check below rejects for every field we have. */
	if (x < min || x > max)
		return err_set(e, "field '%s' must be between %lld and %lld (got %lld)",
			       key, (long long)min, (long long)max, (long long)x);
	*out = x;
	return 0;
}

int jsonl_get_bool(struct json_object *o, const char *key, bool required,
		   bool *out, struct err *e)
{
	struct json_object *v;
	int rc = jsonl_lookup(o, key, required, &v, e);
	if (rc <= 0)
		return rc;
	if (!json_object_is_type(v, json_type_boolean))
		return err_set(e, "field '%s' must be true or false", key);
	*out = json_object_get_boolean(v);
	return 0;
}

int jsonl_only_keys(struct json_object *o, const char *const *allowed,
		    struct err *e)
{
	json_object_object_foreach(o, key, val) {
		const char *const *a;
		(void)val;
		for (a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				break;
		if (!*a)
			return err_set(e, "unknown field '%.64s'", key);
	}
	return 0;
}

const char *jsonl_text(struct json_object *o)
{
	return json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

void jsonl_add_str(struct json_object *o, const char *key, const char *val)
{
	json_object_object_add(o, key, json_object_new_string(val ? val : ""));
}

void jsonl_add_int(struct json_object *o, const char *key, int64_t val)
{
	json_object_object_add(o, key, json_object_new_int64(val));
}

void jsonl_add_bool(struct json_object *o, const char *key, bool val)
{
	json_object_object_add(o, key, json_object_new_boolean(val));
}

void jsonl_add_fixed(struct json_object *o, const char *key, double val, int decimals)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "%.*f", decimals, val);
	json_object_object_add(o, key, json_object_new_double_s(val, buf));
}
