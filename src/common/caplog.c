/* Size-capped append-only log file (see caplog.h). */
#include "common/caplog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int caplog_open_fd(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* fd becomes stderr: the new file takes fd 2's place (and so the place of
 * the file the process was started with). */
static int caplog_onto_stderr(int fd)
{
	int rc = fd == STDERR_FILENO ? 0 : dup2(fd, STDERR_FILENO);
	int saved = errno;

	if (fd != STDERR_FILENO)
		close(fd);
	errno = saved;
	return rc < 0 ? -1 : 0;
}

static int caplog_init(struct caplog *l, const char *path, uint64_t max, bool is_stderr,
		       struct err *e)
{
	struct stat st;
	int fd;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->max = max;
	l->is_stderr = is_stderr;
	if (snprintf(l->path, sizeof(l->path), "%s", path) >= (int)sizeof(l->path))
		return err_set(e, "log path too long: %s", path);
	fd = caplog_open_fd(path);
	if (fd < 0)
		return err_sys(e, "log %s", path);
	if (fstat(fd, &st) < 0) {
		err_sys(e, "log %s", path);
		close(fd);
		return -1;
	}
	if (is_stderr) {
		if (caplog_onto_stderr(fd) < 0)
			return err_sys(e, "log %s: making it stderr", path);
		fd = STDERR_FILENO;
	}
	l->fd = fd;
	/* a VM that comes back appends to what it left: that counts */
	l->size = (uint64_t)st.st_size;
	return 0;
}

int caplog_open(struct caplog *l, const char *path, uint64_t max, struct err *e)
{
	return caplog_init(l, path, max, false, e);
}

int caplog_open_stderr(struct caplog *l, const char *path, uint64_t max, struct err *e)
{
	return caplog_init(l, path, max, true, e);
}

static int caplog_failed(struct caplog *l, const char *what)
{
	if (l->errors++)
		return 0;
	l->fail_what = what;
	l->fail_errno = errno;
	return -1;
}

/* One rename and one open per max bytes of output (the serial console
 * calls this from a vCPU, under the device lock). */
static int caplog_rotate(struct caplog *l)
{
	char old[PATH_MAX + 2];
	int fd;

	if (snprintf(old, sizeof(old), "%s.1", l->path) >= (int)sizeof(old)) {
		errno = ENAMETOOLONG;
		return caplog_failed(l, "rotating");
	}
	if (rename(l->path, old) < 0)
		return caplog_failed(l, "rotating");
	fd = caplog_open_fd(l->path);
	if (fd < 0)
		/* the old descriptor still writes, into PATH.1: nothing lost */
		return caplog_failed(l, "starting a new file");
	if (l->is_stderr) {
		if (caplog_onto_stderr(fd) < 0)
			return caplog_failed(l, "starting a new file");
	} else {
		close(l->fd);
		l->fd = fd;
	}
	l->size = 0;
	return 0;
}

int caplog_write(struct caplog *l, const void *buf, size_t n)
{
	int rc = 0;
	ssize_t w;

	if (l->fd < 0 || n == 0)
		return 0;
	if (l->max && l->size > 0 && l->size + n > l->max)
		rc = caplog_rotate(l);
	w = write(l->fd, buf, n);
	if (w < 0)
		return caplog_failed(l, "write") < 0 ? -1 : rc;
	l->size += (uint64_t)w;
	return rc;
}

void caplog_close(struct caplog *l)
{
	/* stderr stays open: later messages still have somewhere to go */
	if (l->fd >= 0 && !l->is_stderr)
		close(l->fd);
	l->fd = -1;
}
