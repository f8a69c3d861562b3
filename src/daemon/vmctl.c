/* ferry-vm control-socket client (see vmctl.h). */
#include "daemon/vmctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonl.h"
#include "common/sock.h"

struct json_object *vmctl_call(const char *path, const char *cmd,
			       int timeout_ms, struct err *e)
{
	struct json_object *req = json_object_new_object(), *rep;

	jsonl_add_str(req, "cmd", cmd);
	rep = vmctl_request(path, req, timeout_ms, e);
	json_object_put(req);
	return rep;
}

struct json_object *vmctl_request(const char *path, struct json_object *req,
				  int timeout_ms, struct err *e)
{
	struct json_object *rep = NULL;
	struct sock_reader *rd;
	const char *text, *msg = NULL, *cmd = "request";
	char *line;
	bool ok = false;
	int fd;

	fd = sock_unix_connect_nowait(path, e);
	if (fd < 0)
		return NULL;
	rd = malloc(sizeof(*rd));
	if (!rd) {
		close(fd);
		err_set(e, "out of memory");
		return NULL;
	}
	sock_reader_init(rd, fd);
	if (jsonl_get_str(req, "cmd", false, &cmd, e) < 0 || !cmd)
		cmd = "request";
	text = jsonl_text(req);
	if (sock_write_all(fd, text, strlen(text), timeout_ms, e) < 0 ||
	    sock_write_all(fd, "\n", 1, timeout_ms, e) < 0)
		goto out;
	line = sock_reader_line(rd, timeout_ms, e);
	if (!line)
		goto out;
	rep = jsonl_parse(line, strlen(line), e);
	if (!rep) {
		err_prefix(e, "worker reply");
		goto out;
	}
	if (jsonl_get_bool(rep, "ok", true, &ok, e) < 0) {
		err_prefix(e, "worker reply");
		goto fail;
	}
	if (!ok) {
		if (jsonl_get_str(rep, "error", false, &msg, e) < 0 || !msg)
			msg = "(no reason given)";
		err_set(e, "worker refused '%s': %s", cmd, msg);
		goto fail;
	}
	goto out;
fail:
	json_object_put(rep);
	rep = NULL;
out:
	sock_reader_destroy(rd);
	free(rd);
	close(fd);
	return rep;
}
