/*
 * broker.c - sluice-dev-broker: a Kafka-protocol broker in one process,
 * made from librdkafka's mock cluster, reached over TCP by any Kafka client.
 * It keeps nothing on disk. It creates Sluice's topics, writes its bootstrap
 * address to --addr-file (when given) and to stdout, and runs until SIGTERM.
 */
#include "sl_common.h"
#include "sl_log.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static sl_stop_flag stopping;

/*
 * The mock cluster accepts its clients with accept() and leaves Nagle's
 * algorithm on. When it answers two requests of one connection back to
 * back (a producer has several partitions' batches in flight), the second
 * answer waits for the client to acknowledge the first, and the client
 * delays that acknowledgement by 40 ms: producing to eight partitions at
 * once took 44 ms instead of 1. Defined in the executable, this accept() is
 * the one librdkafka's call resolves to (ELF symbol interposition); it
 * accepts and turns Nagle's algorithm off, as Kafka's brokers do.
 */
int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	int s = accept4(fd, addr, len, 0);
	int one = 1;

	if (s < 0)
		return s;
	if (setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		sl_warn("a client connected; Nagle's algorithm stays on: %s", strerror(errno));
	else
		sl_info("a client connected (Nagle's algorithm off)");
	return s;
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: sluice-dev-broker [--addr-file FILE] [--topic-prefix P] "
	                "[--partitions N]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const char *topics[] = {"runs", "approvals", "continues", "results", "dlq"};
	const char *addr_file = NULL, *prefix = getenv("SLUICE_TOPIC_PREFIX");
	long partitions = 8;
	char errbuf[512];
	rd_kafka_conf_t *conf;
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_t *rk;

	sl_log_init("sluice-dev-broker");
	if (!prefix)
		prefix = "sluice.";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--addr-file") && i + 1 < argc)
			addr_file = argv[++i];
		else if (!strcmp(argv[i], "--topic-prefix") && i + 1 < argc)
			prefix = argv[++i];
		else if (!strcmp(argv[i], "--partitions") && i + 1 < argc) {
			char *end;
			partitions = strtol(argv[++i], &end, 10);
			if (*end || partitions < 1 || partitions > 256)
				return usage();
		} else
			return usage();
	}
	conf = rd_kafka_conf_new();
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, sizeof(errbuf));
	if (!rk) {
		sl_error("%s", errbuf);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, 1);
	if (!mc) {
		sl_error("cannot create the mock cluster");
		return 1;
	}
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		char *name = sl_asprintf("%s%s", prefix, topics[i]);
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, name, (int)partitions, 1);
		if (err)
			sl_error("create topic %s: %s", name, rd_kafka_err2str(err));
		free(name);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (addr_file) {
		char *tmp = sl_asprintf("%s.tmp", addr_file);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%s\n", rd_kafka_mock_cluster_bootstraps(mc)) < 0 ||
		    fclose(f) || rename(tmp, addr_file)) {
			sl_error("cannot write %s", addr_file);
			return 1;
		}
		free(tmp);
	}
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	sl_info("dev broker (librdkafka mock cluster, in memory) on %s, topics %s* with %ld "
	        "partitions",
	        rd_kafka_mock_cluster_bootstraps(mc), prefix, partitions);
	while (!stopping)
		pause();
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
