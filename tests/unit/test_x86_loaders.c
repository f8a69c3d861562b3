/*
 * Kernel loaders against synthetic images: a multiboot ELF32 (and a.out
 * kludge) and a bzImage header, each in a good form and in the broken
 * forms a hostile or damaged file takes. Checks what lands in guest RAM
 * (segments, bss, multiboot info, zero page, page tables) and the entry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream.h"
#include "vmm/guestmem.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/bzimage.h"
#include "vmm/x86/e820.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/multiboot.h"

#define MiB (1ULL << 20)
#define RAM (64 * MiB)

static int ram_setup(void **state)
{
	struct guest_mem *gm = calloc(1, sizeof(*gm));
	struct err e;
	assert_non_null(gm);
	assert_int_equal(gmem_init(gm, RAM, &e), 0);
	*state = gm;
	return 0;
}

static int ram_teardown(void **state)
{
	gmem_destroy(*state);
	free(*state);
	return 0;
}

/* --- multiboot --- */

#define MB_IMG_SIZE  0x1200
#define MB_HDR_OFF   0x100
#define MB_SEG_OFF   0x1000
#define MB_SEG_FILE  0x100
#define MB_SEG_MEM   0x2000
#define MB_PADDR     0x200000u

static void mb_header(uint8_t *img, uint32_t flags)
{
	le_put_u32(img + MB_HDR_OFF, MULTIBOOT_HEADER_MAGIC);
	le_put_u32(img + MB_HDR_OFF + 4, flags);
	le_put_u32(img + MB_HDR_OFF + 8, (uint32_t)(0 - MULTIBOOT_HEADER_MAGIC - flags));
}

/* ELF32 with one PT_LOAD of MB_SEG_FILE bytes (0xa5) + bss at paddr. */
static uint8_t *mb_elf(uint32_t paddr, uint32_t vaddr, uint32_t entry)
{
	uint8_t *img = calloc(1, MB_IMG_SIZE);
	uint8_t *ph = img + 52;

	memcpy(img, "\x7f" "ELF", 4);
	img[4] = 1;                 /* ELFCLASS32 */
	img[5] = 1;                 /* little-endian */
	img[6] = 1;
	le_put_u16(img + 16, 2);    /* ET_EXEC */
	le_put_u16(img + 18, 3);    /* EM_386 */
	le_put_u32(img + 20, 1);
	le_put_u32(img + 24, entry);
	le_put_u32(img + 28, 52);   /* phoff */
	le_put_u16(img + 40, 52);
	le_put_u16(img + 42, 32);
	le_put_u16(img + 44, 1);
	le_put_u32(ph, 1);          /* PT_LOAD */
	le_put_u32(ph + 4, MB_SEG_OFF);
	le_put_u32(ph + 8, vaddr);
	le_put_u32(ph + 12, paddr);
	le_put_u32(ph + 16, MB_SEG_FILE);
	le_put_u32(ph + 20, MB_SEG_MEM);
	memset(img + MB_SEG_OFF, 0xa5, MB_SEG_FILE);
	mb_header(img, 0x3);        /* page-align modules, want memory info */
	return img;
}

static void test_multiboot_elf_good(void **state)
{
	struct guest_mem *gm = *state;
	struct boot_entry be;
	struct e820_map map;
	struct err e;
	uint8_t *img = mb_elf(MB_PADDR, MB_PADDR, MB_PADDR + 0x10);

	/* Dirty the bss first: the loader must zero it. */
	memset(gmem_ptr(gm, MB_PADDR, MB_SEG_MEM), 0x11, MB_SEG_MEM);
	assert_int_equal(multiboot_load_image(gm, img, MB_IMG_SIZE, "console=ttyS0 x", &be, &e), 0);
	assert_int_equal(be.mode, BOOT_MODE_PROT32);
	assert_true(be.rip == MB_PADDR + 0x10);
	assert_true(be.rax == 0x2BADB002);
	assert_true(be.rbx == LAYOUT_MB_INFO);
	assert_true(be.cr3 == 0 && be.gdt_base == LAYOUT_BOOT_GDT);

	uint8_t *seg = gmem_ptr(gm, MB_PADDR, MB_SEG_MEM);
	assert_int_equal(seg[0], 0xa5);
	assert_int_equal(seg[MB_SEG_FILE - 1], 0xa5);
	assert_int_equal(seg[MB_SEG_FILE], 0);
	assert_int_equal(seg[MB_SEG_MEM - 1], 0);

	uint8_t *mbi = gmem_ptr(gm, LAYOUT_MB_INFO, 0x100);
	uint32_t flags = le_get_u32(mbi + MBI_FLAGS);
	assert_true(flags & MBI_FLAG_MEM);
	assert_true(flags & MBI_FLAG_MMAP);
	assert_true(flags & MBI_FLAG_CMDLINE);
	assert_int_equal(le_get_u32(mbi + MBI_MEM_LOWER), 639);
	assert_int_equal(le_get_u32(mbi + MBI_MEM_UPPER), (RAM - MiB) / 1024);
	assert_string_equal((char *)gmem_ptr(gm, le_get_u32(mbi + MBI_CMDLINE), 16), "console=ttyS0 x");

	/* mmap == e820 */
	assert_int_equal(e820_build(gm, &map, &e), 0);
	uint32_t mlen = le_get_u32(mbi + MBI_MMAP_LENGTH);
	uint8_t *mm = gmem_ptr(gm, le_get_u32(mbi + MBI_MMAP_ADDR), mlen);
	assert_int_equal(mlen, map.n * 24);
	for (int i = 0; i < map.n; i++, mm += 24) {
		assert_int_equal(le_get_u32(mm), 20);
		assert_true(le_get_u64(mm + 4) == map.e[i].addr);
		assert_true(le_get_u64(mm + 12) == map.e[i].size);
		assert_int_equal(le_get_u32(mm + 20), map.e[i].type);
	}
	/* 32-bit flat code descriptor in the boot GDT. */
	assert_true(le_get_u64(gmem_ptr(gm, LAYOUT_BOOT_GDT + 8, 8)) == 0x00cf9b000000ffffULL);
	free(img);
}

static void test_multiboot_higher_half_entry(void **state)
{
	struct guest_mem *gm = *state;
	struct boot_entry be;
	struct err e;
	uint8_t *img = mb_elf(MB_PADDR, 0xc0200000u, 0xc0200020u);

	assert_int_equal(multiboot_load_image(gm, img, MB_IMG_SIZE, NULL, &be, &e), 0);
	assert_true(be.rip == MB_PADDR + 0x20);
	free(img);
}

static void expect_fail(struct guest_mem *gm, const uint8_t *img, size_t len, const char *what)
{
	struct boot_entry be;
	struct err e;

	assert_int_equal(multiboot_load_image(gm, img, len, NULL, &be, &e), -1);
	if (!strstr(e.msg, what))
		fail_msg("error \"%s\" does not mention \"%s\"", e.msg, what);
}

static void test_multiboot_bad(void **state)
{
	struct guest_mem *gm = *state;
	uint8_t *img = mb_elf(MB_PADDR, MB_PADDR, MB_PADDR);

	/* bad magic: no header anywhere */
	le_put_u32(img + MB_HDR_OFF, 0x1BADB003);
	expect_fail(gm, img, MB_IMG_SIZE, "no multiboot header");
	/* bad checksum */
	mb_header(img, 0x3);
	le_put_u32(img + MB_HDR_OFF + 8, 0);
	expect_fail(gm, img, MB_IMG_SIZE, "checksum");
	/* unknown required feature bit */
	mb_header(img, 0x8);
	expect_fail(gm, img, MB_IMG_SIZE, "unknown features");
	mb_header(img, 0x3);
	/* truncated: segment data past the end of the file */
	expect_fail(gm, img, MB_SEG_OFF + 0x10, "past end of file");
	/* truncated just after the multiboot header */
	expect_fail(gm, img, MB_HDR_OFF + 12, "past end of file");
	/* program headers claimed beyond the file */
	le_put_u32(img + 28, 0x2000);
	expect_fail(gm, img, MB_IMG_SIZE, "program headers past end");
	le_put_u32(img + 28, 52);
	free(img);

	/* segment beyond guest RAM, and one wrapping the address space */
	img = mb_elf(RAM - 0x1000, RAM - 0x1000, RAM - 0x1000);
	expect_fail(gm, img, MB_IMG_SIZE, "not in guest RAM");
	free(img);
	img = mb_elf(0xfffff000u, 0xfffff000u, 0xfffff000u);
	expect_fail(gm, img, MB_IMG_SIZE, "segment 0");
	free(img);
	/* over the loader's own info page */
	img = mb_elf(LAYOUT_MB_INFO, LAYOUT_MB_INFO, LAYOUT_MB_INFO);
	expect_fail(gm, img, MB_IMG_SIZE, "overlaps loader data");
	free(img);
	/* entry outside every segment */
	img = mb_elf(MB_PADDR, MB_PADDR, 0x900000);
	expect_fail(gm, img, MB_IMG_SIZE, "entry point");
	free(img);
	/* filesz > memsz */
	img = mb_elf(MB_PADDR, MB_PADDR, MB_PADDR);
	le_put_u32(img + 52 + 20, 0x10);
	expect_fail(gm, img, MB_IMG_SIZE, "exceeds memory size");
	/* not ELF and no address fields */
	memset(img, 0, 4);
	expect_fail(gm, img, MB_IMG_SIZE, "not ELF");
	free(img);
}

static void test_multiboot_aout(void **state)
{
	struct guest_mem *gm = *state;
	struct boot_entry be;
	struct err e;
	uint8_t *img = calloc(1, MB_IMG_SIZE);
	uint32_t load = 0x300000;

	/* The file maps 1:1 from load_addr; the header sits 0x100 in. */
	mb_header(img, 0x10000 | 0x2);
	le_put_u32(img + MB_HDR_OFF + 12, load + MB_HDR_OFF);   /* header_addr */
	le_put_u32(img + MB_HDR_OFF + 16, load);                /* load_addr */
	le_put_u32(img + MB_HDR_OFF + 20, load + 0x1000);       /* load_end_addr */
	le_put_u32(img + MB_HDR_OFF + 24, load + 0x3000);       /* bss_end_addr */
	le_put_u32(img + MB_HDR_OFF + 28, load + 0x200);        /* entry */
	img[0x200] = 0xf4;
	img[0x1000] = 0x77; /* beyond load_end: must not be loaded */
	memset(gmem_ptr(gm, load, 0x3000), 0x11, 0x3000);
	assert_int_equal(multiboot_load_image(gm, img, MB_IMG_SIZE, NULL, &be, &e), 0);
	assert_true(be.rip == load + 0x200);
	uint8_t *p = gmem_ptr(gm, load, 0x3000);
	assert_int_equal(p[0x200], 0xf4);
	assert_int_equal(p[0x1000], 0);
	assert_int_equal(p[0x2fff], 0);

	/* load_end past the end of the file */
	le_put_u32(img + MB_HDR_OFF + 20, load + 0x10000);
	assert_int_equal(multiboot_load_image(gm, img, MB_IMG_SIZE, NULL, &be, &e), -1);
	/* header_addr claims the header is further in than the file allows */
	le_put_u32(img + MB_HDR_OFF + 20, load + 0x1000);
	le_put_u32(img + MB_HDR_OFF + 16, load - 0x1000);
	assert_int_equal(multiboot_load_image(gm, img, MB_IMG_SIZE, NULL, &be, &e), -1);
	free(img);
}

/* --- bzImage --- */

#define BZ_SECTS    4
#define BZ_SETUP    ((BZ_SECTS + 1) * 512)
#define BZ_PAYLOAD  0x3000
#define BZ_LEN      (BZ_SETUP + BZ_PAYLOAD)
#define BZ_INIT     (8 * MiB)

static uint8_t *bz_image(void)
{
	uint8_t *k = calloc(1, BZ_LEN);

	k[BZ_SETUP_SECTS] = BZ_SECTS;
	le_put_u16(k + BZ_BOOT_FLAG, 0xaa55);
	k[BZ_JUMP] = 0xeb;
	k[BZ_JUMP + 1] = 0x6a;                      /* header ends at 0x26c */
	memcpy(k + BZ_HEADER, "HdrS", 4);
	le_put_u16(k + BZ_VERSION, 0x020f);
	k[BZ_LOADFLAGS] = BZ_LOADED_HIGH;
	le_put_u32(k + BZ_INITRD_ADDR_MAX, 0x7fffffff);
	le_put_u32(k + BZ_KERNEL_ALIGNMENT, 0x200000);
	k[BZ_RELOCATABLE] = 1;
	le_put_u16(k + BZ_XLOADFLAGS, BZ_XLF_KERNEL_64 | 0x2);
	le_put_u32(k + BZ_CMDLINE_SIZE, 2047);
	le_put_u64(k + BZ_PREF_ADDRESS, 0x1000000);
	le_put_u32(k + BZ_INIT_SIZE, BZ_INIT);
	for (int i = 0; i < BZ_PAYLOAD; i++)
		k[BZ_SETUP + i] = (uint8_t)(i * 7);
	return k;
}

static void test_bzimage_good(void **state)
{
	struct guest_mem *gm = *state;
	struct boot_entry be;
	struct e820_map map;
	struct err e;
	uint8_t *k = bz_image();
	uint8_t initrd[0x1234];

	memset(initrd, 0x5c, sizeof(initrd));
	assert_int_equal(bzimage_load_image(gm, k, BZ_LEN, initrd, sizeof(initrd),
					    "console=ttyS0 panic=-1", &be, &e), 0);
	assert_int_equal(be.mode, BOOT_MODE_LONG64);
	assert_true(be.rip == LAYOUT_HIMEM_START + 0x200);
	assert_true(be.rsi == LAYOUT_ZERO_PAGE);
	assert_true(be.cr3 == LAYOUT_PML4);
	assert_memory_equal(gmem_ptr(gm, LAYOUT_HIMEM_START, BZ_PAYLOAD), k + BZ_SETUP, BZ_PAYLOAD);

	uint8_t *zp = gmem_ptr(gm, LAYOUT_ZERO_PAGE, 4096);
	assert_memory_equal(zp + BZ_HEADER, "HdrS", 4);
	assert_int_equal(zp[BZ_TYPE_OF_LOADER], 0xff);
	assert_true(zp[BZ_LOADFLAGS] & BZ_CAN_USE_HEAP);
	assert_true(le_get_u32(zp + BZ_CMD_LINE_PTR) == LAYOUT_CMDLINE);
	assert_string_equal((char *)gmem_ptr(gm, LAYOUT_CMDLINE, 32), "console=ttyS0 panic=-1");
	/* initrd at the highest 1 MiB boundary that fits below RAM end */
	uint32_t rd = le_get_u32(zp + BZ_RAMDISK_IMAGE);
	assert_true(rd == RAM - MiB);
	assert_int_equal(le_get_u32(zp + BZ_RAMDISK_SIZE), sizeof(initrd));
	assert_memory_equal(gmem_ptr(gm, rd, sizeof(initrd)), initrd, sizeof(initrd));
	/* e820 table */
	assert_int_equal(e820_build(gm, &map, &e), 0);
	assert_int_equal(zp[BZ_E820_ENTRIES], map.n);
	for (int i = 0; i < map.n; i++) {
		uint8_t *p = zp + BZ_E820_TABLE + 20 * i;
		assert_true(le_get_u64(p) == map.e[i].addr);
		assert_true(le_get_u64(p + 8) == map.e[i].size);
		assert_int_equal(le_get_u32(p + 16), map.e[i].type);
	}
	/* page tables: PML4[0] -> PDPT, PD maps 2 MiB pages identity */
	assert_true((le_get_u64(gmem_ptr(gm, LAYOUT_PML4, 8)) & ~0xfffULL) == LAYOUT_PDPT);
	assert_true(le_get_u64(gmem_ptr(gm, LAYOUT_PD + 8 * 5, 8)) == ((5ULL << 21) | 0x83));
	assert_true(le_get_u64(gmem_ptr(gm, LAYOUT_PD + 3 * 4096 + 8 * 511, 8)) ==
		    ((2047ULL << 21) | 0x83));
	assert_true(le_get_u64(gmem_ptr(gm, LAYOUT_BOOT_GDT + 8, 8)) == 0x00af9b000000ffffULL);
	/* ...and never inside the buffer the kernel decompresses in: from
	 * pref_address (16 MiB) for init_size (8 MiB) here, so an initrd of
	 * 40 MiB still fits above 24 MiB, one of 41 MiB does not */
	{
		uint8_t *big = calloc(1, 41 * MiB);
		assert_int_equal(bzimage_load_image(gm, k, BZ_LEN, big, 40 * MiB, "", &be, &e), 0);
		assert_true(le_get_u32(zp + BZ_RAMDISK_IMAGE) >= 24 * MiB);
		assert_int_equal(bzimage_load_image(gm, k, BZ_LEN, big, 41 * MiB, "", &be, &e), -1);
		assert_non_null(strstr(e.msg, "does not fit between the kernel (ends 0x1800000)"));
		free(big);
	}
	free(k);
}

static void expect_bz_fail(struct guest_mem *gm, const uint8_t *k, size_t len, const char *what)
{
	struct boot_entry be;
	struct err e;

	assert_int_equal(bzimage_load_image(gm, k, len, NULL, 0, "", &be, &e), -1);
	if (!strstr(e.msg, what))
		fail_msg("error \"%s\" does not mention \"%s\"", e.msg, what);
}

static void test_bzimage_bad(void **state)
{
	struct guest_mem *gm = *state;
	uint8_t *k = bz_image();

	expect_bz_fail(gm, k, 0x250, "too short");
	expect_bz_fail(gm, k, BZ_SETUP + 0x100, "setup sectors");
	le_put_u16(k + BZ_VERSION, 0x020b);
	expect_bz_fail(gm, k, BZ_LEN, "older than 2.12");
	le_put_u16(k + BZ_VERSION, 0x020f);
	le_put_u16(k + BZ_XLOADFLAGS, 0);
	expect_bz_fail(gm, k, BZ_LEN, "64-bit");
	le_put_u16(k + BZ_XLOADFLAGS, 1);
	memcpy(k + BZ_HEADER, "HdrX", 4);
	expect_bz_fail(gm, k, BZ_LEN, "HdrS");
	memcpy(k + BZ_HEADER, "HdrS", 4);
	k[BZ_SETUP_SECTS] = 200;          /* setup larger than the file */
	expect_bz_fail(gm, k, BZ_LEN, "setup sectors");
	k[BZ_SETUP_SECTS] = BZ_SECTS;
	le_put_u32(k + BZ_INIT_SIZE, 0xf0000000u); /* wants more RAM than exists */
	expect_bz_fail(gm, k, BZ_LEN, "needs RAM");
	le_put_u32(k + BZ_INIT_SIZE, BZ_INIT);
	/* it decompresses at pref_address, not at the 1 MiB it is loaded at:
	 * 60 MiB + 8 MiB does not fit 64 MiB (at 1 MiB it would) */
	le_put_u64(k + BZ_PREF_ADDRESS, 60 * MiB);
	expect_bz_fail(gm, k, BZ_LEN, "needs RAM up to 0x4400000");
	le_put_u64(k + BZ_PREF_ADDRESS, 1ULL << 40);
	expect_bz_fail(gm, k, BZ_LEN, "pref_address");
	le_put_u64(k + BZ_PREF_ADDRESS, 0x1000000);
	le_put_u32(k + BZ_CMDLINE_SIZE, 4);
	{
		struct boot_entry be;
		struct err e;
		assert_int_equal(bzimage_load_image(gm, k, BZ_LEN, NULL, 0, "too long", &be, &e), -1);
		assert_non_null(strstr(e.msg, "command line"));
	}
	free(k);
}

static void test_bzimage_initrd_placement(void **state)
{
	struct err e;
	uint64_t a;
	(void)state;

	/* initrd_addr_max below RAM end bounds the placement. */
	assert_int_equal(bzimage_initrd_addr(3 * MiB, 0x37ffffff, 2048 * MiB, 16 * MiB, &a, &e), 0);
	assert_true(a == 0x38000000 - 3 * MiB);
	/* unaligned size rounds the start down to 1 MiB */
	assert_int_equal(bzimage_initrd_addr(MiB + 1, 0x7fffffff, 256 * MiB, 16 * MiB, &a, &e), 0);
	assert_true(a == 254 * MiB);
	/* does not fit above the kernel */
	assert_int_equal(bzimage_initrd_addr(60 * MiB, 0x7fffffff, 64 * MiB, 16 * MiB, &a, &e), -1);
	assert_non_null(strstr(e.msg, "does not fit"));
	assert_int_equal(bzimage_initrd_addr(0, 0x7fffffff, 64 * MiB, 16 * MiB, &a, &e), -1);
}

static void test_bzimage_initrd_too_big(void **state)
{
	struct guest_mem *gm = *state;
	struct boot_entry be;
	struct err e;
	uint8_t *k = bz_image();
	size_t big = RAM - 4 * MiB;
	uint8_t *rd = calloc(1, big);

	assert_non_null(rd);
	assert_int_equal(bzimage_load_image(gm, k, BZ_LEN, rd, big, "", &be, &e), -1);
	assert_non_null(strstr(e.msg, "initrd"));
	free(rd);
	free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_multiboot_elf_good, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_multiboot_higher_half_entry, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_multiboot_bad, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_multiboot_aout, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_bzimage_good, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_bzimage_bad, ram_setup, ram_teardown),
		cmocka_unit_test(test_bzimage_initrd_placement),
		cmocka_unit_test_setup_teardown(test_bzimage_initrd_too_big, ram_setup, ram_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
