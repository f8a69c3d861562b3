/*
 * Multiboot v1 loader (see multiboot.h). The header search, the a.out
 * kludge and the info block live here; ELF segments go through elfload.
 * The file is hostile input: each address and length is checked against
 * the file and the e820 RAM map before use.
 */
#include "vmm/x86/multiboot.h"

#include <stdlib.h>
#include <string.h>

#include "common/stream.h"
#include "vmm/x86/e820.h"
#include "vmm/x86/elfload.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/loadfile.h"

#define MBH_FLAG_AOUT_KLUDGE (1u << 16)
/* Bits 0-2 (page-align modules, want memory info, want video mode) are the
 * only required-feature bits defined; a loader must refuse the others. */
#define MBH_KNOWN_REQUIRED   0x7u
#define MBI_MMAP_OFF         0x80   /* from LAYOUT_MB_INFO */
#define MBI_NAME_OFF         0x200
#define MBI_MMAP_ENTRY       24

/* The loader's own structures (GDT, IDT, info, command line): kernels may
 * not load over them. */
#define MB_RESV_START        LAYOUT_BOOT_GDT
#define MB_RESV_END          (LAYOUT_MB_CMDLINE + LAYOUT_CMDLINE_MAX)

struct mb_header {
	size_t off;       /* file offset of the header */
	uint32_t flags;
	uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

static int find_header(const uint8_t *img, size_t len, struct mb_header *h, struct err *e)
{
	size_t lim = len < MULTIBOOT_SEARCH ? len : MULTIBOOT_SEARCH;

	for (size_t off = 0; off + 12 <= lim; off += 4) {
		if (le_get_u32(img + off) != MULTIBOOT_HEADER_MAGIC)
			continue;
		uint32_t flags = le_get_u32(img + off + 4);
		uint32_t sum = le_get_u32(img + off + 8);
		if ((uint32_t)(MULTIBOOT_HEADER_MAGIC + flags + sum) != 0)
			return err_set(e, "multiboot header at 0x%zx: bad checksum", off);
		memset(h, 0, sizeof(*h));
		h->off = off;
		h->flags = flags;
		if (flags & 0xfff8u)
			return err_set(e, "multiboot header requires unknown features 0x%x",
				       flags & 0xffffu & ~MBH_KNOWN_REQUIRED);
		if (flags & MBH_FLAG_AOUT_KLUDGE) {
			if (len - off < 32)
				return err_set(e, "multiboot header address fields truncated");
			h->header_addr = le_get_u32(img + off + 12);
			h->load_addr = le_get_u32(img + off + 16);
			h->load_end_addr = le_get_u32(img + off + 20);
			h->bss_end_addr = le_get_u32(img + off + 24);
			h->entry_addr = le_get_u32(img + off + 28);
		}
		return 0;
	}
	return err_set(e, "no multiboot header in the first %d bytes", MULTIBOOT_SEARCH);
}

static int load_aout(struct guest_mem *gm, const struct e820_map *map,
		     const struct mb_header *h, const uint8_t *img, size_t len,
		     uint64_t *entry, struct err *e)
{
	uint64_t delta, foff, fsize, end, memend;

	if (h->header_addr < h->load_addr)
		return err_set(e, "multiboot: header_addr below load_addr");
	delta = (uint64_t)h->header_addr - h->load_addr;
	if (delta > h->off)
		return err_set(e, "multiboot: load_addr is before the start of the file");
	foff = h->off - delta;
	if (h->load_end_addr) {
		if (h->load_end_addr < h->load_addr)
			return err_set(e, "multiboot: load_end_addr below load_addr");
		fsize = (uint64_t)h->load_end_addr - h->load_addr;
		if (fsize > len - foff)
			return err_set(e, "multiboot: load_end_addr past end of file");
	} else {
		fsize = len - foff;
	}
	end = (uint64_t)h->load_addr + fsize;
	memend = end;
	if (h->bss_end_addr) {
		if (h->bss_end_addr < end)
			return err_set(e, "multiboot: bss_end_addr below end of image");
		memend = h->bss_end_addr;
	}
	if (memend == h->load_addr || !e820_is_ram(map, h->load_addr, memend - h->load_addr))
		return err_set(e, "multiboot: image [0x%x, 0x%llx) is not in guest RAM",
			       h->load_addr, (unsigned long long)memend);
	if (h->load_addr < MB_RESV_END && memend > MB_RESV_START)
		return err_set(e, "multiboot: image overlaps loader data below 0x%llx",
			       (unsigned long long)MB_RESV_END);
	if (h->entry_addr < h->load_addr || h->entry_addr >= memend)
		return err_set(e, "multiboot: entry 0x%x outside the image", h->entry_addr);

	uint8_t *dst = gmem_ptr(gm, h->load_addr, memend - h->load_addr);
	if (!dst)
		return err_set(e, "multiboot: image not mappable");
	memcpy(dst, img + foff, fsize);
	memset(dst + fsize, 0, memend - end);
	gmem_mark_dirty(gm, h->load_addr, memend - h->load_addr);
	*entry = h->entry_addr;
	return 0;
}

static int write_info(struct guest_mem *gm, const struct e820_map *map,
		      const char *cmdline, struct err *e)
{
	uint8_t info[MBI_NAME_OFF + 16];
	size_t clen = cmdline ? strlen(cmdline) : 0;
	uint64_t upper = (e820_low_ram_end(map) - LAYOUT_HIMEM_START) / 1024;

	if (clen >= LAYOUT_CMDLINE_MAX)
		return err_set(e, "multiboot: command line longer than %d bytes",
			       LAYOUT_CMDLINE_MAX - 1);
	if (MBI_MMAP_OFF + (size_t)map->n * MBI_MMAP_ENTRY > MBI_NAME_OFF)
		return err_set(e, "multiboot: memory map too large");
	memset(info, 0, sizeof(info));
	le_put_u32(info + MBI_FLAGS, MBI_FLAG_MEM | MBI_FLAG_CMDLINE | MBI_FLAG_MMAP | MBI_FLAG_LOADER);
	le_put_u32(info + MBI_MEM_LOWER, (uint32_t)(LAYOUT_LOWMEM_END / 1024));
	le_put_u32(info + MBI_MEM_UPPER, (uint32_t)upper);
	le_put_u32(info + MBI_CMDLINE, (uint32_t)LAYOUT_MB_CMDLINE);
	le_put_u32(info + MBI_MMAP_LENGTH, (uint32_t)(map->n * MBI_MMAP_ENTRY));
	le_put_u32(info + MBI_MMAP_ADDR, (uint32_t)(LAYOUT_MB_INFO + MBI_MMAP_OFF));
	le_put_u32(info + MBI_LOADER_NAME, (uint32_t)(LAYOUT_MB_INFO + MBI_NAME_OFF));
	for (int i = 0; i < map->n; i++) {
		uint8_t *m = info + MBI_MMAP_OFF + (size_t)i * MBI_MMAP_ENTRY;
		/* "size" counts the bytes after itself, so entries are 24 apart. */
		le_put_u32(m, MBI_MMAP_ENTRY - 4);
		le_put_u64(m + 4, map->e[i].addr);
		le_put_u64(m + 12, map->e[i].size);
		le_put_u32(m + 20, map->e[i].type);
	}
	memcpy(info + MBI_NAME_OFF, "ferry", 6);
	if (gmem_write(gm, LAYOUT_MB_INFO, info, sizeof(info)) < 0)
		return err_set(e, "multiboot: info area is outside guest RAM");
	if (gmem_write(gm, LAYOUT_MB_CMDLINE, clen ? cmdline : "", clen + 1) < 0)
		return err_set(e, "multiboot: command line area is outside guest RAM");
	return 0;
}

int multiboot_load_image(struct guest_mem *gm, const uint8_t *img, size_t len,
			 const char *cmdline, struct boot_entry *out, struct err *e)
{
	struct e820_map map;
	struct mb_header h;
	uint64_t entry = 0;

	if (e820_build(gm, &map, e) < 0)
		return -1;
	if (find_header(img, len, &h, e) < 0)
		return -1;
	if (h.flags & MBH_FLAG_AOUT_KLUDGE) {
		if (load_aout(gm, &map, &h, img, len, &entry, e) < 0)
			return -1;
	} else if (elfload_is_elf(img, len)) {
		/* Entered in 32-bit mode, so everything must sit below 4 GiB. */
		struct elfload_limits lim = { LAYOUT_MMIO_HOLE_START, MB_RESV_START, MB_RESV_END };
		if (elfload_load(gm, &map, &lim, img, len, &entry, e) < 0)
			return err_prefix(e, "multiboot");
	} else {
		return err_set(e, "multiboot: not ELF and no load addresses in the header");
	}
	if (write_info(gm, &map, cmdline, e) < 0)
		return -1;

	memset(out, 0, sizeof(*out));
	out->mode = BOOT_MODE_PROT32;
	out->rip = entry;
	out->rsp = LAYOUT_BOOT_STACK;
	out->rax = MULTIBOOT_BOOTLOADER_MAGIC;
	out->rbx = LAYOUT_MB_INFO;
	return boot_prepare_memory(gm, out, e);
}

int multiboot_load(struct guest_mem *gm, const char *path, const char *cmdline,
		   struct boot_entry *out, struct err *e)
{
	uint8_t *img;
	size_t len;
	int r;

	if (loadfile_read(path, (size_t)gm->ram_size, &img, &len, e) < 0)
		return -1;
	r = multiboot_load_image(gm, img, len, cmdline, out, e);
	free(img);
	if (r < 0)
		return err_prefix(e, "loading %s", path);
	return 0;
}
