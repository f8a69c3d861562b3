/*
 * ELF segment loader for multiboot kernels (see elfload.h). Headers are
 * decoded field by field from the byte buffer, never cast, so a truncated
 * or misaligned file cannot make us read past the end.
 */
#include "vmm/x86/elfload.h"

#include <string.h>

#include "common/stream.h"

#define EM_386     3
#define EM_X86_64  62
#define PT_LOAD    1
#define MAX_PHNUM  128

struct seg {
	uint64_t off, vaddr, paddr, filesz, memsz;
};

struct elf_info {
	int is64;
	uint64_t entry, phoff;
	uint32_t phentsize, phnum;
};

int elfload_is_elf(const uint8_t *img, size_t len)
{
	return len >= 4 && memcmp(img, "\x7f" "ELF", 4) == 0;
}

static int parse_ehdr(const uint8_t *img, size_t len, struct elf_info *ei, struct err *e)
{
	uint16_t machine;

	if (len < 64 || !elfload_is_elf(img, len))
		return err_set(e, "ELF: file too short or bad magic");
	if (img[4] != 1 && img[4] != 2)
		return err_set(e, "ELF: bad class %u", img[4]);
	if (img[5] != 1)
		return err_set(e, "ELF: not little-endian");
	ei->is64 = img[4] == 2;
	machine = le_get_u16(img + 18);
	if (machine != (ei->is64 ? EM_X86_64 : EM_386))
		return err_set(e, "ELF: machine %u is not x86", machine);
	if (ei->is64) {
		ei->entry = le_get_u64(img + 24);
		ei->phoff = le_get_u64(img + 32);
		ei->phentsize = le_get_u16(img + 54);
		ei->phnum = le_get_u16(img + 56);
	} else {
		ei->entry = le_get_u32(img + 24);
		ei->phoff = le_get_u32(img + 28);
		ei->phentsize = le_get_u16(img + 42);
		ei->phnum = le_get_u16(img + 44);
	}
	if (ei->phentsize != (ei->is64 ? 56u : 32u))
		return err_set(e, "ELF: program header size %u unexpected", ei->phentsize);
	if (ei->phnum == 0 || ei->phnum > MAX_PHNUM)
		return err_set(e, "ELF: %u program headers", ei->phnum);
	if (ei->phoff > len || (uint64_t)ei->phnum * ei->phentsize > len - ei->phoff)
		return err_set(e, "ELF: program headers past end of file");
	return 0;
}

static void get_seg(const uint8_t *ph, int is64, uint32_t *type, struct seg *s)
{
	*type = le_get_u32(ph);
	if (is64) {
		s->off = le_get_u64(ph + 8);
		s->vaddr = le_get_u64(ph + 16);
		s->paddr = le_get_u64(ph + 24);
		s->filesz = le_get_u64(ph + 32);
		s->memsz = le_get_u64(ph + 40);
	} else {
		s->off = le_get_u32(ph + 4);
		s->vaddr = le_get_u32(ph + 8);
		s->paddr = le_get_u32(ph + 12);
		s->filesz = le_get_u32(ph + 16);
		s->memsz = le_get_u32(ph + 20);
	}
}

static int check_seg(const struct seg *s, size_t len, const struct e820_map *map,
		     const struct elfload_limits *lim, unsigned i, struct err *e)
{
	if (s->filesz > s->memsz)
		return err_set(e, "ELF: segment %u file size exceeds memory size", i);
	if (s->off > len || s->filesz > len - s->off)
		return err_set(e, "ELF: segment %u data past end of file", i);
	if (s->paddr + s->memsz < s->paddr || s->paddr + s->memsz > lim->max_addr)
		return err_set(e, "ELF: segment %u at 0x%llx+0x%llx beyond 0x%llx", i,
			       (unsigned long long)s->paddr, (unsigned long long)s->memsz,
			       (unsigned long long)lim->max_addr);
	if (!e820_is_ram(map, s->paddr, s->memsz))
		return err_set(e, "ELF: segment %u at 0x%llx+0x%llx is not in guest RAM", i,
			       (unsigned long long)s->paddr, (unsigned long long)s->memsz);
	if (s->paddr < lim->resv_end && s->paddr + s->memsz > lim->resv_start)
		return err_set(e, "ELF: segment %u at 0x%llx overlaps loader data [0x%llx, 0x%llx)",
			       i, (unsigned long long)s->paddr,
			       (unsigned long long)lim->resv_start, (unsigned long long)lim->resv_end);
	return 0;
}

int elfload_load_ex(struct guest_mem *gm, const struct e820_map *map,
		    const struct elfload_limits *lim, const uint8_t *img, size_t len,
		    struct elfload_result *res, struct err *e)
{
	struct elf_info ei = { 0 };
	int nload = 0, entry_ok = 0;
	uint64_t ent, lo = UINT64_MAX, hi = 0;

	if (parse_ehdr(img, len, &ei, e) < 0)
		return -1;
	ent = ei.entry;
	/* Validate everything (segments and entry) first so a bad image
	 * leaves RAM untouched. */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < ei.phnum; i++) {
			struct seg s;
			uint32_t type;
			get_seg(img + ei.phoff + (uint64_t)i * ei.phentsize, ei.is64, &type, &s);
			if (type != PT_LOAD || s.memsz == 0)
				continue;
			if (pass == 1) {
				if (!gm)
					continue;
				uint8_t *dst = gmem_ptr(gm, s.paddr, s.memsz);
				if (!dst)
					return err_set(e, "ELF: segment %u not mappable", i);
				memcpy(dst, img + s.off, s.filesz);
				memset(dst + s.filesz, 0, s.memsz - s.filesz);
				gmem_mark_dirty(gm, s.paddr, s.memsz);
				continue;
			}
			if (check_seg(&s, len, map, lim, i, e) < 0)
				return -1;
			nload++;
			if (s.paddr < lo)
				lo = s.paddr;
			if (s.paddr + s.memsz > hi)
				hi = s.paddr + s.memsz; /* no wrap: check_seg saw to it */
			if (ei.entry >= s.paddr && ei.entry - s.paddr < s.memsz) {
				ent = ei.entry;
				entry_ok = 2;
			} else if (entry_ok < 2 && ei.entry >= s.vaddr && ei.entry - s.vaddr < s.memsz) {
				/* Higher-half kernels link at a virtual address but
				 * are entered with paging off or identity-mapped:
				 * use the physical one. A physical match wins. */
				ent = s.paddr + (ei.entry - s.vaddr);
				entry_ok = 1;
			}
		}
		if (pass == 0 && nload == 0)
			return err_set(e, "ELF: no loadable segments");
		if (pass == 0 && !entry_ok)
			return err_set(e, "ELF: entry point 0x%llx is outside every segment",
				       (unsigned long long)ei.entry);
	}
	res->entry = ent;
	res->lo = lo;
	res->hi = hi;
	return 0;
}

int elfload_load(struct guest_mem *gm, const struct e820_map *map,
		 const struct elfload_limits *lim, const uint8_t *img, size_t len,
		 uint64_t *entry, struct err *e)
{
	struct elfload_result r;

	if (elfload_load_ex(gm, map, lim, img, len, &r, e) < 0)
		return -1;
	*entry = r.entry;
	return 0;
}
