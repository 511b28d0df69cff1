/*
 * sl_schema.h - checks a JSON value against the subset of JSON Schema that
 * tool parameters use: type (one or a list), properties, required,
 * additionalProperties: false, enum, items, minLength / maxLength, minimum /
 * maximum. Other keywords are ignored.
 */
#ifndef SL_SCHEMA_H
#define SL_SCHEMA_H

#include "sl_common.h"

#include <jansson.h>

/*
 * Returns SL_OK when value satisfies schema, else SL_INVALID with the first
 * violation in errbuf, named by its path ("tool_args.user_id: must be a
 * string"). root names the value in messages.
 */
sl_status sl_schema_validate(const json_t *schema, const json_t *value, const char *root,
                             char *errbuf, size_t errsize);

/* True when value has the JSON Schema type name ("integer" accepts 2.0
 * too, as JSON Schema does). */
bool sl_schema_type_is(const json_t *value, const char *type);

#endif
