/*
 * Unit tests of wk_flight: which messages may start, and which offsets are
 * committed. Real messages, from librdkafka's in-process mock cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../worker/wk_flight.h"

#include <librdkafka/rdkafka_mock.h>

#define TOPIC "flight"
#define NMSG 6

/* Keys of the messages at offsets 0..5: runs a, b, a, c, d, a. */
static const char *keys[NMSG] = {"a", "b", "a", "c", "d", "a"};

typedef struct fixture {
	rd_kafka_t *producer; /* owns the mock cluster */
	rd_kafka_t *consumer;
	rd_kafka_message_t *m[NMSG];
} fixture;

static rd_kafka_conf_t *conf_of(const char *const *kv)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];

	for (; *kv; kv += 2)
		if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
			fail_msg("%s: %s", kv[0], err);
	return conf;
}

static int setup(void **state)
{
	static const char *pconf[] = {"test.mock.num.brokers", "1", NULL};
	fixture *f = calloc(1, sizeof(*f));
	char err[256];
	const char *bootstraps;
	rd_kafka_topic_partition_list_t *parts;

	f->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf_of(pconf), err, sizeof(err));
	assert_non_null(f->producer);
	bootstraps = rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(f->producer));
	for (int i = 0; i < NMSG; i++)
		assert_int_equal(rd_kafka_producev(f->producer, RD_KAFKA_V_TOPIC(TOPIC),
		                                   RD_KAFKA_V_PARTITION(0),
		                                   RD_KAFKA_V_KEY(keys[i], strlen(keys[i])),
		                                   RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_END),
		                 0);
	assert_int_equal(rd_kafka_flush(f->producer, 10000), 0);
	{
		const char *cconf[] = {"bootstrap.servers",
		                       bootstraps,
		                       "group.id",
		                       "test-flight",
		                       "enable.auto.commit",
		                       "false",
		                       "enable.auto.offset.store",
		                       "false",
		                       NULL};
		f->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf_of(cconf), err, sizeof(err));
	}
	assert_non_null(f->consumer);
	rd_kafka_poll_set_consumer(f->consumer);
	parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(f->consumer, parts), 0);
	rd_kafka_topic_partition_list_destroy(parts);
	for (int i = 0; i < NMSG;) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(f->consumer, 1000);
		if (!m)
			continue;
		if (m->err) {
			rd_kafka_message_destroy(m);
			continue;
		}
		assert_int_equal(m->offset, i);
		f->m[i++] = m;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	for (int i = 0; i < NMSG; i++)
		if (f->m[i])
			rd_kafka_message_destroy(f->m[i]);
	rd_kafka_consumer_close(f->consumer);
	rd_kafka_destroy(f->consumer);
	rd_kafka_destroy(f->producer);
	free(f);
	return 0;
}

/* The committed offset of the partition after committing what is stored;
 * -1001 (RD_KAFKA_OFFSET_INVALID) when nothing is. */
static int64_t committed(fixture *f)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	int64_t off;

	rd_kafka_commit(f->consumer, NULL, 0); /* "no offset" is fine */
	rd_kafka_topic_partition_list_add(parts, TOPIC, 0);
	assert_int_equal(rd_kafka_committed(f->consumer, parts, 10000), 0);
	off = parts->elems[0].offset;
	rd_kafka_topic_partition_list_destroy(parts);
	return off;
}

/* Ends message i (the flight destroys it); returns what may start next. */
static rd_kafka_message_t *done(fixture *f, wk_flight *fl, int i)
{
	rd_kafka_message_t *m = f->m[i];

	f->m[i] = NULL;
	return wk_flight_done(fl, m);
}

static void same_key_waits_for_the_earlier(void **state)
{
	fixture *f = *state;
	wk_flight *fl = wk_flight_new(f->consumer);
	rd_kafka_message_t *next;

	assert_ptr_equal(wk_flight_add(fl, f->m[0]), f->m[0]);
	assert_ptr_equal(wk_flight_add(fl, f->m[1]), f->m[1]);
	assert_null(wk_flight_add(fl, f->m[2])); /* a: waits behind 0 */
	assert_ptr_equal(wk_flight_add(fl, f->m[3]), f->m[3]);
	assert_ptr_equal(wk_flight_add(fl, f->m[4]), f->m[4]);
	assert_null(wk_flight_add(fl, f->m[5])); /* a: waits behind 2 */
	assert_int_equal(wk_flight_count(fl), NMSG);

	assert_null(done(f, fl, 1)); /* nobody waits for b */
	next = done(f, fl, 0);
	assert_ptr_equal(next, f->m[2]); /* a's next, in order */
	assert_ptr_equal(done(f, fl, 2), f->m[5]);
	assert_null(done(f, fl, 5));
	assert_null(done(f, fl, 3));
	assert_null(done(f, fl, 4));
	assert_int_equal(wk_flight_count(fl), 0);
	wk_flight_free(fl);
}

static void stores_the_lowest_unfinished(void **state)
{
	fixture *f = *state;
	wk_flight *fl = wk_flight_new(f->consumer);

	for (int i = 0; i < NMSG - 1; i++)
		wk_flight_add(fl, f->m[i]); /* 2 waits behind 0 (key a) */
	done(f, fl, 3);
	done(f, fl, 1);
	assert_int_equal(committed(f), RD_KAFKA_OFFSET_INVALID); /* 0 is not done */
	assert_ptr_equal(done(f, fl, 0), f->m[2]);
	assert_int_equal(committed(f), 2); /* 0 and 1 done; 3 waits for 2 */
	done(f, fl, 4);
	assert_int_equal(committed(f), 2);
	done(f, fl, 2);
	assert_int_equal(committed(f), 5);
	/* a message given up (the worker stopping) is never stored */
	assert_ptr_equal(wk_flight_add(fl, f->m[5]), f->m[5]);
	wk_flight_free(fl);
	assert_int_equal(committed(f), 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(same_key_waits_for_the_earlier, setup, teardown),
	    cmocka_unit_test_setup_teardown(stores_the_lowest_unfinished, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
