/* Threaded calls to other ferryds (see peer.h). */
#include "daemon/peer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/jsonl.h"
#include "common/log.h"
#include "common/sock.h"
#include "daemon/dispatch.h"
#include "daemon/ferryd.h"
#include "daemon/migrate.h"
#include "daemon/vmctl.h"

struct peer_job {
	struct ferryd *d;
	char host[256], port[16];
	char *line;         /* the request, newline-terminated */
	struct json_object *req; /* a worker call's request (path set) */
	char path[PATH_MAX];
	int timeout_ms;
	struct peer_result *res;
};

/* Finished results, shared between call threads and the loop. */
static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct peer_result *peer_done_head;

static void peer_deliver(struct peer_job *j);

int peer_init(struct ferryd *d, struct err *e)
{
	if (pipe2(d->peer_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		d->peer_pipe[0] = d->peer_pipe[1] = -1;
		return err_sys(e, "pipe");
	}
	return 0;
}

int peer_wake_fd(const struct ferryd *d)
{
	return d->peer_pipe[0] > 0 ? d->peer_pipe[0] : -1;
}

static void *peer_thread(void *arg)
{
	struct peer_job *j = arg;
	struct peer_result *r = j->res;
	struct sock_reader *rd = malloc(sizeof(*rd));
	char *line;
	int fd = -1;

	if (!rd) {
		err_set(&r->err, "out of memory");
		goto done;
	}
	sock_reader_init(rd, -1);
	fd = sock_tcp_connect(j->host, j->port, PEER_CONNECT_TIMEOUT_MS, &r->err);
	if (fd < 0) {
		err_prefix(&r->err, "cannot reach ferryd at %s:%s", j->host, j->port);
		goto done;
	}
	sock_reader_init(rd, fd);
	sock_reader_set_line_max(rd, SOCK_REPLY_MAX);
	{
		char where[300];
		snprintf(where, sizeof(where), "%s:%s", j->host, j->port);
		/* Mutual: this ferryd proves the key and checks the peer's proof
		 * before any request (and later any VM) goes its way. */
		struct auth_keyring ring = ferryd_keyring(j->d);
		if (auth_api_client(fd, rd, &ring, j->timeout_ms, where, &r->key_idx, &r->err) < 0)
			goto done;
	}
	if (sock_reader_send(rd, j->line, strlen(j->line), j->timeout_ms, &r->err) < 0) {
		err_prefix(&r->err, "sending to ferryd at %s:%s", j->host, j->port);
		goto done;
	}
	r->reached = true;
	line = sock_reader_line(rd, j->timeout_ms, &r->err);
	if (!line) {
		err_prefix(&r->err, "no reply from ferryd at %s:%s", j->host, j->port);
		goto done;
	}
	r->reply = jsonl_parse(line, strlen(line), &r->err);
	if (!r->reply)
		err_prefix(&r->err, "bad reply from ferryd at %s:%s", j->host, j->port);
done:
	if (fd >= 0)
		close(fd);
	if (rd)
		sock_reader_destroy(rd);
	free(rd);
	peer_deliver(j);
	return NULL;
}

static void *peer_worker_thread(void *arg)
{
	struct peer_job *j = arg;
	j->res->reply = vmctl_request(j->path, j->req, j->timeout_ms, &j->res->err);
	j->res->reached = j->res->reply != NULL;
	peer_deliver(j);
	return NULL;
}

/* Start fn on a detached thread; on failure the caller still owns j. */
static int peer_start(struct peer_job *j, void *(*fn)(void *), const char *what, struct err *e)
{
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (j->d->peer_pipe[1] <= 0)
		return err_set(e, "background calls are not set up");
	if ((rc = pthread_attr_init(&attr)) != 0)
		goto fail;
	if ((rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED)) == 0)
		rc = pthread_create(&t, &attr, fn, j);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return 0;
fail:
	errno = rc;
	return err_sys(e, "starting a thread for the call to %s", what);
}

int peer_worker_call(struct ferryd *d, const char *path, struct json_object *req, int timeout_ms,
		     uint64_t client_id, const char *vm, const char *move_id,
		     enum peer_purpose purpose, struct err *e)
{
	struct peer_job *j = calloc(1, sizeof(*j));
	struct peer_result *r = calloc(1, sizeof(*r));

	if (!j || !r) {
		err_set(e, "out of memory");
		goto fail;
	}
	if (snprintf(j->path, sizeof(j->path), "%s", path) >= (int)sizeof(j->path)) {
		err_set(e, "worker socket path too long");
		goto fail;
	}
	j->d = d;
	j->req = req;
	j->timeout_ms = timeout_ms;
	j->res = r;
	r->purpose = purpose;
	r->worker = true;
	r->client_id = client_id;
	snprintf(r->vm, sizeof(r->vm), "%s", vm);
	if (move_id)
		snprintf(r->move_id, sizeof(r->move_id), "%s", move_id);
	if (peer_start(j, peer_worker_thread, path, e) == 0)
		return 0;
fail:
	json_object_put(req);
	free(j);
	free(r);
	return -1;
}

/* The thread's last act: its result onto the list, the loop woken, the
 * job (but not the result) freed. */
static void peer_deliver(struct peer_job *j)
{
	struct peer_result *r = j->res, **tail;
	ssize_t w;

	pthread_mutex_lock(&peer_lock);
	for (tail = &peer_done_head; *tail; tail = &(*tail)->next)
		;
	*tail = r;
	pthread_mutex_unlock(&peer_lock);
	/* One byte wakes the loop; a full pipe already means "wake up". */
	w = write(j->d->peer_pipe[1], "x", 1);
	(void)w;
	free(j->line);
	json_object_put(j->req);
	free(j);
}

int peer_call(struct ferryd *d, const char *hostport, struct json_object *req,
	      int timeout_ms, const char *move_id, enum peer_purpose purpose,
	      struct err *e)
{
	struct peer_job *j = calloc(1, sizeof(*j));
	struct peer_result *r = calloc(1, sizeof(*r));
	const char *text = jsonl_text(req);

	if (!j || !r)
		goto oom;
	if (sock_split_hostport(hostport, "7450", j->host, sizeof(j->host), j->port,
				sizeof(j->port), e) < 0)
		goto fail;
	j->line = malloc(strlen(text) + 2);
	if (!j->line)
		goto oom;
	sprintf(j->line, "%s\n", text);
	j->d = d;
	j->timeout_ms = timeout_ms;
	j->res = r;
	snprintf(r->move_id, sizeof(r->move_id), "%s", move_id);
	r->purpose = purpose;
	if (peer_start(j, peer_thread, hostport, e) < 0) {
		free(j->line);
		goto fail;
	}
	json_object_put(req);
	return 0;
oom:
	err_set(e, "out of memory");
fail:
	json_object_put(req);
	free(j);
	free(r);
	return -1;
}

void peer_drain(struct ferryd *d)
{
	struct peer_result *list;
	char buf[64];

	while (read(d->peer_pipe[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&peer_lock);
	list = peer_done_head;
	peer_done_head = NULL;
	pthread_mutex_unlock(&peer_lock);
	while (list) {
		struct peer_result *next = list->next;
		if (list->worker)
			worker_call_done(d, list);
		if (list->purpose == PEER_VM_VERIFY)
			verb_vm_verify_done(d, list);
		else if (list->purpose != PEER_CTL_PROBE)
			migrate_peer_done(d, list);
		json_object_put(list->reply);
		free(list);
		list = next;
	}
}
