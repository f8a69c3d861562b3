/*
 * tcpbw: throughput of one TCP stream over loopback. Forks a receiver that
 * reads into a buffer and discards; the parent sends 1 MiB writes for the
 * given time and reports what the receiver counted. Prints key=value lines.
 *
 *   tcpbw [seconds, default 2]
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

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int pfd[2];

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0 || pipe(pfd) < 0) {
		perror("tcpbw: setup");
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		/* receiver: count bytes until EOF, report the count through the pipe */
		int fd = accept(lfd, NULL, NULL);
		char *buf = malloc(BUF);
		unsigned long long total = 0;
		ssize_t n;
		while ((n = read(fd, buf, BUF)) > 0)
			total += (unsigned long long)n;
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
	char *buf = malloc(BUF);
	memset(buf, 0x5a, BUF);
	for (size_t i = 0; i < BUF; i += 8) /* not all one byte, in case anything compresses */
		buf[i] = (char)(i * 2654435761u >> 24);
	double t0 = now(), t;
	do {
		size_t off = 0;
		while (off < BUF) {
			ssize_t n = write(fd, buf + off, BUF - off);
			if (n <= 0) {
				perror("tcpbw: write");
				return 1;
			}
			off += (size_t)n;
		}
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
	printf("loopback_gib_s=%.2f\n", total / (t - t0) / (1 << 30));
	return 0;
}
