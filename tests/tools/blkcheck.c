/*
 * blkcheck IMAGE [MIN_N]: proves the test guest's virtio-blk records in a
 * raw image are intact. The guest writes record n (its heartbeat counter)
 * to sector n % 64 + 1, so the sectors must hold valid records whose
 * counters form one unbroken run ending at the newest; any lost, torn or
 * misplaced write breaks that. MIN_N: the newest record must be at least this.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "protocol.h"

int main(int argc, char **argv)
{
	struct fg_blk_record r;
	uint64_t seen[64] = { 0 }, max = 0, min_n = argc > 2 ? strtoull(argv[2], NULL, 10) : 0;
	int fd, valid = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: blkcheck IMAGE [MIN_N]\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	for (int s = 1; s <= 64; s++) {
		if (pread(fd, &r, sizeof(r), (off_t)s * 512) != (ssize_t)sizeof(r)) {
			fprintf(stderr, "blkcheck: short read at sector %d\n", s);
			return 1;
		}
		if (r.magic == 0)
			continue; /* not written yet */
		if (r.magic != FG_BLK_MAGIC || r.sum != fg_blk_sum(&r)) {
			fprintf(stderr, "blkcheck: sector %d holds a corrupt record\n", s);
			return 1;
		}
		if (r.n % 64 + 1 != (uint64_t)s) {
			fprintf(stderr, "blkcheck: record %llu found in sector %d\n", (unsigned long long)r.n, s);
			return 1;
		}
		seen[s - 1] = r.n;
		if (r.n > max)
			max = r.n;
		valid++;
	}
	/* Every record from max-63 (or the first) up to max must be present. */
	for (uint64_t n = max > 63 ? max - 63 : 1; n <= max && max; n++)
		if (seen[n % 64] != n) {
			fprintf(stderr, "blkcheck: record %llu missing (newest %llu)\n", (unsigned long long)n,
				(unsigned long long)max);
			return 1;
		}
	if (max < min_n) {
		fprintf(stderr, "blkcheck: newest record %llu, expected at least %llu\n",
			(unsigned long long)max, (unsigned long long)min_n);
		return 1;
	}
	printf("blkcheck: ok, %d records, newest %llu\n", valid, (unsigned long long)max);
	close(fd);
	return 0;
}
