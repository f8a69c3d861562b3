/*
 * Linux bzImage loading with the 64-bit boot protocol (Documentation/arch/
 * x86/boot.rst): kernel at 1 MiB, zero page at LAYOUT_ZERO_PAGE with the
 * setup header copied in, command line at LAYOUT_CMDLINE, the e820 map,
 * the initrd as high as it may go, and a long-mode entry at 1 MiB + 0x200
 * with RSI pointing at the zero page.
 */
#ifndef FERRY_X86_BZIMAGE_H
#define FERRY_X86_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/e820.h"

/* Offsets in the bzImage file and in struct boot_params (hdr at 0x1f1). */
#define BZ_SETUP_SECTS      0x1f1
#define BZ_VID_MODE         0x1fa
#define BZ_BOOT_FLAG        0x1fe
#define BZ_JUMP             0x200
#define BZ_HEADER           0x202
#define BZ_VERSION          0x206
#define BZ_TYPE_OF_LOADER   0x210
#define BZ_LOADFLAGS        0x211
#define BZ_RAMDISK_IMAGE    0x218
#define BZ_RAMDISK_SIZE     0x21c
#define BZ_HEAP_END_PTR     0x224
#define BZ_CMD_LINE_PTR     0x228
#define BZ_INITRD_ADDR_MAX  0x22c
#define BZ_KERNEL_ALIGNMENT 0x230
#define BZ_RELOCATABLE      0x234
#define BZ_XLOADFLAGS       0x236
#define BZ_CMDLINE_SIZE     0x238
#define BZ_PREF_ADDRESS     0x258
#define BZ_INIT_SIZE        0x260
#define BZ_HDR_MIN_END      0x268   /* protocol 2.12 header ends at or after this */
#define BZ_HDR_MAX_END      0x290   /* first byte after hdr in boot_params */
#define BZ_E820_ENTRIES     0x1e8
#define BZ_E820_TABLE       0x2d0
#define BZ_E820_MAX         128

#define BZ_MIN_VERSION      0x020c
#define BZ_XLF_KERNEL_64    0x1
#define BZ_LOADED_HIGH      0x01
#define BZ_CAN_USE_HEAP     0x80
#define BZ_ENTRY64_OFFSET   0x200
#define BZ_INITRD_ALIGN     0x100000ULL

/* Facts parsed and validated from a bzImage header. */
struct bzimage_info {
	uint16_t version;
	size_t setup_size;        /* (setup_sects + 1) * 512 */
	size_t hdr_end;           /* file offset just past the setup header */
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
	uint32_t init_size;
	uint16_t xloadflags;
	uint64_t decompress_at;   /* where the kernel decompresses itself (below) */
};

/* Validate the header of a bzImage held in img (untrusted). */
int bzimage_parse(const uint8_t *img, size_t len, struct bzimage_info *bi, struct err *e);

/* Where the initrd goes: the highest 1 MiB-aligned address below
 * min(initrd_addr_max + 1, low_ram_end) that still leaves [kernel_end,
 * addr) free. Fails if it does not fit. */
int bzimage_initrd_addr(uint64_t size, uint32_t initrd_addr_max, uint64_t low_ram_end,
			uint64_t kernel_end, uint64_t *addr, struct err *e);

/* What any Linux loader (bzImage, ELF vmlinux) hands to the shared
 * zero-page code: the setup header to copy into boot_params, where the
 * kernel's RAM ends, its entry, and the limits the header states. */
struct linux_boot {
	const uint8_t *hdr;       /* setup header bytes, boot_params offset 0x1f1 on */
	size_t hdr_len;           /* BZ_HDR_MIN_END..BZ_HDR_MAX_END minus 0x1f1 */
	uint64_t kernel_end;      /* first byte past the RAM the kernel owns */
	uint64_t entry;           /* 64-bit entry, physical */
	uint32_t initrd_addr_max; /* highest address the initrd's last byte may have */
	uint32_t cmdline_size;    /* longest command line the kernel accepts */
	const char *cmdline;      /* may be NULL */
	const uint8_t *initrd;    /* may be NULL with initrd_len 0 */
	size_t initrd_len;
};

/* Check that the command line, kernel and initrd fit the machine and
 * choose the initrd address (0 without one). Writes nothing, so a loader
 * calls it before it copies the kernel. */
int bzimage_plan_boot(const struct linux_boot *lb, const struct e820_map *map,
		      uint64_t *initrd_addr, struct err *e);

/* Write the command line, the initrd and the zero page (header, loader
 * fields, e820 map), log the initrd placement, and fill out for a 64-bit
 * entry at lb->entry with RSI = zero page. */
int bzimage_write_boot(struct guest_mem *gm, const struct linux_boot *lb,
		       const struct e820_map *map, uint64_t initrd_addr,
		       struct boot_entry *out, struct err *e);

/* Load kernel (and initrd, may be NULL) files. */
/* A loader of an in-memory Linux kernel (bzImage or vmlinux) and initrd. */
typedef int (*linux_image_loader)(struct guest_mem *gm, const uint8_t *kernel, size_t kernel_len,
				  const uint8_t *initrd, size_t initrd_len, const char *cmdline,
				  struct boot_entry *out, struct err *e);
/* Read kernel and initrd files (bounded by guest RAM) and hand them to load. */
int linux_load_files(struct guest_mem *gm, const char *kernel, const char *initrd,
		     const char *cmdline, linux_image_loader load, struct boot_entry *out,
		     struct err *e);
int bzimage_load(struct guest_mem *gm, const char *kernel, const char *initrd,
		 const char *cmdline, struct boot_entry *out, struct err *e);
/* Same from buffers; initrd may be NULL with initrd_len 0. */
int bzimage_load_image(struct guest_mem *gm, const uint8_t *kernel, size_t kernel_len,
		       const uint8_t *initrd, size_t initrd_len, const char *cmdline,
		       struct boot_entry *out, struct err *e);

#endif
