/*
 * Loading the PT_LOAD segments of an untrusted ELF32/ELF64 x86 image into
 * guest RAM at their physical addresses. Every offset, size and address is
 * checked against the file and against the e820 RAM map before a byte is
 * copied, and segments may not touch the loader's own reserved range.
 */
#ifndef FERRY_X86_ELFLOAD_H
#define FERRY_X86_ELFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"
#include "vmm/x86/e820.h"

struct elfload_limits {
	uint64_t max_addr;       /* segments must end at or below this */
	uint64_t resv_start;     /* loader-owned [start, end) no segment may overlap */
	uint64_t resv_end;
};

/* True if img starts with an ELF identification. */
int elfload_is_elf(const uint8_t *img, size_t len);

/* What a load placed: the entry and the physical range the segments span. */
struct elfload_result {
	uint64_t entry;
	uint64_t lo;            /* lowest segment start */
	uint64_t hi;            /* first byte past the highest segment end */
};

/* Load segments and report entry and extent (see elfload_load). With gm
 * NULL, only validate and measure: a caller that must plan more than the
 * segments (initrd, command line) checks the whole plan before writing. */
int elfload_load_ex(struct guest_mem *gm, const struct e820_map *map,
		    const struct elfload_limits *lim, const uint8_t *img, size_t len,
		    struct elfload_result *res, struct err *e);

/* Load segments; *entry is e_entry, translated from a virtual to a
 * physical address when it lies in a segment's virtual range only. */
int elfload_load(struct guest_mem *gm, const struct e820_map *map,
		 const struct elfload_limits *lim, const uint8_t *img, size_t len,
		 uint64_t *entry, struct err *e);

#endif
