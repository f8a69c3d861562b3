/* Directory fsync after a rename or unlink, and whole writes (see durable.h). */
#include "common/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int durable_dir_sync(const char *path, struct err *e)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rc = 0;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) >= sizeof(dir))
		return err_set(e, "path too long: %s", path);
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(e, "opening directory %s", dir);
	/* EINVAL: a file system that cannot sync directories (nothing to do) */
	if (fsync(fd) < 0 && errno != EINVAL)
		rc = err_sys(e, "fsync directory %s", dir);
	close(fd);
	return rc;
}

int durable_write_all(int fd, const void *buf, size_t len, const char *path, struct err *e)
{
	return durable_pwrite_all(fd, buf, len, -1, path, e);
}

int durable_pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *path,
		       struct err *e)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = off < 0 ? write(fd, p, len) : pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(e, "writing %s", path);
		if (n == 0)
			return err_set(e, "writing %s: no progress", path);
		p += n;
		len -= (size_t)n;
		if (off >= 0)
			off += n;
	}
	return 0;
}
