/*
 * The machine's one e820 memory map, derived from guest_mem's regions.
 * Both loaders (bzImage zero page, multiboot mmap) and anything else that
 * describes RAM to the guest take it from here, so they cannot disagree
 * with each other or with the MP table's reserved EBDA.
 */
#ifndef FERRY_X86_E820_H
#define FERRY_X86_E820_H

#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_MAX      8

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

struct e820_map {
	int n;
	struct e820_entry e[E820_MAX];
};

/* [0, LOWMEM_END) RAM, [EBDA, 1 MiB) reserved, [1 MiB, end of region 0)
 * RAM, region 1 RAM if present. Fails if the regions do not look like
 * gmem_init's layout (region 0 at 0 and larger than 1 MiB). */
int e820_build(const struct guest_mem *gm, struct e820_map *out, struct err *e);

/* True if [addr, addr+len) lies entirely inside one RAM entry. */
int e820_is_ram(const struct e820_map *m, uint64_t addr, uint64_t len);

/* End of the RAM that starts at 1 MiB (end of region 0). */
uint64_t e820_low_ram_end(const struct e820_map *m);

#endif
