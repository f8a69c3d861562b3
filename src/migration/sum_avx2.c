/*
 * XXH3 built for AVX2 (this file alone is compiled with -mavx2; see the
 * Makefile): twice the throughput of the SSE2 build Debian's libxxhash
 * ships, on the checksum every page pays on both ends of a move. Same
 * function, same result; format.c calls it only on CPUs that have AVX2.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "migration/format.h"

uint64_t mig_sum_avx2(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}
