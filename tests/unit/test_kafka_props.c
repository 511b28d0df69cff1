/*
 * test_kafka_props.c - a deployment's Kafka properties: the file and the
 * variables, which wins, and start-up errors that name the property and
 * where it was given, never quoting a secret.
 */
#include "sl_kafka.h"
#include "sl_kafka_props.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static const char *const no_fixed[] = {NULL};

/* A properties file with text; its path (static). */
static const char *props_file(const char *text)
{
	static char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/sluice-test-props-%d", (int)getpid());
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static char *conf_get(rd_kafka_conf_t *conf, const char *name)
{
	static char value[512];
	size_t size = sizeof(value);

	if (rd_kafka_conf_get(conf, name, value, &size) != RD_KAFKA_CONF_OK)
		return NULL;
	return value;
}

/* Loads props from envp and applies them to a new conf (*conf). */
static sl_status load_apply(char **envp, const char *const *fixed, rd_kafka_conf_t **conf,
                            char *errbuf, size_t errsize)
{
	sl_kafka_props props;
	sl_status st = sl_kafka_props_load(&props, envp, errbuf, errsize);

	*conf = rd_kafka_conf_new();
	if (st)
		return st;
	st = sl_kafka_props_apply(&props, *conf, fixed, errbuf, errsize);
	sl_kafka_props_free(&props);
	return st;
}

static void file_then_variables_which_win(void **state)
{
	char file_var[128], err[512];
	const char *path = props_file("# a comment\n"
	                              "! another\n"
	                              "\n"
	                              "security.protocol = SASL_SSL\r\n"
	                              "sasl.mechanisms=SCRAM-SHA-512\n"
	                              "client.id=from-file\n");
	char *envp[] = {file_var,
	                "SLUICE_KAFKA_CLIENT_ID=from-variable",
	                "SLUICE_KAFKA_SASL_USERNAME=sluice",
	                "SLUICE_KAFKA_BROKERS=ignored:9092",
	                "SLUICE_KAFKA_FETCH_WAIT_MS=1",
	                "OTHER=1",
	                NULL};
	rd_kafka_conf_t *conf;

	(void)state;
	snprintf(file_var, sizeof(file_var), "SLUICE_KAFKA_CONFIG=%s", path);
	assert_int_equal(load_apply(envp, no_fixed, &conf, err, sizeof(err)), SL_OK);
	assert_string_equal(conf_get(conf, "security.protocol"), "sasl_ssl");
	assert_string_equal(conf_get(conf, "sasl.mechanisms"), "SCRAM-SHA-512");
	assert_string_equal(conf_get(conf, "client.id"), "from-variable");
	assert_string_equal(conf_get(conf, "sasl.username"), "sluice");
	rd_kafka_conf_destroy(conf);
	unlink(path);
}

static void unknown_property_is_named_with_its_origin(void **state)
{
	char err[512];
	char *envp[] = {"SLUICE_KAFKA_NO_SUCH_THING=1", NULL};
	rd_kafka_conf_t *conf;

	(void)state;
	assert_int_equal(load_apply(envp, no_fixed, &conf, err, sizeof(err)), SL_INVALID);
	assert_string_equal(err,
	                    "SLUICE_KAFKA_NO_SUCH_THING: unknown Kafka property no.such.thing");
	rd_kafka_conf_destroy(conf);
}

static void bad_value_is_named_and_a_line_of_the_file_too(void **state)
{
	char file_var[128], err[512];
	const char *path = props_file("client.id=x\nsocket.timeout.ms=soon\n");
	char *envp[] = {file_var, NULL};
	char want[256];
	rd_kafka_conf_t *conf;

	(void)state;
	snprintf(file_var, sizeof(file_var), "SLUICE_KAFKA_CONFIG=%s", path);
	assert_int_equal(load_apply(envp, no_fixed, &conf, err, sizeof(err)), SL_INVALID);
	snprintf(want, sizeof(want), "%s:2: ", path);
	assert_memory_equal(err, want, strlen(want));
	assert_non_null(strstr(err, "socket.timeout.ms"));
	rd_kafka_conf_destroy(conf);
	unlink(path);
}

static void a_line_without_a_value_and_a_missing_file(void **state)
{
	char file_var[128], err[512];
	const char *path = props_file("client.id=x\njust words\n");
	char *envp[] = {file_var, NULL};
	char *missing[] = {"SLUICE_KAFKA_CONFIG=/nonexistent/kafka.properties", NULL};
	sl_kafka_props props;

	(void)state;
	snprintf(file_var, sizeof(file_var), "SLUICE_KAFKA_CONFIG=%s", path);
	assert_int_equal(sl_kafka_props_load(&props, envp, err, sizeof(err)), SL_INVALID);
	assert_non_null(strstr(err, ":2: not a name=value line"));
	assert_int_equal(sl_kafka_props_load(&props, missing, err, sizeof(err)), SL_INVALID);
	assert_non_null(strstr(err, "cannot read /nonexistent/kafka.properties"));
	unlink(path);
}

/* The properties Sluice's guarantees rest on, and the ones its own
 * variables set, cannot be given. */
static void fixed_and_own_properties_are_refused(void **state)
{
	static const char *const fixed[] = {"enable.idempotence", "true", NULL};
	char err[512];
	char *idem[] = {"SLUICE_KAFKA_ENABLE_IDEMPOTENCE=false", NULL};
	char *servers[] = {"SLUICE_KAFKA_BOOTSTRAP_SERVERS=elsewhere:9092", NULL};
	rd_kafka_conf_t *conf;

	(void)state;
	assert_int_equal(load_apply(idem, fixed, &conf, err, sizeof(err)), SL_INVALID);
	assert_string_equal(err, "SLUICE_KAFKA_ENABLE_IDEMPOTENCE: Kafka property "
	                         "enable.idempotence cannot be changed: Sluice's guarantees "
	                         "rest on it being true");
	rd_kafka_conf_destroy(conf);
	assert_int_equal(load_apply(servers, fixed, &conf, err, sizeof(err)), SL_INVALID);
	assert_string_equal(err, "SLUICE_KAFKA_BOOTSTRAP_SERVERS: Kafka property "
	                         "bootstrap.servers comes from SLUICE_KAFKA_BROKERS only");
	rd_kafka_conf_destroy(conf);
	/* and with none given, the fixed value is set */
	assert_int_equal(load_apply((char *[]){NULL}, fixed, &conf, err, sizeof(err)), SL_OK);
	assert_string_equal(conf_get(conf, "enable.idempotence"), "true");
	rd_kafka_conf_destroy(conf);
}

/* No error quotes a secret's value; one that is valid is taken as it is. */
static void a_secret_is_never_quoted(void **state)
{
	char err[512];
	char *valid[] = {"SLUICE_KAFKA_SASL_PASSWORD=hunter2-secret", NULL};
	char *unknown[] = {"SLUICE_KAFKA_SASL_PASSWORDS=hunter3-secret", NULL};
	rd_kafka_conf_t *conf;

	(void)state;
	assert_true(sl_kafka_prop_secret("sasl.password"));
	assert_true(sl_kafka_prop_secret("ssl.key.password"));
	assert_true(sl_kafka_prop_secret("ssl.key.pem"));
	assert_true(sl_kafka_prop_secret("sasl.oauthbearer.client.secret"));
	assert_false(sl_kafka_prop_secret("sasl.username"));
	assert_false(sl_kafka_prop_secret("security.protocol"));
	assert_int_equal(load_apply(valid, no_fixed, &conf, err, sizeof(err)), SL_OK);
	assert_string_equal(conf_get(conf, "sasl.password"), "hunter2-secret");
	rd_kafka_conf_destroy(conf);
	assert_int_equal(load_apply(unknown, no_fixed, &conf, err, sizeof(err)), SL_INVALID);
	assert_null(strstr(err, "hunter3"));
	rd_kafka_conf_destroy(conf);
}

/* A cluster id starting with "-" made kafka-storage format refuse it as
 * an option (1 `sluice dev up --kafka apache` in 64 failed so). */
static void a_cluster_id_never_starts_with_a_dash(void **state)
{
	char id[23];

	(void)state;
	for (int i = 0; i < 5000; i++) {
		sl_kafka_cluster_id(id);
		assert_int_equal(strlen(id), 22);
		assert_int_equal(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		                            "0123456789-_"),
		                 22);
		assert_true(id[0] != '-');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_cluster_id_never_starts_with_a_dash),
	    cmocka_unit_test(file_then_variables_which_win),
	    cmocka_unit_test(unknown_property_is_named_with_its_origin),
	    cmocka_unit_test(bad_value_is_named_and_a_line_of_the_file_too),
	    cmocka_unit_test(a_line_without_a_value_and_a_missing_file),
	    cmocka_unit_test(fixed_and_own_properties_are_refused),
	    cmocka_unit_test(a_secret_is_never_quoted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
