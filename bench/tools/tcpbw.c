/*
 * tcpbw: throughput of one TCP stream over loopback. Forks a receiver that
 * reads into a buffer and discards; the parent sends 1 MiB writes for the
 * given time and reports what the receiver counted. Prints key=value lines.
 *
 *   tcpbw [seconds, default 2] [MiB, default 1]
 *
 * With 1 MiB both ends reuse one buffer that stays in cache: the ceiling of
 * the stack itself (loopback_gib_s). With more, the sender walks a buffer of
 * that size and the receiver fills one (both faulted in first), so memory is
 * read and written as a migration must (loopback_mem_gib_s).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#define BUF (1 << 20)

/* A buffer of len bytes, every page touched, not all one byte value. */
static char *mem_buffer(size_t len)
{
	char *b = malloc(len);
	if (!b)
		return NULL;
	memset(b, 0x5a, len);
	for (size_t i = 0; i < len; i += 8)
		b[i] = (char)(i * 2654435761u >> 24);
	return b;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	size_t span = (argc > 2 ? (size_t)atol(argv[2]) : 1) << 20;
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int pfd[2], ready[2];
	char go;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0 || pipe(pfd) < 0 ||
	    pipe(ready) < 0) {
		perror("tcpbw: setup");
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		/* receiver: count bytes until EOF, report the count through the pipe */
		/* the buffer first, so the clock never counts its faults */
		char *buf = mem_buffer(span < BUF ? BUF : span);
		int fd = accept(lfd, NULL, NULL);
		unsigned long long total = 0;
		size_t at = 0;
		ssize_t n;
		if (!buf || write(ready[1], "r", 1) != 1)
			_exit(1);
		while ((n = read(fd, buf + at, BUF - at % BUF)) > 0) {
			total += (unsigned long long)n;
			at = (at + (size_t)n) % (span < BUF ? BUF : span);
		}
		if (write(pfd[1], &total, sizeof(total)) != sizeof(total))
			_exit(1);
		_exit(0);
	}
	close(lfd);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("tcpbw: connect");
		kill(pid, SIGKILL);
		return 1;
	}
	if (span < BUF)
		span = BUF;
	char *buf = mem_buffer(span);
	size_t base = 0;
	if (!buf) {
		perror("tcpbw: buffer");
		return 1;
	}
	if (read(ready[0], &go, 1) != 1) {
		fprintf(stderr, "tcpbw: receiver failed to start\n");
		return 1;
	}
	double t0 = now(), t;
	do {
		size_t off = 0;
		while (off < BUF) {
			ssize_t n = write(fd, buf + base + off, BUF - off);
			if (n <= 0) {
				perror("tcpbw: write");
				return 1;
			}
			off += (size_t)n;
		}
		base = (base + BUF) % span;
		t = now();
	} while (t - t0 < secs);
	close(fd);
	unsigned long long total = 0;
	if (read(pfd[0], &total, sizeof(total)) != sizeof(total)) {
		fprintf(stderr, "tcpbw: receiver failed\n");
		return 1;
	}
	waitpid(pid, NULL, 0);
	t = now(); /* until the receiver has read everything */
	printf("%s=%.2f\n", span > BUF ? "loopback_mem_gib_s" : "loopback_gib_s",
	       total / (t - t0) / (1 << 30));
	return 0;
}
