/*
 * bzImage loader (see bzimage.h). The image is hostile input: every header
 * field that decides a size or an address is range-checked before use, and
 * nothing is written to guest RAM until the whole plan fits.
 */
#include "vmm/x86/bzimage.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/stream.h"
#include "vmm/x86/e820.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/loadfile.h"

#define BZ_LOADER_TYPE_UNDEF 0xff   /* "no registered loader id" */
#define BZ_HEAP_END          0xfe00 /* boot.rst's value for a 64 KiB setup segment */

int bzimage_parse(const uint8_t *img, size_t len, struct bzimage_info *bi, struct err *e)
{
	unsigned sects;

	memset(bi, 0, sizeof(*bi));
	if (len < BZ_HDR_MIN_END)
		return err_set(e, "bzImage: file of %zu bytes is too short", len);
	if (le_get_u16(img + BZ_BOOT_FLAG) != 0xaa55)
		return err_set(e, "bzImage: no 0xAA55 boot flag");
	if (memcmp(img + BZ_HEADER, "HdrS", 4) != 0)
		return err_set(e, "bzImage: no HdrS signature (not a Linux kernel image?)");
	bi->version = le_get_u16(img + BZ_VERSION);
	if (bi->version < BZ_MIN_VERSION)
		return err_set(e, "bzImage: boot protocol %u.%02u is older than 2.12",
			       bi->version >> 8, bi->version & 0xff);
	/* The jump at 0x200 skips the header: its 8-bit offset gives the end. */
	bi->hdr_end = BZ_HEADER + img[BZ_JUMP + 1];
	if (bi->hdr_end < BZ_HDR_MIN_END)
		return err_set(e, "bzImage: setup header ends at 0x%zx, before 0x%x",
			       bi->hdr_end, BZ_HDR_MIN_END);
	if (bi->hdr_end > BZ_HDR_MAX_END)
		bi->hdr_end = BZ_HDR_MAX_END;
	sects = img[BZ_SETUP_SECTS];
	if (sects == 0)
		sects = 4; /* boot.rst: "if this field is 0, the real value is 4" */
	bi->setup_size = ((size_t)sects + 1) * 512;
	if (bi->setup_size < bi->hdr_end || bi->setup_size >= len ||
	    len - bi->setup_size <= BZ_ENTRY64_OFFSET)
		return err_set(e, "bzImage: %u setup sectors leave no kernel in %zu bytes",
			       sects, len);
	if (!(img[BZ_LOADFLAGS] & BZ_LOADED_HIGH))
		return err_set(e, "bzImage: zImage (not loaded high) is not supported");
	bi->xloadflags = le_get_u16(img + BZ_XLOADFLAGS);
	if (!(bi->xloadflags & BZ_XLF_KERNEL_64))
		return err_set(e, "bzImage: kernel has no 64-bit entry point (XLF_KERNEL_64)");
	bi->initrd_addr_max = le_get_u32(img + BZ_INITRD_ADDR_MAX);
	if (bi->initrd_addr_max < LAYOUT_HIMEM_START)
		return err_set(e, "bzImage: initrd_addr_max 0x%x is implausible", bi->initrd_addr_max);
	bi->cmdline_size = le_get_u32(img + BZ_CMDLINE_SIZE);
	bi->init_size = le_get_u32(img + BZ_INIT_SIZE);
	if (bi->init_size == 0)
		return err_set(e, "bzImage: init_size is 0");
	{
		/* The decompressor runs in [max(load address aligned up to
		 * kernel_alignment, pref_address), + init_size): from 16 MiB
		 * for Debian's kernels, whatever the load address (it copies
		 * the compressed kernel to that buffer's end before it looks
		 * at the initrd). */
		uint32_t align = le_get_u32(img + BZ_KERNEL_ALIGNMENT);
		uint64_t pref = le_get_u64(img + BZ_PREF_ADDRESS), at = LAYOUT_HIMEM_START;
		if (align > 1 && (align & (align - 1)) == 0)
			at = (at + align - 1) & ~((uint64_t)align - 1);
		if (pref >= (1ULL << 32))
			return err_set(e, "bzImage: pref_address 0x%llx is implausible",
				       (unsigned long long)pref);
		if (pref > at)
			at = pref;
		bi->decompress_at = at;
	}
	return 0;
}

int bzimage_initrd_addr(uint64_t size, uint32_t initrd_addr_max, uint64_t low_ram_end,
			uint64_t kernel_end, uint64_t *addr, struct err *e)
{
	/* initrd_addr_max is the highest address the last byte may have. */
	uint64_t limit = (uint64_t)initrd_addr_max + 1;
	uint64_t a;

	if (low_ram_end < limit)
		limit = low_ram_end;
	if (size == 0 || size > limit)
		return err_set(e, "initrd of %llu bytes does not fit below 0x%llx",
			       (unsigned long long)size, (unsigned long long)limit);
	a = (limit - size) & ~(BZ_INITRD_ALIGN - 1);
	if (a < kernel_end)
		return err_set(e, "initrd of %llu bytes does not fit between the kernel "
			       "(ends 0x%llx) and 0x%llx", (unsigned long long)size,
			       (unsigned long long)kernel_end, (unsigned long long)limit);
	*addr = a;
	return 0;
}

static void fill_e820(uint8_t *zp, const struct e820_map *map)
{
	zp[BZ_E820_ENTRIES] = (uint8_t)map->n;
	for (int i = 0; i < map->n; i++) {
		uint8_t *p = zp + BZ_E820_TABLE + 20 * i;
		le_put_u64(p, map->e[i].addr);
		le_put_u64(p + 8, map->e[i].size);
		le_put_u32(p + 16, map->e[i].type);
	}
}

int bzimage_plan_boot(const struct linux_boot *lb, const struct e820_map *map,
		      uint64_t *initrd_addr, struct err *e)
{
	uint64_t low_end = e820_low_ram_end(map);
	size_t clen = lb->cmdline ? strlen(lb->cmdline) : 0;

	*initrd_addr = 0;
	if (lb->hdr_len < BZ_HDR_MIN_END - BZ_SETUP_SECTS ||
	    lb->hdr_len > BZ_HDR_MAX_END - BZ_SETUP_SECTS)
		return err_set(e, "setup header of %zu bytes", lb->hdr_len);
	if (lb->kernel_end > low_end)
		return err_set(e, "kernel needs RAM up to 0x%llx, guest has 0x%llx",
			       (unsigned long long)lb->kernel_end, (unsigned long long)low_end);
	if (clen > lb->cmdline_size || clen >= LAYOUT_CMDLINE_MAX)
		return err_set(e, "command line of %zu bytes exceeds the limit of %u",
			       clen, lb->cmdline_size < LAYOUT_CMDLINE_MAX - 1 ?
			       lb->cmdline_size : LAYOUT_CMDLINE_MAX - 1);
	/* ramdisk_size is 32 bits in the header; check before placing so
	 * the message names the real problem. */
	if (lb->initrd_len > UINT32_MAX)
		return err_set(e, "initrd larger than 4 GiB");
	if (lb->initrd_len && bzimage_initrd_addr(lb->initrd_len, lb->initrd_addr_max, low_end,
						  lb->kernel_end, initrd_addr, e) < 0)
		return -1;
	return 0;
}

int bzimage_write_boot(struct guest_mem *gm, const struct linux_boot *lb,
		       const struct e820_map *map, uint64_t initrd_addr,
		       struct boot_entry *out, struct err *e)
{
	uint8_t zp[GMEM_PAGE_SIZE];
	size_t clen = lb->cmdline ? strlen(lb->cmdline) : 0;

	if (gmem_write(gm, LAYOUT_CMDLINE, clen ? lb->cmdline : "", clen + 1) < 0 ||
	    (lb->initrd_len && gmem_write(gm, initrd_addr, lb->initrd, lb->initrd_len) < 0))
		return err_set(e, "write to guest RAM failed");

	memset(zp, 0, sizeof(zp));
	memcpy(zp + BZ_SETUP_SECTS, lb->hdr, lb->hdr_len);
	zp[BZ_TYPE_OF_LOADER] = BZ_LOADER_TYPE_UNDEF;
	zp[BZ_LOADFLAGS] |= BZ_CAN_USE_HEAP;
	le_put_u16(zp + BZ_HEAP_END_PTR, BZ_HEAP_END);
	le_put_u16(zp + BZ_VID_MODE, 0xffff); /* "normal" */
	le_put_u32(zp + BZ_CMD_LINE_PTR, (uint32_t)LAYOUT_CMDLINE);
	le_put_u32(zp + BZ_RAMDISK_IMAGE, (uint32_t)initrd_addr);
	le_put_u32(zp + BZ_RAMDISK_SIZE, (uint32_t)lb->initrd_len);
	fill_e820(zp, map);
	if (gmem_write(gm, LAYOUT_ZERO_PAGE, zp, sizeof(zp)) < 0)
		return err_set(e, "zero page is outside guest RAM");
	/* Tests compare this with the kernel's "RAMDISK: [mem ...]" line. */
	if (lb->initrd_len)
		log_info("linux: initrd at [0x%llx-0x%llx] (%zu bytes), kernel entry 0x%llx",
			 (unsigned long long)initrd_addr,
			 (unsigned long long)(initrd_addr + lb->initrd_len - 1),
			 lb->initrd_len, (unsigned long long)lb->entry);
	else
		log_info("linux: no initrd, kernel entry 0x%llx", (unsigned long long)lb->entry);

	memset(out, 0, sizeof(*out));
	out->mode = BOOT_MODE_LONG64;
	out->rip = lb->entry;
	out->rsp = LAYOUT_BOOT_STACK;
	out->rsi = LAYOUT_ZERO_PAGE;
	return boot_prepare_memory(gm, out, e);
}

int bzimage_load_image(struct guest_mem *gm, const uint8_t *kernel, size_t kernel_len,
		       const uint8_t *initrd, size_t initrd_len, const char *cmdline,
		       struct boot_entry *out, struct err *e)
{
	struct bzimage_info bi;
	struct e820_map map;
	struct linux_boot lb;
	uint64_t payload, initrd_addr;

	if (bzimage_parse(kernel, kernel_len, &bi, e) < 0 || e820_build(gm, &map, e) < 0)
		return -1;
	payload = kernel_len - bi.setup_size;
	memset(&lb, 0, sizeof(lb));
	lb.hdr = kernel + BZ_SETUP_SECTS;
	lb.hdr_len = bi.hdr_end - BZ_SETUP_SECTS;
	/* The kernel owns its payload where we load it, and init_size bytes
	 * from where it decompresses itself (bzimage_parse), whichever ends
	 * later: nothing of ours (the initrd) may sit there. */
	lb.kernel_end = LAYOUT_HIMEM_START + payload;
	if (bi.decompress_at + bi.init_size > lb.kernel_end)
		lb.kernel_end = bi.decompress_at + bi.init_size;
	lb.entry = LAYOUT_HIMEM_START + BZ_ENTRY64_OFFSET;
	lb.initrd_addr_max = bi.initrd_addr_max;
	lb.cmdline_size = bi.cmdline_size;
	lb.cmdline = cmdline;
	lb.initrd = initrd;
	lb.initrd_len = initrd_len;
	if (bzimage_plan_boot(&lb, &map, &initrd_addr, e) < 0)
		return err_prefix(e, "bzImage");
	if (gmem_write(gm, LAYOUT_HIMEM_START, kernel + bi.setup_size, payload) < 0)
		return err_set(e, "bzImage: write to guest RAM failed");
	if (bzimage_write_boot(gm, &lb, &map, initrd_addr, out, e) < 0)
		return err_prefix(e, "bzImage");
	return 0;
}

int linux_load_files(struct guest_mem *gm, const char *kernel, const char *initrd,
		     const char *cmdline, linux_image_loader load, struct boot_entry *out,
		     struct err *e)
{
	uint8_t *k = NULL, *i = NULL;
	size_t klen = 0, ilen = 0;
	int r;

	if (loadfile_read(kernel, (size_t)gm->ram_size, &k, &klen, e) < 0)
		return -1;
	if (initrd && loadfile_read(initrd, (size_t)gm->ram_size, &i, &ilen, e) < 0) {
		free(k);
		return -1;
	}
	r = load(gm, k, klen, i, ilen, cmdline, out, e);
	free(k);
	free(i);
	if (r < 0)
		return err_prefix(e, "loading kernel %s", kernel);
	return 0;
}

int bzimage_load(struct guest_mem *gm, const char *kernel, const char *initrd,
		 const char *cmdline, struct boot_entry *out, struct err *e)
{
	return linux_load_files(gm, kernel, initrd, cmdline, bzimage_load_image, out, e);
}
