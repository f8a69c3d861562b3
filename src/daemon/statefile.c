/* Atomic JSON state files (see statefile.h). */
#include "daemon/statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/jsonl.h"
#include "common/log.h"

static int statefile_write_mode(const char *path, const char *text, mode_t mode, struct err *e)
{
	char tmp[PATH_MAX];
	int fd, n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);

	if (n < 0 || (size_t)n >= sizeof(tmp))
		return err_set(e, "path too long: %s", path);
	/* A leftover temp file keeps its old mode through O_TRUNC: remove it. */
	if (unlink(tmp) < 0 && errno != ENOENT)
		return err_sys(e, "removing %s", tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return err_sys(e, "creating %s", tmp);
	if (durable_write_all(fd, text, strlen(text), tmp, e) < 0 ||
	    durable_write_all(fd, "\n", 1, tmp, e) < 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (fsync(fd) < 0) {
		err_sys(e, "fsync %s", tmp);
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0) {
		err_sys(e, "closing %s", tmp);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		err_sys(e, "installing %s", path);
		unlink(tmp);
		return -1;
	}
	/* the reply that follows says "saved": the rename must survive a power loss */
	return durable_dir_sync(path, e);
}

int statefile_write(const char *path, const char *text, struct err *e)
{
	return statefile_write_mode(path, text, 0644, e);
}

int statefile_write_secret(const char *path, const char *text, struct err *e)
{
	return statefile_write_mode(path, text, 0600, e);
}

int statefile_write_json(const char *path, struct json_object *o,
			 struct err *e)
{
	return statefile_write(path, json_object_to_json_string_ext(
				       o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE), e);
}

struct json_object *statefile_read_json(const char *path, bool *missing,
					struct err *e)
{
	struct json_object *o = NULL;
	char *buf;
	size_t len = 0;
	int fd;

	*missing = false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			*missing = true;
			return NULL;
		}
		err_sys(e, "opening %s", path);
		return NULL;
	}
	buf = malloc(STATEFILE_MAX + 1);
	if (!buf) {
		close(fd);
		err_set(e, "out of memory");
		return NULL;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, STATEFILE_MAX + 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err_sys(e, "reading %s", path);
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > STATEFILE_MAX) {
			err_set(e, "%s is larger than %d bytes: not a ferry state file",
				path, STATEFILE_MAX);
			goto out;
		}
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	o = jsonl_parse(buf, len, e);
	if (!o)
		err_prefix(e, "%s", path);
out:
	free(buf);
	close(fd);
	return o;
}

/* A crash can leave the file ending in half a line. The next line must
 * not be glued to it (both would then be lost): it starts on a new line,
 * and a write that fails is cut back off, never left half done. */
int statefile_append_line(const char *path, const char *line, struct err *e)
{
	size_t len = strlen(line);
	char *buf = malloc(len + 2), last = '\n';
	struct stat st;
	int fd = -1, rc = -1;

	if (!buf)
		return err_set(e, "out of memory");
	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		err_sys(e, "opening %s", path);
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		err_sys(e, "stat %s", path);
		goto out;
	}
	if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1) {
		err_sys(e, "reading the end of %s", path);
		goto out;
	}
	buf[0] = '\n';
	memcpy(buf + 1, line, len);
	buf[len + 1] = '\n';
	/* one write: the line and its newline land together or not at all */
	if (last == '\n' ? durable_write_all(fd, buf + 1, len + 1, path, e) < 0
			 : durable_write_all(fd, buf, len + 2, path, e) < 0) {
		if (ftruncate(fd, st.st_size) < 0)
			log_warn("%s: cannot cut back a failed append: %s", path, strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0) {
		err_sys(e, "fsync %s", path);
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0 && close(fd) < 0 && rc == 0)
		rc = err_sys(e, "closing %s", path);
	free(buf);
	return rc;
}

/* len bytes at off, all of them: the file was seen that long */
static int statefile_pread_all(int fd, char *buf, size_t len, off_t off, const char *path,
			       struct err *e)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = pread(fd, buf + got, len - got, off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(e, "reading %s", path);
		if (n == 0)
			return err_set(e, "%s shrank while being read", path);
		got += (size_t)n;
	}
	return 0;
}

/* A line log grows by one line per event for as long as the host lives;
 * past max_bytes only its newest whole lines, keep_bytes at most, stay
 * (written atomically, so a crash keeps the old file or the new). */
int statefile_trim_lines(const char *path, size_t max_bytes, size_t keep_bytes, struct err *e)
{
	struct stat st;
	char *buf = NULL, *from;
	size_t len = 0;
	int fd, rc = -1;

	if (stat(path, &st) < 0)
		return errno == ENOENT ? 0 : err_sys(e, "stat %s", path);
	if ((size_t)st.st_size <= max_bytes || keep_bytes >= (size_t)st.st_size)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(e, "opening %s", path);
	buf = malloc(keep_bytes + 1);
	if (!buf) {
		err_set(e, "out of memory");
		goto out;
	}
	len = keep_bytes;
	if (statefile_pread_all(fd, buf, len, st.st_size - (off_t)keep_bytes, path, e) < 0)
		goto out;
	buf[len] = '\0';
	/* the first line is cut in the middle unless it starts right here */
	from = memchr(buf, '\n', len);
	from = from ? from + 1 : buf + len;
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	rc = statefile_write(path, from < buf + len ? from : "", e);
out:
	free(buf);
	close(fd);
	return rc;
}

/* Back from the end a chunk at a time: the newest lines of a long log are
 * read without reading all of it. */
int statefile_lines_newest_first(const char *path, size_t max_line,
				 bool (*fn)(char *line, size_t len, void *ctx), void *ctx,
				 struct err *e)
{
	size_t cap = max_line * 2 + 1;
	char *buf;
	struct stat st;
	off_t end;
	bool skipping = false, more = true;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 0 : err_sys(e, "opening %s", path);
	if (fstat(fd, &st) < 0) {
		err_sys(e, "stat %s", path);
		close(fd);
		return -1;
	}
	buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		return err_set(e, "out of memory");
	}
	end = st.st_size;
	while (more && end > 0) {
		off_t start = end > (off_t)cap ? end - (off_t)cap : 0;
		size_t len = (size_t)(end - start), line_end = len;
		if (statefile_pread_all(fd, buf, len, start, path, e) < 0) {
			free(buf);
			close(fd);
			return -1;
		}
		for (size_t i = len; i-- > 0 && more;) {
			if (buf[i] != '\n')
				continue;
			/* a line longer than max_line was cut off: not handed on */
			if (!skipping && line_end - (i + 1) <= max_line) {
				buf[line_end] = '\0';
				more = fn(buf + i + 1, line_end - (i + 1), ctx);
			}
			skipping = false;
			line_end = i;
		}
		if (!more)
			break;
		if (start == 0) {
			if (!skipping && line_end <= max_line) {
				buf[line_end] = '\0';
				fn(buf, line_end, ctx);
			}
			break;
		}
		/* what is left before the first newline continues in the
		 * previous chunk; a whole chunk without one is too long a line */
		if (line_end == len)
			skipping = true;
		end = line_end == len ? start : start + (off_t)line_end;
	}
	free(buf);
	close(fd);
	return 0;
}
