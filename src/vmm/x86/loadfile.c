/* Whole-file reads for the loaders (see loadfile.h). */
#include "vmm/x86/loadfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int loadfile_read(const char *path, size_t max, uint8_t **buf, size_t *len, struct err *e)
{
	struct stat st;
	uint8_t *p;
	size_t got = 0;
	int fd;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(e, "open %s", path);
	if (fstat(fd, &st) < 0) {
		err_sys(e, "stat %s", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > max) {
		close(fd);
		return err_set(e, "%s: not a regular file of 1..%zu bytes", path, max);
	}
	p = malloc((size_t)st.st_size);
	if (!p) {
		close(fd);
		return err_set(e, "%s: out of memory for %lld bytes", path, (long long)st.st_size);
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				err_sys(e, "read %s", path);
			else
				err_set(e, "read %s: file shrank while reading", path);
			free(p);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	if (close(fd) < 0) {
		free(p);
		return err_sys(e, "close %s", path);
	}
	*buf = p;
	*len = got;
	return 0;
}
