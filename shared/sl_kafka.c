/*
 * sl_kafka.c - producers, consumers, batches with delivery reports, DLQ.
 */
#include "sl_kafka.h"
#include "sl_keys.h"
#include "sl_kafka_props.h"
#include "sl_log.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <uuid/uuid.h>

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (level <= 3)
		sl_error("kafka %s: %s", fac, buf);
	else if (level <= 5)
		sl_warn("kafka %s: %s", fac, buf);
	else
		sl_debug("kafka %s: %s", fac, buf);
}

/*
 * Why a broker last refused this process's login (SASL or TLS), as the
 * clients' error callback heard it: the start-up check names it rather
 * than starting a service that can never consume. One per process: its
 * clients share one deployment's settings.
 */
static pthread_mutex_t refusal_lock = PTHREAD_MUTEX_INITIALIZER;
static char refusal[512];

/* Errors librdkafka reports on the polling thread, logged as it would log
 * them itself; a refused login is remembered too. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL) {
		pthread_mutex_lock(&refusal_lock);
		snprintf(refusal, sizeof(refusal), "%s", reason);
		pthread_mutex_unlock(&refusal_lock);
	}
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		sl_error("kafka %s: %s", rd_kafka_name(rk), reason);
	else
		sl_warn("kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

static bool conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errbuf,
                     size_t errsize)
{
	return rd_kafka_conf_set(conf, k, v, errbuf, errsize) == RD_KAFKA_CONF_OK;
}

/* The deployment's properties (sl_kafka_props.h) over the defaults set on
 * conf, then the fixed ones (name/value pairs) Sluice's guarantees rest
 * on. */
static bool conf_deployment(rd_kafka_conf_t *conf, const char *const *fixed, char *errbuf,
                            size_t errsize)
{
	sl_kafka_props props;
	sl_status st;

	if (sl_kafka_props_load(&props, NULL, errbuf, errsize))
		return false;
	st = sl_kafka_props_apply(&props, conf, fixed, errbuf, errsize);
	sl_kafka_props_free(&props);
	return st == SL_OK;
}

/*
 * Delivery reports of one sl_kafka_produce_batch() call. It lives until both
 * the caller has stopped waiting and every report has come in, since a
 * report can arrive after a time-out, and on any thread that polls the
 * producer.
 */
typedef struct dr_batch dr_batch;
typedef struct dr_item {
	sl_kafka_report report; /* first: the message's opaque points here */
	dr_batch *batch;
	_Atomic signed char state; /* 0 pending, 1 delivered, -1 failed */
} dr_item;
struct dr_batch {
	atomic_int refs;
	dr_item items[];
};

static void dr_release(dr_batch *b)
{
	if (atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

static void dr_item_done(sl_kafka_report *report, bool delivered)
{
	dr_item *item = (dr_item *)report;

	atomic_store(&item->state, delivered ? 1 : -1);
	dr_release(item->batch);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	sl_kafka_report *report = m->_private;

	(void)rk;
	(void)opaque;
	if (m->err)
		sl_warn("kafka delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
		        rd_kafka_err2str(m->err));
	if (report)
		report->done(report, m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
}

rd_kafka_t *sl_kafka_producer_new(const sl_config *c, char *errbuf, size_t errsize)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;

	/* no message lost or written twice by a retry */
	static const char *const fixed[] = {"enable.idempotence", "true", "acks", "all", NULL};

	if (!conf_set(conf, "bootstrap.servers", c->kafka_brokers, errbuf, errsize) ||
	    /* no wait: a relay produces its whole batch before it polls, so
	     * what is queued still goes out together (BENCHMARKS.md, step 9) */
	    !conf_set(conf, "linger.ms", "0", errbuf, errsize) ||
	    !conf_set(conf, "message.max.bytes", "2000000", errbuf, errsize) ||
	    !conf_deployment(conf, fixed, errbuf, errsize)) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errsize);
	if (!rk)
		rd_kafka_conf_destroy(conf);
	return rk;
}

/* The group's (eager) rebalances, as librdkafka's default would handle
 * them, and logged: which partitions a consumer has is what an operator
 * asks first. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	rd_kafka_resp_err_t aerr;

	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		aerr = rd_kafka_assign(rk, parts);
		sl_info("kafka: %d partition(s) assigned", parts->cnt);
	} else {
		aerr = rd_kafka_assign(rk, NULL);
		sl_info("kafka: %d partition(s) revoked (%s)", parts->cnt, rd_kafka_err2str(err));
	}
	if (aerr)
		sl_warn("kafka: assignment failed: %s", rd_kafka_err2str(aerr));
}

rd_kafka_t *sl_kafka_consumer_new(const sl_config *c, const char *group, const char *const *topics,
                                  char *errbuf, size_t errsize)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *subs;
	rd_kafka_resp_err_t err;
	rd_kafka_t *rk;
	int n = 0;

	/* An offset is stored once its message is done (and every one before
	 * it), and only stored offsets are committed; a new group starts at the
	 * beginning; assignment is eager: with cooperative-sticky, under
	 * tests/chaos/kafka rebalance, runs stalled up to 21 s (8 s eager). */
	const char *const fixed[] = {"group.id",
	                             group,
	                             "enable.auto.offset.store",
	                             "false",
	                             "enable.auto.commit",
	                             "true",
	                             "auto.offset.reset",
	                             "earliest",
	                             "partition.assignment.strategy",
	                             "range,roundrobin",
	                             NULL};

	if (!conf_set(conf, "bootstrap.servers", c->kafka_brokers, errbuf, errsize) ||
	    !conf_set(conf, "auto.commit.interval.ms", "500", errbuf, errsize) ||
	    /* a broker answers a fetch as soon as there is data, but the dev
	     * broker waits the whole fetch wait: `sluice dev up` sets it low */
	    !conf_set(conf, "fetch.wait.max.ms", c->kafka_fetch_wait_ms, errbuf, errsize) ||
	    !conf_set(conf, "session.timeout.ms", "10000", errbuf, errsize) ||
	    !conf_set(conf, "heartbeat.interval.ms", "1000", errbuf, errsize) ||
	    /* also how long a rebalance waits for a member to join again: the
	     * poll loops never block, so 30 s, not the default 5 minutes for
	     * which the whole group would wait on one member that was lost */
	    !conf_set(conf, "max.poll.interval.ms", "30000", errbuf, errsize) ||
	    !conf_deployment(conf, fixed, errbuf, errsize)) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize);
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	while (topics[n])
		n++;
	subs = rd_kafka_topic_partition_list_new(n);
	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(rk, subs);
	rd_kafka_topic_partition_list_destroy(subs);
	if (err) {
		sl_err(errbuf, errsize, SL_FATAL, "subscribe failed: %s", rd_kafka_err2str(err));
		rd_kafka_destroy(rk);
		return NULL;
	}
	return rk;
}

bool sl_kafka_produce(rd_kafka_t *producer, const sl_kafka_out *msg, sl_kafka_report *report)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
	rd_kafka_resp_err_t err;

	for (const char *const *h = msg->headers; h && h[0]; h += 2)
		rd_kafka_header_add(hdrs, h[0], -1, h[1], -1);
	err = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(msg->topic),
	                        RD_KAFKA_V_KEY(msg->key, msg->key ? strlen(msg->key) : 0),
	                        RD_KAFKA_V_VALUE((void *)msg->payload, msg->len),
	                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(report),
	                        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
	if (err) {
		rd_kafka_headers_destroy(hdrs);
		sl_warn("kafka produce to %s failed: %s", msg->topic, rd_kafka_err2str(err));
		return false;
	}
	return true;
}

sl_status sl_kafka_produce_batch(rd_kafka_t *producer, sl_kafka_out *msgs, size_t n, int timeout_ms,
                                 char *errbuf, size_t errsize)
{
	long long deadline = sl_mono_ms() + timeout_ms;
	dr_batch *b = sl_calloc(1, sizeof(*b) + n * sizeof(dr_item));
	size_t failed = 0;
	bool waiting = true;

	atomic_init(&b->refs, 1); /* the caller's */
	for (size_t i = 0; i < n; i++) {
		b->items[i].report.done = dr_item_done;
		b->items[i].batch = b;
		atomic_init(&b->items[i].state, 0);
		atomic_fetch_add(&b->refs, 1);
		if (!sl_kafka_produce(producer, &msgs[i], &b->items[i].report)) {
			atomic_store(&b->items[i].state, -1);
			atomic_fetch_sub(&b->refs, 1); /* no report will come */
		}
	}
	/* Serve delivery reports (ours, or another thread's) until ours are in. */
	while (waiting && sl_mono_ms() < deadline) {
		waiting = false;
		for (size_t i = 0; i < n && !waiting; i++)
			waiting = atomic_load(&b->items[i].state) == 0;
		if (waiting)
			rd_kafka_poll(producer, 5);
	}
	for (size_t i = 0; i < n; i++) {
		msgs[i].delivered = atomic_load(&b->items[i].state) == 1;
		failed += !msgs[i].delivered;
	}
	dr_release(b);
	if (failed)
		return sl_err(errbuf, errsize, SL_RETRY, "%zu of %zu messages not delivered",
		              failed, n);
	return SL_OK;
}

sl_status sl_kafka_dead_letter(rd_kafka_t *producer, const sl_config *c,
                               const rd_kafka_message_t *m, const char *reason, size_t max_payload)
{
	char *dlq = sl_config_topic(c, "dlq");
	char *key = m->key ? sl_strndup(m->key, m->key_len) : NULL;
	const char *source = rd_kafka_topic_name(m->rkt);
	bool cut = m->len > max_payload;
	char size[32];
	const char *headers[] = {"sluice-error",
	                         reason,
	                         "sluice-source-topic",
	                         source,
	                         "sluice-original-size",
	                         size,
	                         "sluice-truncated",
	                         "true",
	                         NULL};
	sl_kafka_out out = {.topic = dlq,
	                    .key = key,
	                    .payload = m->payload ? m->payload : "",
	                    .len = cut ? max_payload : m->len,
	                    .headers = headers};
	char errbuf[256];
	sl_status st;

	snprintf(size, sizeof(size), "%zu", m->len);
	if (!cut)
		headers[4] = NULL; /* only the first two headers */
	st = sl_kafka_produce_batch(producer, &out, 1, 10000, errbuf, sizeof(errbuf));
	if (st)
		sl_error("dead-letter of %s[%d]@%lld (%zu bytes%s) failed: %s", source,
		         (int)m->partition, (long long)m->offset, out.len, cut ? ", cut" : "",
		         errbuf);
	else
		sl_warn("dead-lettered %s[%d]@%lld to %s%s: %s", source, (int)m->partition,
		        (long long)m->offset, dlq, cut ? " (a bounded copy)" : "", reason);
	free(dlq);
	free(key);
	return st;
}

rd_kafka_resp_err_t sl_kafka_store_offset(rd_kafka_t *consumer, const char *topic,
                                          int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
	err = rd_kafka_offsets_store(consumer, l);
	rd_kafka_topic_partition_list_destroy(l);
	return err;
}

void sl_kafka_done(rd_kafka_t *consumer, const rd_kafka_message_t *m)
{
	sl_kafka_store_offset(consumer, rd_kafka_topic_name(m->rkt), m->partition, m->offset + 1);
}

/* The topics of a deployment, by their names after the prefix. */
static const char *const topic_names[] = {"runs", "approvals", "continues", "results", "dlq", NULL};

/* How long the DLQ keeps a message: longer than the others (Kafka's
 * default, 7 days), so that a person can look into what went wrong. */
#define DLQ_RETENTION_MS "2592000000" /* 30 days */

sl_status sl_kafka_topics_create(const sl_config *c, int partitions, int replication,
                                 void (*report)(const char *topic, const char *outcome),
                                 char *errbuf, size_t errsize)
{
	rd_kafka_NewTopic_t *nt[5] = {0};
	rd_kafka_AdminOptions_t *opt = NULL;
	rd_kafka_queue_t *q = NULL;
	rd_kafka_event_t *ev = NULL;
	const rd_kafka_topic_result_t **res;
	rd_kafka_t *rk = sl_kafka_producer_new(c, errbuf, errsize);
	sl_status st = SL_OK;
	char why[512];
	size_t n = 0;

	if (!rk)
		return SL_FATAL;
	for (size_t i = 0; topic_names[i] && st == SL_OK; i++) {
		char *name = sl_config_topic(c, topic_names[i]);
		nt[n] = rd_kafka_NewTopic_new(name, partitions, replication, why, sizeof(why));
		free(name);
		if (!nt[n])
			st = sl_err(errbuf, errsize, SL_INVALID, "%s", why);
		else if (!strcmp(topic_names[i], "dlq") &&
		         rd_kafka_NewTopic_set_config(nt[n], "retention.ms", DLQ_RETENTION_MS))
			st = sl_err(errbuf, errsize, SL_FATAL, "cannot set the DLQ's retention");
		n += nt[n] != NULL;
	}
	if (st)
		goto out;
	opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_AdminOptions_set_operation_timeout(opt, 30000, why, sizeof(why));
	rd_kafka_AdminOptions_set_request_timeout(opt, 60000, why, sizeof(why));
	q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, nt, n, opt, q);
	ev = rd_kafka_queue_poll(q, 70000);
	if (!ev || rd_kafka_event_error(ev)) {
		st = sl_err(errbuf, errsize, SL_RETRY, "cannot create the topics: %s",
		            ev ? rd_kafka_event_error_string(ev) : "no answer from Kafka");
		goto out;
	}
	res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
	for (size_t i = 0; i < n; i++) {
		rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
		const char *name = rd_kafka_topic_result_name(res[i]);
		bool made = !err || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS;

		if (made && report)
			report(name, err ? "exists" : "created");
		else if (!made && st == SL_OK)
			st = sl_err(errbuf, errsize, SL_INVALID, "topic %s: %s", name,
			            rd_kafka_topic_result_error_string(res[i])
			                ? rd_kafka_topic_result_error_string(res[i])
			                : rd_kafka_err2str(err));
	}
out:
	if (ev)
		rd_kafka_event_destroy(ev);
	if (q)
		rd_kafka_queue_destroy(q);
	if (opt)
		rd_kafka_AdminOptions_destroy(opt);
	for (size_t i = 0; i < sizeof(nt) / sizeof(nt[0]); i++)
		if (nt[i])
			rd_kafka_NewTopic_destroy(nt[i]);
	rd_kafka_destroy(rk);
	return st;
}

bool sl_kafka_topics_ready(rd_kafka_t *rk, const sl_config *c)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;
	bool ready = true;

	/* every topic the cluster has, none created by asking */
	if ((err = rd_kafka_metadata(rk, 1, NULL, &md, 5000))) {
		char why[sizeof(refusal)];

		/* a refused login: the errors it raised, served now */
		rd_kafka_poll(rk, 0);
		pthread_mutex_lock(&refusal_lock);
		snprintf(why, sizeof(why), "%s", refusal);
		pthread_mutex_unlock(&refusal_lock);
		if (*why) {
			sl_error("Kafka refused the login: %s; check the SASL and TLS settings "
			         "(SLUICE_KAFKA_*)",
			         why);
			return false;
		}
		sl_warn("cannot list Kafka's topics: %s; the topics are not checked",
		        rd_kafka_err2str(err));
		return true;
	}
	for (size_t i = 0; topic_names[i] && ready; i++) {
		char *name = sl_config_topic(c, topic_names[i]);

		ready = false;
		for (int t = 0; t < md->topic_cnt && !ready; t++)
			ready = !strcmp(md->topics[t].topic, name) && !md->topics[t].err;
		if (!ready)
			sl_error("topic %s does not exist: create the topics with `sluice topics "
			         "create`",
			         name);
		free(name);
	}
	rd_kafka_metadata_destroy(md);
	return ready;
}

void sl_kafka_cluster_id(char out[23])
{
	unsigned char id[16];
	char *text = NULL;

	do {
		free(text);
		uuid_generate_random(id);
		text = sl_b64url(id, sizeof(id));
	} while (text[0] == '-');
	snprintf(out, 23, "%s", text);
	free(text);
}
