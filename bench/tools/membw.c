/*
 * membw: memcpy bandwidth between two warm buffers, and the cost of a first
 * touch of fresh anonymous memory (the page fault that dominates a
 * destination's bulk pass on nested KVM). Prints key=value lines.
 *
 *   membw [MiB per buffer, default 256] [seconds, default 1.5]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 256;
	double secs = argc > 2 ? atof(argv[2]) : 1.5;
	size_t len = mib << 20;
	char *a = malloc(len), *b = malloc(len);
	if (!a || !b) {
		fprintf(stderr, "membw: out of memory\n");
		return 1;
	}
	memset(a, 1, len);
	memset(b, 2, len);

	/* memcpy, warm: repeat until the time budget is used */
	double t0 = now(), t;
	size_t copied = 0;
	do {
		memcpy(b, a, len);
		copied += len;
		a[copied % len] ^= 1; /* keep the compiler honest */
		t = now();
	} while (t - t0 < secs);
	printf("memcpy_gib_s=%.2f\n", copied / (t - t0) / (1 << 30));

	/* first touch: one byte per 4 KiB page of a fresh mapping */
	size_t flen = (size_t)64 << 20;
	char *f = mmap(NULL, flen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	t0 = now();
	for (size_t off = 0; off < flen; off += 4096)
		f[off] = 1;
	t = now();
	printf("first_touch_us_per_page=%.2f\n", (t - t0) * 1e6 / (flen / 4096));

	/* memcpy into fresh memory: what a destination without pre-allocation does */
	char *g = mmap(NULL, flen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	t0 = now();
	memcpy(g, a, flen < len ? flen : len);
	t = now();
	printf("memcpy_fresh_gib_s=%.2f\n", (flen < len ? flen : len) / (t - t0) / (1 << 30));
	return 0;
}
