/*
 * sl_relay.c - the relay thread: publishes what writers hand it, marks it
 * sent, and, when it holds the lead, publishes the rest of the outbox.
 */
#include "sl_relay.h"
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RELAY_BATCH 500

struct sl_relay {
	pthread_t thread;
	atomic_bool stop;
	int wake_fd;   /* an eventfd: the stop request */
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
			sl_db_ids_add(&ids, r->delivered[i]);
		sl_db_ids_end(&ids);
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

/* Wakes the relay's thread (to stop). */
static void relay_wake(sl_relay *r)
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
 * Stands by for poll_ms, marking handed rows sent as they are delivered.
 * It ends early when the connection is lost. Returns whether the relay is
 * to stop.
 */
static bool relay_stand_by(sl_relay *r, PGconn *conn)
{
	long long until = sl_mono_ms() + r->poll_ms, left;
	bool stopping = atomic_load(&r->stop);

	while (!stopping && PQstatus(conn) == CONNECTION_OK && (left = until - sl_mono_ms()) > 0) {
		relay_wait(r, -1, (int)left);
		stopping = atomic_load(&r->stop);
		relay_woken(r);
		relay_settle(r, conn, false);
	}
	return stopping;
}

/*
 * The publishing relay between batches: waits until a NOTIFY comes,
 * poll_ms has passed, it is to stop or its connection is lost, marking
 * handed rows sent as they are delivered. A NOTIFY that came in while the
 * batch was being sent is already in libpq's queue, not on the socket: it
 * is looked for there before waiting.
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
	relay_wake(r);
	pthread_join(r->thread, NULL);
	/* What Kafka has not taken by now (the thread waited for it) is given
	 * up: it stays unsent, for the publishing relay to take after its
	 * lease. Its reports are served, so that nothing waits for them. */
	rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	while (rd_kafka_poll(r->producer, 0) > 0)
		;
	relay_free(r);
}
