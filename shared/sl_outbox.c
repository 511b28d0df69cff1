/*
 * sl_outbox.c - outbox writes, the relay, and processed_events.
 */
#include "sl_outbox.h"
#include "sl_config.h"
#include "sl_db.h"
#include "sl_kafka.h"
#include "sl_log.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

sl_status sl_outbox_put(PGconn *conn, const char *topic, const char *key, const json_t *event,
                        char *errbuf, size_t errsize)
{
	char *payload = json_dumps(event, JSON_COMPACT);
	const char *params[] = {topic, key, payload};
	sl_status st;

	st = sl_db_exec(conn, "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)", 3,
	                params, NULL, errbuf, errsize);
	free(payload);
	return st;
}

/*
 * Takes up to $1 unsent rows, oldest first, by marking them sent in the
 * transaction that stays open while they are produced: it commits only once
 * they are delivered, so a crash before then leaves them unsent. Rows
 * another relay holds, and rows still left to their writer (a lease not
 * over), are skipped. One statement where a locking read and an update by
 * id were two.
 */
#define RELAY_TAKE_SQL                                                                      \
	"UPDATE outbox o SET sent_at = now() FROM (SELECT id FROM outbox WHERE sent_at IS " \
	"NULL AND (relay_after IS NULL OR relay_after <= now()) "                           \
	"ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) b WHERE o.id = b.id "                 \
	"RETURNING o.id, o.topic, o.key, o.payload"

/* Appends id to b, a bigint[] literal that ids_end() closes. */
static void ids_add(sl_buf *b, long long id)
{
	char text[24];

	snprintf(text, sizeof(text), "%s%lld", b->len ? "," : "{", id);
	sl_buf_append(b, text, strlen(text));
}

static void ids_end(sl_buf *b)
{
	sl_buf_append(b, b->len ? "}" : "{}", b->len ? 1 : 2);
}

/* A taken row: its id and where it is in the result. */
typedef struct taken {
	long long id;
	int row;
} taken;

static int by_id(const void *a, const void *b)
{
	long long x = ((const taken *)a)->id, y = ((const taken *)b)->id;

	return (x > y) - (x < y);
}

sl_status sl_outbox_relay(PGconn *conn, rd_kafka_t *producer, int max, int *sent, char *errbuf,
                          size_t errsize)
{
	char limit[16];
	sl_db_stmt q[2] = {{"BEGIN", 0, NULL}, {RELAY_TAKE_SQL, 1, (const char *[]){limit}}};
	PGresult *res[2] = {NULL, NULL};
	sl_kafka_out *msgs = NULL;
	taken *order = NULL;
	sl_buf ids;
	char cerr[256];
	sl_status st, cst;
	int n;

	*sent = 0;
	sl_buf_init(&ids, (size_t)max * 24 + 8); /* max ids of 20 digits and a comma */
	snprintf(limit, sizeof(limit), "%d", max);
	if ((st = sl_db_pipeline(conn, 2, q, res, errbuf, errsize)))
		goto out;
	if ((n = PQntuples(res[1])) == 0)
		goto out;
	/* RETURNING keeps no order: produced in id order, so that one run's
	 * events stay in the order they were written. */
	order = sl_calloc((size_t)n, sizeof(*order));
	for (int i = 0; i < n; i++)
		order[i] = (taken){strtoll(PQgetvalue(res[1], i, 0), NULL, 10), i};
	qsort(order, (size_t)n, sizeof(*order), by_id);
	msgs = sl_calloc((size_t)n, sizeof(*msgs));
	for (int i = 0; i < n; i++) {
		int row = order[i].row;
		msgs[i].topic = PQgetvalue(res[1], row, 1);
		msgs[i].key = PQgetvalue(res[1], row, 2);
		msgs[i].payload = PQgetvalue(res[1], row, 3);
		msgs[i].len = (size_t)PQgetlength(res[1], row, 3);
	}
	/* Failures are counted per message below; rows not delivered stay. */
	sl_kafka_produce_batch(producer, msgs, (size_t)n, 10000, NULL, 0);
	for (int i = 0; i < n; i++) {
		if (msgs[i].delivered)
			(*sent)++;
		else
			ids_add(&ids, order[i].id);
	}
	ids_end(&ids);
	if (*sent < n) {
		const char *p[] = {ids.data};

		st = sl_err(errbuf, errsize, SL_RETRY, "%d of %d outbox events not delivered",
		            n - *sent, n);
		if (*sent == 0) /* the rollback below leaves them unsent */
			goto out;
		if (sl_db_exec(conn,
		               "UPDATE outbox SET sent_at = NULL WHERE id = ANY($1::bigint[])", 1,
		               p, NULL, cerr, sizeof(cerr)))
			goto out; /* all go out again */
	}
	/* Delivered but not marked when this fails: they go out again, and the
	 * consumers' processed_events make the repeat harmless. */
	if ((cst = sl_db_commit(conn, cerr, sizeof(cerr))))
		st = sl_err(errbuf, errsize, cst, "%s", cerr);
out:
	sl_db_rollback(conn);
	PQclear(res[0]);
	PQclear(res[1]);
	free(msgs);
	free(order);
	sl_buf_free(&ids);
	return st;
}

sl_status sl_inbox_claim(PGconn *conn, const char *consumer, const char *event_id, bool *fresh,
                         char *errbuf, size_t errsize)
{
	const char *params[] = {consumer, event_id};
	PGresult *res;
	sl_status st;

	st = sl_db_exec(conn,
	                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
	                "ON CONFLICT DO NOTHING",
	                2, params, &res, errbuf, errsize);
	if (st)
		return st;
	*fresh = !strcmp(PQcmdTuples(res), "1");
	PQclear(res);
	return SL_OK;
}

/* Rows deleted per statement when pruning: short transactions. */
#define PRUNE_BATCH 5000

/* Runs a prune statement until a batch comes back short. */
static sl_status prune(PGconn *conn, const char *sql, long *n, char *errbuf, size_t errsize)
{
	char batch[16];
	const char *p[] = {batch};
	sl_status st;
	long got;

	*n = 0;
	snprintf(batch, sizeof(batch), "%d", PRUNE_BATCH);
	do {
		PGresult *res;
		if ((st = sl_db_exec(conn, sql, 1, p, &res, errbuf, errsize)))
			return st;
		got = strtol(PQcmdTuples(res), NULL, 10);
		*n += got;
		PQclear(res);
	} while (got == PRUNE_BATCH);
	return SL_OK;
}

sl_status sl_outbox_prune(PGconn *conn, long *outbox, long *inbox, char *errbuf, size_t errsize)
{
	sl_status st;

	*outbox = *inbox = 0;
	/* created_at and processed_at have BRIN indexes: rows are appended in
	 * time order. A row is sent soon after it is written; one never sent
	 * stays. */
	st = prune(conn,
	           "DELETE FROM outbox WHERE ctid = ANY (ARRAY (SELECT ctid FROM outbox "
	           "WHERE created_at < now() - interval '" SL_OUTBOX_KEEP_SENT "' "
	           "AND sent_at IS NOT NULL LIMIT $1))",
	           outbox, errbuf, errsize);
	if (st)
		return st;
	return prune(conn,
	             "DELETE FROM processed_events WHERE ctid = ANY (ARRAY (SELECT ctid FROM "
	             "processed_events WHERE processed_at < now() - interval '" SL_INBOX_KEEP
	             "' LIMIT $1))",
	             inbox, errbuf, errsize);
}

#define RELAY_BATCH 500

struct sl_relay {
	pthread_t thread;
	atomic_bool stop;
	int wake_fd;   /* an eventfd: sl_relay_wake() and the stop request */
	int report_fd; /* an eventfd: the producer has reports to serve */
	char *url;
	rd_kafka_t *producer;
	int poll_ms;
	/* Ids of handed rows Kafka has, to be marked sent by mark_due (sl_mono_ms):
	 * touched only where the producer's reports are served (the relay's
	 * thread, and once it has ended sl_relay_stop's). */
	long long *delivered;
	size_t ndelivered, cap;
	long long mark_due;
};

/* Delivered rows are marked sent RELAY_MARK_BATCH at once, or RELAY_MARK_MS
 * after the first of them was delivered: one statement for many. */
#define RELAY_MARK_BATCH 500
#define RELAY_MARK_MS 10

/* A row handed to the relay by its writer, on its way to Kafka. */
typedef struct handed {
	sl_kafka_report report; /* first: the message's report points here */
	sl_relay *relay;
	long long id;
} handed;

static void handed_done(sl_kafka_report *report, bool delivered)
{
	handed *h = (handed *)report;
	sl_relay *r = h->relay;

	/* Not delivered: the row stays unsent, and the publishing relay takes
	 * it when its lease is over. */
	if (delivered) {
		if (r->ndelivered == r->cap) {
			r->cap = r->cap ? 2 * r->cap : 64;
			r->delivered = sl_realloc(r->delivered, r->cap * sizeof(*r->delivered));
		}
		if (r->ndelivered == 0)
			r->mark_due = sl_mono_ms() + RELAY_MARK_MS;
		r->delivered[r->ndelivered++] = h->id;
	}
	free(h);
}

void sl_relay_publish(sl_relay *r, PGconn *conn, const PGresult *res, int col)
{
	/* rows of a transaction still open could yet be rolled back */
	assert(PQtransactionStatus(conn) == PQTRANS_IDLE);
	if (!r)
		return;
	for (int i = 0; i < PQntuples(res); i++) {
		sl_kafka_out m;
		handed *h;

		if (PQgetisnull(res, i, col))
			continue;
		m = (sl_kafka_out){.topic = PQgetvalue(res, i, col + 1),
		                   .key = PQgetvalue(res, i, col + 2),
		                   .payload = PQgetvalue(res, i, col + 3),
		                   .len = (size_t)PQgetlength(res, i, col + 3)};
		h = sl_malloc(sizeof(*h));
		h->report.done = handed_done;
		h->relay = r;
		h->id = strtoll(PQgetvalue(res, i, col), NULL, 10);
		if (!sl_kafka_produce(r->producer, &m, &h->report))
			free(h); /* the publishing relay takes it after its lease */
	}
}

/* Most delivered rows kept for marking while the relay has no connection. */
#define RELAY_MAX_UNMARKED 100000

/*
 * Serves the producer's delivery reports and marks the handed rows Kafka
 * has taken sent, in one statement, when they are due (or at once, when
 * now). Without a connection (conn NULL or lost) they wait for the next
 * one, up to RELAY_MAX_UNMARKED; rows that cannot be marked are sent again
 * by the publishing relay once their lease is over, and the consumers'
 * processed_events make the repeat harmless.
 */
static void relay_settle(sl_relay *r, PGconn *conn, bool now)
{
	uint64_t n;
	char errbuf[512];
	sl_buf ids;
	sl_status st = SL_RETRY;
	bool connected = conn && PQstatus(conn) == CONNECTION_OK;

	/* the signal first: a report that comes in after it signals again */
	if (read(r->report_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		sl_warn("outbox relay: %s", strerror(errno));
	while (rd_kafka_poll(r->producer, 0) > 0)
		;
	if (r->ndelivered == 0 ||
	    (!now && r->ndelivered < RELAY_MARK_BATCH && sl_mono_ms() < r->mark_due))
		return;
	snprintf(errbuf, sizeof(errbuf), "no connection to PostgreSQL");
	if (connected) {
		sl_buf_init(&ids, r->ndelivered * 24 + 8);
		for (size_t i = 0; i < r->ndelivered; i++)
			ids_add(&ids, r->delivered[i]);
		ids_end(&ids);
		st = sl_db_exec(conn,
		                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[]) "
		                "AND sent_at IS NULL",
		                1, (const char *[]){ids.data}, NULL, errbuf, sizeof(errbuf));
		sl_buf_free(&ids);
		connected = PQstatus(conn) == CONNECTION_OK;
	}
	/* kept for the next connection, unless a working one refused them */
	if (st == SL_OK || connected || r->ndelivered > RELAY_MAX_UNMARKED) {
		if (st)
			sl_warn("outbox relay: %zu delivered events not marked sent (%s); they go "
			        "out again after their lease",
			        r->ndelivered, errbuf);
		r->ndelivered = 0;
	}
}

void sl_relay_wake(sl_relay *r)
{
	uint64_t one = 1;

	if (!r)
		return;
	/* It fails only when 2^64 - 2 wakes wait untaken: the relay is awake. */
	if (write(r->wake_fd, &one, sizeof(one)) < 0)
		return;
}

/* Takes the wakes so far; whether there were any. */
static bool relay_woken(sl_relay *r)
{
	uint64_t n;

	return read(r->wake_fd, &n, sizeof(n)) == (ssize_t)sizeof(n);
}

/* Passes this process's wakes on to the publishing relay, in another
 * process: a NOTIFY of its own. Every notifying transaction holds one lock
 * of the whole database until it ends, so a NOTIFY in the transactions that
 * write the outbox made their commits, and their fsyncs, wait for each
 * other's (with four workers, 20 ms per transaction). This one commits alone
 * and, as everything on the relay's connection, without waiting for the
 * disk; one lost in a crash costs only the wait until the publishing relay
 * looks anyway. */
static void relay_forward(PGconn *conn)
{
	PGresult *res = PQexec(conn, "NOTIFY sluice_outbox");

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		sl_warn("outbox relay: cannot wake the publishing relay: %s", PQerrorMessage(conn));
	PQclear(res);
}

/* Waits up to timeout_ms (less when marks are due sooner) for a wake, for
 * delivery reports, or for input on fd when it is not -1; takes none of
 * them. */
static void relay_wait(sl_relay *r, int fd, int timeout_ms)
{
	struct pollfd pfd[3] = {{.fd = r->wake_fd, .events = POLLIN},
	                        {.fd = r->report_fd, .events = POLLIN},
	                        {.fd = fd, .events = POLLIN}};
	long long due = r->mark_due - sl_mono_ms();

	if (r->ndelivered && due < timeout_ms)
		timeout_ms = due > 0 ? (int)due : 0;

	if (poll(pfd, fd < 0 ? 2 : 3, timeout_ms) < 0 && errno != EINTR)
		sl_warn("outbox relay: poll: %s", strerror(errno));
}

/* The advisory lock held by the one relay that publishes. */
#define RELAY_LOCK "7322617711" /* "sluice" */

/*
 * The relay's session. Key lookups: it finds unsent rows through their
 * partial index and marks them by id, the prune finds old rows through the
 * BRIN indexes; a plan prepared while the outbox was small scanned it whole
 * to mark each batch sent, and kept doing so as it grew (5% of the machine
 * after 12,000 rows). And commits that do not wait for the disk: a sent mark
 * that a crash of PostgreSQL loses only has its events sent again, which the
 * consumers' processed_events make harmless, as when the relay stops between
 * producing and committing.
 */
#define RELAY_OPTIONS SL_DB_KEY_LOOKUPS " -c synchronous_commit=off"

/* Connects; NULL (logged) when PostgreSQL is not there. */
static PGconn *relay_connect(sl_relay *r)
{
	char errbuf[512];
	PGconn *c = sl_db_connect_with(r->url, RELAY_OPTIONS, errbuf, sizeof(errbuf));

	if (!c)
		sl_warn("outbox relay: %s", errbuf);
	return c;
}

/*
 * Becomes the publishing relay if none is: takes the advisory lock (held
 * by the connection until it closes) and LISTENs. One relay publishes at a
 * time, so that each NOTIFY wakes one relay, not every process's; the
 * others stand by and try again every poll_ms.
 */
static bool relay_lead(PGconn *conn, bool *leader)
{
	char errbuf[512];
	PGresult *res;
	bool ok;

	if (*leader)
		return true;
	if (sl_db_exec(conn, "SELECT pg_try_advisory_lock(" RELAY_LOCK ")", 0, NULL, &res, errbuf,
	               sizeof(errbuf))) {
		sl_warn("outbox relay: %s", errbuf);
		return false;
	}
	ok = !strcmp(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	if (ok && sl_db_exec(conn, "LISTEN sluice_outbox", 0, NULL, NULL, errbuf, sizeof(errbuf))) {
		sl_warn("outbox relay: %s", errbuf);
		sl_db_exec(conn, "SELECT pg_advisory_unlock(" RELAY_LOCK ")", 0, NULL, NULL, errbuf,
		           sizeof(errbuf));
		return false;
	}
	if (ok)
		sl_info("outbox relay: publishing (the others stand by)");
	*leader = ok;
	return ok;
}

/* Takes the NOTIFYs that came in; whether there were any. */
static bool relay_notified(PGconn *conn)
{
	PGnotify *n;
	bool any = false;

	PQconsumeInput(conn);
	while ((n = PQnotifies(conn))) {
		PQfreemem(n);
		any = true;
	}
	return any;
}

/*
 * Stands by for poll_ms: this process's wakes go on to the publishing
 * relay (the last ones too, when stopping), and handed rows are marked sent
 * as they are delivered. It ends early when the connection is lost. Returns
 * whether the relay is to stop.
 */
static bool relay_stand_by(sl_relay *r, PGconn *conn)
{
	long long until = sl_mono_ms() + r->poll_ms, left;
	bool stopping = atomic_load(&r->stop);

	while (!stopping && PQstatus(conn) == CONNECTION_OK && (left = until - sl_mono_ms()) > 0) {
		relay_wait(r, -1, (int)left);
		stopping = atomic_load(&r->stop);
		if (relay_woken(r))
			relay_forward(conn);
		relay_settle(r, conn, false);
	}
	if (stopping && relay_woken(r))
		relay_forward(conn);
	return stopping;
}

/*
 * The publishing relay between batches: waits until it is woken, a NOTIFY
 * comes, poll_ms has passed, it is to stop or its connection is lost,
 * marking handed rows sent as they are delivered. Wakes taken here come
 * before the next batch's read, so it sees the rows of every transaction
 * that woke the relay. A NOTIFY that came in while the batch was being sent
 * is already in libpq's queue, not on the socket: it is looked for there
 * before waiting.
 */
static void relay_idle(sl_relay *r, PGconn *conn)
{
	long long until = sl_mono_ms() + r->poll_ms, left;

	while (!(relay_woken(r) | relay_notified(conn)) && PQstatus(conn) == CONNECTION_OK &&
	       !atomic_load(&r->stop) && (left = until - sl_mono_ms()) > 0) {
		relay_wait(r, PQsocket(conn), (int)left);
		relay_settle(r, conn, false);
	}
}

static void *relay_main(void *arg)
{
	sl_relay *r = arg;
	PGconn *conn = NULL;
	char errbuf[512];
	long long next_prune = sl_mono_ms() + SL_PRUNE_INTERVAL_MS;
	bool leader = false;

	for (;;) {
		bool stopping = atomic_load(&r->stop);
		int sent = 0;

		if (conn && PQstatus(conn) != CONNECTION_OK) {
			PQfinish(conn); /* and with it the lock */
			conn = NULL;
			leader = false;
		}
		if (!conn && !(conn = relay_connect(r))) {
			relay_settle(r, NULL, false);
			if (stopping)
				break;
			sl_sleep_ms(1000);
			continue;
		}
		if (!relay_lead(conn, &leader)) {
			if (PQstatus(conn) == CONNECTION_OK && relay_stand_by(r, conn))
				break;
			continue;
		}
		/* Publish until a batch comes back short. */
		do {
			if (sl_outbox_relay(conn, r->producer, RELAY_BATCH, &sent, errbuf,
			                    sizeof(errbuf))) {
				sl_warn("outbox relay: %s", errbuf);
				sent = 0;
			}
		} while (sent == RELAY_BATCH);
		relay_settle(r, conn, false);
		if (stopping) /* the last pass after the stop request is done */
			break;
		if (PQstatus(conn) != CONNECTION_OK)
			continue;
		if (sl_mono_ms() >= next_prune) {
			long outbox, inbox;
			next_prune = sl_mono_ms() + SL_PRUNE_INTERVAL_MS;
			if (sl_outbox_prune(conn, &outbox, &inbox, errbuf, sizeof(errbuf)))
				sl_warn("outbox prune: %s", errbuf);
			else if (outbox || inbox)
				sl_info("pruned %ld sent outbox rows and %ld processed events",
				        outbox, inbox);
		}
		relay_idle(r, conn);
	}
	/* What was handed over is delivered (or given up), and marked sent. */
	rd_kafka_flush(r->producer, 5000);
	relay_settle(r, conn, true);
	if (conn)
		PQfinish(conn);
	return NULL;
}

static void relay_free(sl_relay *r)
{
	if (r->producer)
		rd_kafka_destroy(r->producer);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	if (r->report_fd >= 0)
		close(r->report_fd);
	free(r->delivered);
	free(r->url);
	free(r);
}

sl_relay *sl_relay_start(const sl_config *cfg, int poll_ms, char *errbuf, size_t errsize)
{
	static const uint64_t one = 1; /* what librdkafka writes to report_fd */
	sl_relay *r = sl_calloc(1, sizeof(*r));
	rd_kafka_queue_t *reports;

	r->poll_ms = poll_ms;
	r->url = sl_strdup(cfg->database_url);
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->report_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->wake_fd < 0 || r->report_fd < 0) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot make the outbox relay's eventfds: %s",
		       strerror(errno));
		relay_free(r);
		return NULL;
	}
	if (!(r->producer = sl_kafka_producer_new(cfg, errbuf, errsize))) {
		relay_free(r);
		return NULL;
	}
	/* The delivery reports of handed rows wake the relay's thread. */
	reports = rd_kafka_queue_get_main(r->producer);
	rd_kafka_queue_io_event_enable(reports, r->report_fd, &one, sizeof(one));
	rd_kafka_queue_destroy(reports);
	if (pthread_create(&r->thread, NULL, relay_main, r)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot start the outbox relay thread");
		relay_free(r);
		return NULL;
	}
	return r;
}

void sl_relay_stop(sl_relay *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, true);
	sl_relay_wake(r);
	pthread_join(r->thread, NULL);
	/* What Kafka has not taken by now (the thread waited for it) is given
	 * up: it stays unsent, for the publishing relay to take after its
	 * lease. Its reports are served, so that nothing waits for them. */
	rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	while (rd_kafka_poll(r->producer, 0) > 0)
		;
	relay_free(r);
}
