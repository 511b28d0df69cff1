/*
 * sl_kafka_props.h - the librdkafka properties a deployment gives every
 * Sluice client (DESIGN.md, "Kafka in production"): the lines of the file
 * SLUICE_KAFKA_CONFIG names ("name=value", as kcat's -F and the Java
 * client's properties files: '#' and '!' start comments) and the variables
 * SLUICE_KAFKA_<NAME> (upper case, dots as underscores), which win over the
 * file. SLUICE_KAFKA_BROKERS, SLUICE_KAFKA_FETCH_WAIT_MS and
 * SLUICE_KAFKA_CONFIG keep their own meaning and are not property names.
 */
#ifndef SL_KAFKA_PROPS_H
#define SL_KAFKA_PROPS_H

#include "sl_common.h"

#include <librdkafka/rdkafka.h>

/* One property and where it was given ("SLUICE_KAFKA_SASL_USERNAME",
 * "/etc/kafka.properties:3"), for errors that name it. */
typedef struct sl_kafka_prop {
	char *name;
	char *value;
	char *origin;
} sl_kafka_prop;

typedef struct sl_kafka_props {
	sl_kafka_prop *p;
	size_t n;
} sl_kafka_props;

/*
 * Reads the file named by SLUICE_KAFKA_CONFIG (when set) and the
 * SLUICE_KAFKA_* variables of envp (NULL: the process's environment).
 * SL_INVALID, naming the line, for a file that cannot be read or a line
 * that is not name=value.
 */
sl_status sl_kafka_props_load(sl_kafka_props *props, char *const *envp, char *errbuf,
                              size_t errsize);

void sl_kafka_props_free(sl_kafka_props *props);

/* Whether a property holds a secret (a password, a key, a token): its value
 * appears in no log and no error. */
bool sl_kafka_prop_secret(const char *name);

/*
 * Sets props on conf, after Sluice's defaults and before the properties
 * its guarantees rest on (fixed, NULL-terminated name/value pairs), which
 * props may not name. SL_INVALID naming the property and where it was
 * given: an unknown property, a bad value (the value itself only when it
 * is no secret), or a fixed one.
 */
sl_status sl_kafka_props_apply(const sl_kafka_props *props, rd_kafka_conf_t *conf,
                               const char *const *fixed, char *errbuf, size_t errsize);

#endif
