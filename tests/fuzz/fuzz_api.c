/* libFuzzer target: the approver's request handling, through the code the
 * server runs. Each input is the raw bytes of one HTTP connection (request
 * line, header fields, body), sent over loopback to an sl_httpd serving
 * ap_api_handle, as sluice-approver does; its database is unreachable, so
 * a request that gets past validation is answered 503. The answer must be
 * HTTP, and every JSON answer must be valid JSON: an answer that cannot be
 * encoded, or a crash, is a finding. "Authorization: Bearer fuzz-token" is
 * a valid identity. */
#include "../../approver/ap_api.h"
#include "sl_log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static sl_httpd *server;
static ap_api api;
static unsigned port;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* requests that never end are closed after 1 s */
	const sl_httpd_limits limits = {1024, 1024, 1};
	char errbuf[256];

	(void)argc;
	(void)argv;
	setenv("SLUICE_LOG_LEVEL", "error", 1);
	sl_log_init("fuzz-api");
	memset(&api, 0, sizeof(api));
	if (ap_access_load(&api.access, NULL, "fuzz:fuzz-token", errbuf, sizeof(errbuf)))
		abort();
	/* nothing listens there: a connection is refused at once */
	api.database_url = "postgresql://fuzz@127.0.0.1:1/fuzz?connect_timeout=1";
	ap_api_init(&api);
	server = sl_httpd_start("127.0.0.1:0", AP_API_MAX_BODY, 2, &limits, ap_api_handle, &api,
	                        errbuf, sizeof(errbuf));
	if (!server)
		abort();
	port = sl_httpd_port(server);
	return 0;
}

/* Reads the answer into buf until the server closes or falls silent (a
 * connection kept alive); its length. */
static size_t read_answer(int fd, char *buf, size_t size)
{
	size_t len = 0;

	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;

		if (poll(&p, 1, len ? 20 : 300) <= 0 || len == size - 1)
			break;
		n = read(fd, buf + len, size - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

/* Every answer with a JSON body holds valid JSON. */
static void check_answer(const char *ans, size_t len)
{
	const char *body = strstr(ans, "\r\n\r\n");
	json_error_t err;
	json_t *j;

	if (len == 0)
		return; /* refused before an answer (a malformed request line) */
	if (strncmp(ans, "HTTP/1.", 7))
		abort();
	if (!body || !strstr(ans, "Content-Type: application/json"))
		return;
	body += 4;
	/* only whole single answers are judged (no pipelined second one) */
	if (strstr(body, "HTTP/1."))
		return;
	j = json_loads(body, 0, &err);
	if (!j)
		abort();
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char ans[1 << 20];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t off = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		abort();
	while (off < size) {
		ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
		if (n <= 0)
			break; /* the server answered and closed early */
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	check_answer(ans, read_answer(fd, ans, sizeof(ans)));
	close(fd);
	return 0;
}
