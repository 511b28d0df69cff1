/*
 * sl_schema.c - a small JSON Schema checker for tool arguments.
 */
#include "sl_schema.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 32

bool sl_schema_type_is(const json_t *v, const char *type)
{
	if (!strcmp(type, "string"))
		return json_is_string(v);
	if (!strcmp(type, "number"))
		return json_is_number(v);
	if (!strcmp(type, "integer"))
		return json_is_integer(v) ||
		       (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v));
	if (!strcmp(type, "boolean"))
		return json_is_boolean(v);
	if (!strcmp(type, "object"))
		return json_is_object(v);
	if (!strcmp(type, "array"))
		return json_is_array(v);
	if (!strcmp(type, "null"))
		return json_is_null(v);
	return true; /* unknown type names do not constrain */
}

static sl_status check(const json_t *schema, const json_t *v, const char *path, int depth,
                       char *errbuf, size_t errsize)
{
	const json_t *type, *x;
	const char *key;
	json_t *sub;
	size_t i;

	if (!json_is_object(schema))
		return SL_OK;
	if (depth > MAX_DEPTH)
		return sl_err(errbuf, errsize, SL_INVALID, "%s: nested too deeply", path);
	type = json_object_get(schema, "type");
	if (json_is_string(type) && !sl_schema_type_is(v, json_string_value(type)))
		return sl_err(errbuf, errsize, SL_INVALID, "%s: must be of type %s", path,
		              json_string_value(type));
	if (json_is_array(type)) {
		bool any = false;
		json_array_foreach (type, i, x)
			any = any ||
			      (json_is_string(x) && sl_schema_type_is(v, json_string_value(x)));
		if (!any)
			return sl_err(errbuf, errsize, SL_INVALID, "%s: has the wrong type", path);
	}
	x = json_object_get(schema, "enum");
	if (json_is_array(x)) {
		bool found = false;
		json_array_foreach (x, i, sub)
			found = found || json_equal(sub, v);
		if (!found)
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: is not one of the allowed values", path);
	}
	if (json_is_string(v)) {
		size_t len = json_string_length(v);
		x = json_object_get(schema, "minLength");
		if (json_is_integer(x) && (json_int_t)len < json_integer_value(x))
			return sl_err(errbuf, errsize, SL_INVALID, "%s: is shorter than %lld", path,
			              (long long)json_integer_value(x));
		x = json_object_get(schema, "maxLength");
		if (json_is_integer(x) && (json_int_t)len > json_integer_value(x))
			return sl_err(errbuf, errsize, SL_INVALID, "%s: is longer than %lld", path,
			              (long long)json_integer_value(x));
	}
	if (json_is_number(v)) {
		x = json_object_get(schema, "minimum");
		if (json_is_number(x) && json_number_value(v) < json_number_value(x))
			return sl_err(errbuf, errsize, SL_INVALID, "%s: is below %g", path,
			              json_number_value(x));
		x = json_object_get(schema, "maximum");
		if (json_is_number(x) && json_number_value(v) > json_number_value(x))
			return sl_err(errbuf, errsize, SL_INVALID, "%s: is above %g", path,
			              json_number_value(x));
	}
	if (json_is_object(v)) {
		const json_t *props = json_object_get(schema, "properties");
		json_t *val;

		json_array_foreach (json_object_get(schema, "required"), i, x) {
			if (json_is_string(x) && !json_object_get(v, json_string_value(x)))
				return sl_err(errbuf, errsize, SL_INVALID, "%s.%s: is required",
				              path, json_string_value(x));
		}
		json_object_foreach ((json_t *)v, key, val) {
			char sub_path[256];
			const json_t *ps = json_object_get(props, key);
			sl_status st;

			snprintf(sub_path, sizeof(sub_path), "%s.%.100s", path, key);
			if (!ps) {
				if (json_is_false(json_object_get(schema, "additionalProperties")))
					return sl_err(errbuf, errsize, SL_INVALID,
					              "%s: is not allowed", sub_path);
				continue;
			}
			if ((st = check(ps, val, sub_path, depth + 1, errbuf, errsize)))
				return st;
		}
	}
	if (json_is_array(v) && json_is_object(json_object_get(schema, "items"))) {
		json_array_foreach (v, i, sub) {
			char sub_path[256];
			sl_status st;

			snprintf(sub_path, sizeof(sub_path), "%s[%zu]", path, i);
			if ((st = check(json_object_get(schema, "items"), sub, sub_path, depth + 1,
			                errbuf, errsize)))
				return st;
		}
	}
	return SL_OK;
}

sl_status sl_schema_validate(const json_t *schema, const json_t *value, const char *root,
                             char *errbuf, size_t errsize)
{
	return check(schema, value, root, 0, errbuf, errsize);
}
