/* Size-capped serial console log (see serial_log.h). */
#include "vmm/serial_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

static int serial_log_open_fd(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

int serial_log_open(struct serial_log *l, const char *path, uint64_t max, struct err *e)
{
	struct stat st;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->max = max;
	if (snprintf(l->path, sizeof(l->path), "%s", path) >= (int)sizeof(l->path))
		return err_set(e, "serial log path too long: %s", path);
	l->fd = serial_log_open_fd(path);
	if (l->fd < 0)
		return err_sys(e, "serial log %s", path);
	if (fstat(l->fd, &st) < 0) {
		err_sys(e, "serial log %s", path);
		close(l->fd);
		l->fd = -1;
		return -1;
	}
	/* a VM that comes back appends to what it left: that counts */
	l->size = (uint64_t)st.st_size;
	return 0;
}

static void serial_log_failed(struct serial_log *l, const char *what)
{
	if (l->errors++ == 0)
		log_warn("serial log %s: %s: %s (reported once)", l->path, what, strerror(errno));
}

/* Called under the VM's device lock, from a vCPU: one rename and one open
 * per max bytes of output. */
static void serial_log_rotate(struct serial_log *l)
{
	char old[PATH_MAX + 2];
	int fd;

	if (snprintf(old, sizeof(old), "%s.1", l->path) >= (int)sizeof(old)) {
		errno = ENAMETOOLONG;
		serial_log_failed(l, "rotating");
		return;
	}
	if (rename(l->path, old) < 0) {
		serial_log_failed(l, "rotating");
		return;
	}
	fd = serial_log_open_fd(l->path);
	if (fd < 0) {
		/* the old descriptor still writes, into PATH.1: nothing lost */
		serial_log_failed(l, "starting a new file");
		return;
	}
	close(l->fd);
	l->fd = fd;
	l->size = 0;
}

void serial_log_write(struct serial_log *l, const void *buf, size_t n)
{
	ssize_t w;

	if (l->fd < 0 || n == 0)
		return;
	if (l->max && l->size > 0 && l->size + n > l->max)
		serial_log_rotate(l);
	w = write(l->fd, buf, n);
	if (w < 0)
		serial_log_failed(l, "write");
	else
		l->size += (uint64_t)w;
}

void serial_log_close(struct serial_log *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}
