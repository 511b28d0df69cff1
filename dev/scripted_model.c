/*
 * scripted_model.c - sluice-scripted-model: an OpenAI-compatible HTTP server
 * (POST /v1/responses, POST /v1/chat/completions) that answers by the rules
 * of scripted.c, for offline demos, tests and benchmarks. It is not a model.
 *
 * Environment: SCRIPTED_MODEL_LATENCY_MS (delay per answer),
 * SCRIPTED_MODEL_FAIL_RATE (fraction answered 500), SCRIPTED_MODEL_429_RATE
 * (fraction answered 429).
 *
 * GET /stats tells how many model requests it has answered and how many it
 * held at once at most ({"requests", "in_flight", "peak_in_flight"}): the
 * benchmark reads how many runs a worker had waiting on the model.
 */
#include "scripted.h"
#include "sl_httpd.h"
#include "sl_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sl_stop_flag stopping;
static long latency_ms;
static double fail_rate, rate_429;
static atomic_long in_flight, peak_in_flight, requests;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static double env_double(const char *name)
{
	const char *v = getenv(name);
	return v ? strtod(v, NULL) : 0.0;
}

/* A per-thread random draw in [0, 1). */
static double draw(void)
{
	static _Thread_local unsigned seed;

	if (!seed)
		seed = (unsigned)sl_mono_ms() ^ (unsigned)pthread_self();
	return (double)rand_r(&seed) / ((double)RAND_MAX + 1.0);
}

static enum MHD_Result answer(const sl_httpd_request *req, bool chat)
{
	json_t *body, *answer;
	json_error_t jerr;
	char errbuf[256];

	if (latency_ms > 0)
		sl_sleep_ms(latency_ms);
	if (rate_429 > 0 && draw() < rate_429)
		return sl_httpd_send_error(req->conn, 429, "scripted rate limit");
	if (fail_rate > 0 && draw() < fail_rate)
		return sl_httpd_send_error(req->conn, 500, "scripted failure");
	body = json_loadb(req->body, req->body_len, 0, &jerr);
	if (!body)
		return sl_httpd_send_error(req->conn, 400, "malformed JSON: %s", jerr.text);
	answer = dv_scripted_answer(chat, body, errbuf, sizeof(errbuf));
	json_decref(body);
	if (!answer)
		return sl_httpd_send_error(req->conn, 400, "%s", errbuf);
	return sl_httpd_send_json(req->conn, 200, answer);
}

static enum MHD_Result handle(void *ud, const sl_httpd_request *req)
{
	enum MHD_Result rc;
	long now, peak;
	bool chat;

	(void)ud;
	if (!strcmp(req->path, "/healthz"))
		return sl_httpd_send(req->conn, 200, "text/plain", "scripted model\n", 15);
	if (!strcmp(req->path, "/stats"))
		return sl_httpd_send_json(
		    req->conn, 200,
		    json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)atomic_load(&requests),
		              "in_flight", (json_int_t)atomic_load(&in_flight), "peak_in_flight",
		              (json_int_t)atomic_load(&peak_in_flight)));
	if (!strcmp(req->path, "/v1/responses"))
		chat = false;
	else if (!strcmp(req->path, "/v1/chat/completions"))
		chat = true;
	else
		return sl_httpd_send_error(req->conn, 404, "no such endpoint: %s", req->path);
	if (strcmp(req->method, "POST"))
		return sl_httpd_send_error(req->conn, 405, "use POST");
	now = atomic_fetch_add(&in_flight, 1) + 1;
	peak = atomic_load(&peak_in_flight);
	while (now > peak && !atomic_compare_exchange_weak(&peak_in_flight, &peak, now))
		;
	rc = answer(req, chat);
	atomic_fetch_sub(&in_flight, 1);
	atomic_fetch_add(&requests, 1);
	return rc;
}

int main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:0";
	char errbuf[256];
	sl_httpd *h;
	/* a benchmark's workers keep thousands of calls in flight to it */
	const sl_httpd_limits limits = {60000, 60000, 600};

	sl_log_init("sluice-scripted-model");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") && i + 1 < argc)
			listen = argv[++i];
		else {
			fprintf(stderr, "usage: sluice-scripted-model [--listen HOST:PORT]\n");
			return 2;
		}
	}
	latency_ms = (long)env_double("SCRIPTED_MODEL_LATENCY_MS");
	fail_rate = env_double("SCRIPTED_MODEL_FAIL_RATE");
	rate_429 = env_double("SCRIPTED_MODEL_429_RATE");
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	h = sl_httpd_start(listen, DV_SCRIPTED_MAX_BODY, 0, &limits, handle, NULL, errbuf,
	                   sizeof(errbuf));
	if (!h) {
		sl_error("%s", errbuf);
		return 1;
	}
	sl_info("this is the SCRIPTED model, not a real one: deterministic answers on "
	        "http://127.0.0.1:%u/v1 (latency %ld ms, fail rate %.3f, 429 rate %.3f)",
	        sl_httpd_port(h), latency_ms, fail_rate, rate_429);
	while (!stopping)
		pause();
	sl_httpd_stop(h);
	return 0;
}
