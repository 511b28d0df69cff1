/*
 * wk_stdio.c - long-running tool processes (see wk_stdio.h).
 *
 * Other threads queue calls (sl_queue, whose wake-up is a byte in a pipe
 * the I/O thread polls); everything else (the processes, their buffers, the calls in
 * flight) belongs to the I/O thread. A process's calls are kept oldest
 * first: they share the tool's timeout, so the oldest is the next to time
 * out; an index by id finds the call an answer names.
 */
#include "wk_stdio.h"
#include "sl_log.h"
#include "sl_queue.h"
#include "wk_tool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <search.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Request lines waiting for one process's stdin, at most. */
#define WBUF_MAX (16 * 1024 * 1024)

/* Longest answer line read; a longer one is skipped (its call times out). */
#define LINE_MAX_BYTES (WK_TOOL_MAX_OUTPUT + 64 * 1024)
/* Least time between two starts of one tool's process. */
#define RESTART_MS 1000

typedef struct proc proc;

typedef struct call {
	sl_queue_node node;       /* in the incoming queue */
	struct call *prev, *next; /* in its process's list, oldest first */
	long long id, deadline;
	char *line; /* the request line, until it is sent */
	proc *p;
	wk_stdio_cb cb;
	void *arg;
} call;

struct proc {
	const sl_tool *tool;
	pid_t pid; /* 0: not running */
	int in, out;
	sl_buf wbuf; /* request lines not yet written, up to WBUF_MAX */
	bool held;   /* calls keep their line until wbuf has room again */
	sl_buf rbuf; /* the answer line read so far */
	bool skipping;
	call *head, *tail;
	long long started_at;
};

struct wk_stdio {
	pthread_t thread;
	sl_queue incoming;    /* new calls; closed when stopping */
	atomic_llong next_id; /* the id of the next call */
	int wake[2];          /* incoming's wake-up: the I/O thread polls it */
	bool started;         /* the I/O thread runs */
	proc *procs;
	size_t n;
	void *index; /* tsearch tree of the calls in flight, by id */
	void (*drop)(void *arg);
};

static int by_id(const void *a, const void *b)
{
	long long x = ((const call *)a)->id, y = ((const call *)b)->id;
	return (x > y) - (x < y);
}

char *wk_stdio_decode(const sl_tool *tool, const char *line, size_t len, long long *id)
{
	json_t *root = json_loadb(line, len, 0, NULL), *jid, *v;
	char *out = NULL;

	jid = json_object_get(root, "id");
	if (!json_is_integer(jid))
		goto out;
	*id = (long long)json_integer_value(jid);
	if (json_is_string(v = json_object_get(root, "result")))
		out = sl_strdup(json_string_value(v));
	else if (json_is_string(v = json_object_get(root, "error")))
		out =
		    sl_asprintf("error: tool %s failed: %.2000s", tool->name, json_string_value(v));
out:
	json_decref(root);
	return out;
}

/* Unlinks c from its process's list and the index; frees its line. */
static void forget(wk_stdio *s, call *c)
{
	proc *p = c->p;

	if (c->prev)
		c->prev->next = c->next;
	else
		p->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		p->tail = c->prev;
	tdelete(c, &s->index, by_id);
	free(c->line);
	c->line = NULL;
}

static void finish(wk_stdio *s, call *c, char *result)
{
	forget(s, c);
	c->cb(c->arg, result);
	free(c);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Queues c's request line for writing to its (running) process; when the
 * lines waiting for it would pass WBUF_MAX, c keeps its line (its deadline
 * runs) until the process has read half of them. */
static void send_call(proc *p, call *c)
{
	if (p->held || sl_buf_append(&p->wbuf, c->line, strlen(c->line)) != SL_OK) {
		p->held = true;
		return;
	}
	free(c->line);
	c->line = NULL;
}

/* A process started: the calls that waited for it are sent, oldest first
 * (only those do not have their line sent: a running process gets each
 * call's line as it comes). */
static void send_unsent(proc *p)
{
	for (call *c = p->head; c; c = c->next)
		if (c->line)
			send_call(p, c);
}

static void start_proc(proc *p)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, rc;
	posix_spawn_file_actions_t fa;

	p->started_at = sl_mono_ms();
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		sl_error("tool %s: pipe: %s", p->tool->name, strerror(errno));
		goto fail;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	/* the tool's own environment, never the worker's (its credentials) */
	rc =
	    posix_spawn(&p->pid, p->tool->argv[0], &fa, NULL, p->tool->argv, wk_tool_envp(p->tool));
	posix_spawn_file_actions_destroy(&fa);
	if (rc) {
		p->pid = 0;
		sl_error("tool %s: cannot start %s: %s", p->tool->name, p->tool->argv[0],
		         strerror(rc));
		goto fail;
	}
	close(in[0]);
	close(out[1]);
	p->in = in[1];
	p->out = out[0];
	fcntl(p->in, F_SETFL, O_NONBLOCK);
	fcntl(p->out, F_SETFL, O_NONBLOCK);
	p->wbuf.len = p->rbuf.len = 0;
	p->skipping = p->held = false;
	sl_info("tool %s: process %d started (%s)", p->tool->name, (int)p->pid, p->tool->argv[0]);
	send_unsent(p);
	return;
fail:
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&out[i]);
	}
}

/* The process's stdout ended: it is reaped, and the calls it was sent
 * fail; those not sent yet wait for the next process. */
static void proc_exited(wk_stdio *s, proc *p)
{
	int status = 0;
	call *c, *next;

	close_fd(&p->in);
	close_fd(&p->out);
	kill(p->pid, SIGKILL); /* it closed its stdout but may live on */
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	sl_warn("tool %s: process %d ended (%s %d); it is started again", p->tool->name,
	        (int)p->pid, WIFEXITED(status) ? "exit status" : "signal",
	        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	p->pid = 0;
	for (c = p->head; c; c = next) {
		next = c->next;
		if (!c->line)
			finish(s, c,
			       sl_asprintf("error: the process of tool %s ended during the call; "
			                   "it is not run again",
			                   p->tool->name));
	}
}

void wk_stdio_feed(sl_buf *b, bool *skipping, const char *data, size_t n,
                   void (*line)(void *ctx, const char *text, size_t len), void *ctx)
{
	while (n) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n;

		if (!*skipping && sl_buf_append(b, data, take) != SL_OK) {
			*skipping = true;
			b->len = 0;
		}
		if (!nl)
			return;
		if (*skipping)
			line(ctx, NULL, 0);
		else
			line(ctx, b->data ? b->data : "", b->len);
		*skipping = false;
		b->len = 0;
		data = nl + 1;
		n -= take + 1;
	}
}

typedef struct answer_ctx {
	wk_stdio *s;
	proc *p;
} answer_ctx;

/* One line of a process's stdout. */
static void on_line(void *ctx, const char *text, size_t len)
{
	answer_ctx *a = ctx;
	proc *p = a->p;
	long long id = 0;
	char *result;

	if (!text) {
		sl_warn("tool %s: answer line over %d bytes skipped", p->tool->name,
		        LINE_MAX_BYTES);
	} else if ((result = wk_stdio_decode(p->tool, text, len, &id))) {
		call key = {.id = id}, **found = tfind(&key, &a->s->index, by_id);
		if (found && (*found)->p == p) {
			finish(a->s, *found, result);
		} else {
			sl_warn("tool %s: answer for unknown call %lld ignored", p->tool->name, id);
			free(result);
		}
	} else if (len) {
		sl_warn("tool %s: line is not an answer, ignored: %.*s", p->tool->name,
		        (int)(len > 200 ? 200 : len), text);
	}
}

static void read_answers(wk_stdio *s, proc *p)
{
	answer_ctx a = {s, p};
	char chunk[65536];
	ssize_t n;

	while ((n = read(p->out, chunk, sizeof(chunk))) > 0)
		wk_stdio_feed(&p->rbuf, &p->skipping, chunk, (size_t)n, on_line, &a);
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		proc_exited(s, p);
}

static void write_requests(proc *p)
{
	ssize_t n = write(p->in, p->wbuf.data, p->wbuf.len);

	if (n > 0) {
		memmove(p->wbuf.data, p->wbuf.data + n, p->wbuf.len - (size_t)n);
		p->wbuf.len -= (size_t)n;
		if (p->held && p->wbuf.len < WBUF_MAX / 2) {
			p->held = false;
			send_unsent(p);
		}
	} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
		close_fd(&p->in); /* it closed its stdin; its stdout tells the rest */
	}
}

/* incoming's wake-up: a byte in the pipe the I/O thread polls. */
static void wake_io(void *arg)
{
	wk_stdio *s = arg;

	if (s->wake[1] >= 0 && write(s->wake[1], "", 1) < 0 && errno != EAGAIN)
		sl_warn("tool processes: cannot wake the I/O thread: %s", strerror(errno));
}

/* Gives c to its process, and sends it when the process is up. */
static void add_call(wk_stdio *s, call *c)
{
	proc *p = c->p;

	c->next = NULL;
	c->prev = p->tail;
	if (p->tail)
		p->tail->next = c;
	else
		p->head = c;
	p->tail = c;
	tsearch(c, &s->index, by_id);
	if (p->pid && p->in >= 0)
		send_call(p, c);
}

/* Moves the queued calls to their processes; returns false once stopping. */
static bool take_queue(wk_stdio *s)
{
	char buf[256];

	while (read(s->wake[0], buf, sizeof(buf)) > 0)
		;
	for (sl_queue_node *n = sl_queue_take_all(&s->incoming); n; n = n->next)
		add_call(s, sl_queue_entry(n, call, node));
	return !sl_queue_closed(&s->incoming);
}

/* Fails the calls past their deadline; returns ms to the next deadline or
 * restart, -1 for none. */
static int expire(wk_stdio *s, long long now)
{
	long long next = -1;

	for (size_t i = 0; i < s->n; i++) {
		proc *p = &s->procs[i];
		long long when;

		while (p->head && p->head->deadline <= now)
			finish(s, p->head,
			       sl_asprintf("error: tool %s timed out after %ld ms", p->tool->name,
			                   p->tool->timeout_ms));
		if (!p->pid && p->head && p->started_at + RESTART_MS <= now)
			start_proc(p);
		when = p->head ? p->head->deadline : -1;
		if (!p->pid && p->head && (when < 0 || p->started_at + RESTART_MS < when))
			when = p->started_at + RESTART_MS;
		if (when >= 0 && (next < 0 || when < next))
			next = when;
	}
	if (next < 0)
		return -1;
	return next - now > 60000 ? 60000 : (int)(next - now);
}

static void *io_thread(void *arg)
{
	wk_stdio *s = arg;
	struct pollfd *fds = sl_calloc(2 * s->n + 1, sizeof(*fds));

	while (take_queue(s)) {
		int timeout = expire(s, sl_mono_ms()), nfds = 1;

		fds[0] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
		for (size_t i = 0; i < s->n; i++) {
			proc *p = &s->procs[i];
			fds[1 + 2 * i] =
			    (struct pollfd){.fd = p->pid ? p->out : -1, .events = POLLIN};
			fds[2 + 2 * i] = (struct pollfd){.fd = p->pid && p->wbuf.len ? p->in : -1,
			                                 .events = POLLOUT};
			nfds += 2;
		}
		if (poll(fds, (nfds_t)nfds, timeout) < 0 && errno != EINTR) {
			sl_error("tool processes: poll: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; i < s->n; i++) {
			proc *p = &s->procs[i];
			if (fds[2 + 2 * i].revents && p->in >= 0)
				write_requests(p);
			if (fds[1 + 2 * i].revents && p->pid)
				read_answers(s, p);
		}
	}
	free(fds);
	return NULL;
}

wk_stdio *wk_stdio_start(const sl_agents *agents, void (*drop)(void *arg), char *errbuf,
                         size_t errsize)
{
	wk_stdio *s = sl_calloc(1, sizeof(*s));

	s->drop = drop;
	atomic_init(&s->next_id, 1);
	s->wake[0] = s->wake[1] = -1;
	sl_queue_init(&s->incoming, wake_io, s);
	for (size_t i = 0; i < agents->n; i++)
		for (size_t k = 0; k < agents->agents[i].ntools; k++)
			s->n += agents->agents[i].tools[k].executor == SL_EXEC_STDIO;
	if (s->n == 0)
		return s;
	s->procs = sl_calloc(s->n, sizeof(proc));
	s->n = 0;
	for (size_t i = 0; i < agents->n; i++)
		for (size_t k = 0; k < agents->agents[i].ntools; k++) {
			proc *p = &s->procs[s->n];
			if (agents->agents[i].tools[k].executor != SL_EXEC_STDIO)
				continue;
			p->tool = &agents->agents[i].tools[k];
			p->in = p->out = -1;
			sl_buf_init(&p->wbuf, WBUF_MAX);
			sl_buf_init(&p->rbuf, LINE_MAX_BYTES);
			s->n++;
			start_proc(p);
			if (!p->pid) {
				sl_err(errbuf, errsize, SL_FATAL,
				       "agent %s: tool %s: its process could not be started",
				       agents->agents[i].id, p->tool->name);
				wk_stdio_stop(s);
				return NULL;
			}
		}
	if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) ||
	    pthread_create(&s->thread, NULL, io_thread, s)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot start the tool processes' thread");
		wk_stdio_stop(s);
		return NULL;
	}
	s->started = true;
	return s;
}

bool wk_stdio_call(wk_stdio *s, const sl_tool *tool, const char *run_id, const char *call_id,
                   const json_t *args, wk_stdio_cb cb, void *arg)
{
	call *c = sl_calloc(1, sizeof(*c));
	json_t *req;
	char *text;
	bool ok;

	for (size_t i = 0; i < s->n && !c->p; i++)
		if (s->procs[i].tool == tool)
			c->p = &s->procs[i];
	if (!c->p) {
		sl_error("tool %s has no process", tool->name);
		free(c);
		return false;
	}
	c->cb = cb;
	c->arg = arg;
	c->deadline = sl_mono_ms() + tool->timeout_ms;
	c->id = atomic_fetch_add(&s->next_id, 1);
	/* the line is made before the lock: other threads queue calls too */
	req = json_pack("{s:I, s:s, s:s, s:s, s:O}", "id", (json_int_t)c->id, "tool", tool->name,
	                "run_id", run_id, "tool_call_id", call_id, "arguments", (json_t *)args);
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	c->line = sl_asprintf("%s\n", text);
	free(text);
	ok = sl_queue_push(&s->incoming, &c->node, NULL);
	if (!ok) {
		free(c->line);
		free(c);
	}
	return ok;
}

void wk_stdio_stop(wk_stdio *s)
{
	call *c;

	if (!s)
		return;
	sl_queue_close(&s->incoming); /* wakes the thread */
	if (s->started)
		pthread_join(s->thread, NULL);
	for (sl_queue_node *n = sl_queue_take_all(&s->incoming), *next; n; n = next) {
		next = n->next;
		c = sl_queue_entry(n, call, node);
		s->drop(c->arg);
		free(c->line);
		free(c);
	}
	for (size_t i = 0; i < s->n; i++) {
		proc *p = &s->procs[i];
		int status;

		while (p->head) {
			c = p->head;
			forget(s, c);
			s->drop(c->arg);
			free(c);
		}
		if (p->pid) {
			long long until = sl_mono_ms() + 1000;
			close_fd(&p->in); /* end of input: a well-behaved tool ends */
			kill(p->pid, SIGTERM);
			while (waitpid(p->pid, &status, WNOHANG) == 0 && sl_mono_ms() < until)
				usleep(10000);
			if (waitpid(p->pid, &status, WNOHANG) == 0) {
				kill(p->pid, SIGKILL);
				waitpid(p->pid, &status, 0);
			}
		}
		close_fd(&p->in);
		close_fd(&p->out);
		sl_buf_free(&p->wbuf);
		sl_buf_free(&p->rbuf);
	}
	close_fd(&s->wake[0]);
	close_fd(&s->wake[1]);
	sl_queue_destroy(&s->incoming);
	free(s->procs);
	free(s);
}
