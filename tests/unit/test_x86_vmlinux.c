/*
 * The ELF vmlinux loader against a synthetic kernel: an ELF64 x86-64
 * executable linked high (virtual 0xffffffff81000000, physical 16 MiB)
 * with a "Linux" note, as the kernel's build makes it. Checks what lands
 * in guest RAM (segment, bss, zero page, command line, initrd), the entry,
 * and that every broken form (segment outside RAM or on the loader's pages,
 * entry outside the segments, wrong machine, no note, hostile note sizes,
 * truncation) is refused before guest RAM is touched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/stream.h"
#include "vmm/guestmem.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/bzimage.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/vmlinux.h"

#define MiB (1ULL << 20)
#define RAM (64 * MiB)

#define VX_PHOFF    64
#define VX_NOTE_OFF 0x100
#define VX_NOTE_LEN 24              /* 12 + "Linux\0" padded to 8 + 4 */
#define VX_SEG_OFF  0x200
#define VX_SEG_FILE 0x100
#define VX_SEG_MEM  0x3000
#define VX_LEN      (VX_SEG_OFF + VX_SEG_FILE)
#define VX_PADDR    (16 * MiB)
#define VX_VADDR    0xffffffff81000000ULL
#define VX_CANARY   0xee

static int ram_setup(void **state)
{
	struct guest_mem *gm = calloc(1, sizeof(*gm));
	struct err e;
	assert_non_null(gm);
	assert_int_equal(gmem_init(gm, RAM, &e), 0);
	/* Paint where the segment goes so a refused load shows it wrote nothing. */
	memset(gmem_ptr(gm, VX_PADDR, VX_SEG_MEM), VX_CANARY, VX_SEG_MEM);
	*state = gm;
	return 0;
}

static int ram_teardown(void **state)
{
	gmem_destroy(*state);
	free(*state);
	return 0;
}

/* The synthetic vmlinux: PT_LOAD (text + bss) and PT_NOTE ("Linux"). */
static uint8_t *vx_image(uint64_t paddr, uint64_t vaddr, uint64_t entry)
{
	uint8_t *img = calloc(1, VX_LEN);
	uint8_t *ph = img + VX_PHOFF, *note = img + VX_NOTE_OFF;

	assert_non_null(img);
	memcpy(img, "\x7f" "ELF", 4);
	img[4] = 2;                     /* ELFCLASS64 */
	img[5] = 1;                     /* little-endian */
	img[6] = 1;
	le_put_u16(img + 16, 2);        /* ET_EXEC */
	le_put_u16(img + 18, 62);       /* EM_X86_64 */
	le_put_u32(img + 20, 1);
	le_put_u64(img + 24, entry);
	le_put_u64(img + 32, VX_PHOFF);
	le_put_u16(img + 52, 64);
	le_put_u16(img + 54, 56);
	le_put_u16(img + 56, 2);

	le_put_u32(ph, 1);              /* PT_LOAD, R+X */
	le_put_u32(ph + 4, 5);
	le_put_u64(ph + 8, VX_SEG_OFF);
	le_put_u64(ph + 16, vaddr);
	le_put_u64(ph + 24, paddr);
	le_put_u64(ph + 32, VX_SEG_FILE);
	le_put_u64(ph + 40, VX_SEG_MEM);
	le_put_u64(ph + 48, 0x200000);

	ph += 56;
	le_put_u32(ph, 4);              /* PT_NOTE */
	le_put_u64(ph + 8, VX_NOTE_OFF);
	le_put_u64(ph + 16, vaddr + 0x1000);
	le_put_u64(ph + 24, paddr + 0x1000);
	le_put_u64(ph + 32, VX_NOTE_LEN);
	le_put_u64(ph + 40, VX_NOTE_LEN);
	le_put_u64(ph + 48, 4);

	le_put_u32(note, 6);            /* namesz */
	le_put_u32(note + 4, 4);        /* descsz */
	le_put_u32(note + 8, 0x100);    /* LINUX_ELFNOTE_BUILD_SALT */
	memcpy(note + 12, "Linux", 6);
	le_put_u32(note + 20, 0x12345678);

	for (int i = 0; i < VX_SEG_FILE; i++)
		img[VX_SEG_OFF + i] = (uint8_t)(0x90 + i);
	return img;
}

static void assert_untouched(struct guest_mem *gm)
{
	const uint8_t *p = gmem_ptr(gm, VX_PADDR, VX_SEG_MEM);
	for (int i = 0; i < VX_SEG_MEM; i++)
		assert_int_equal(p[i], VX_CANARY);
}

static void test_vmlinux_good(void **state)
{
	struct guest_mem *gm = *state;
	struct boot_entry be;
	struct err e;
	uint8_t *k = vx_image(VX_PADDR, VX_VADDR, VX_VADDR + 0x40);
	uint8_t initrd[0x2345];
	const char *cl = "console=ttyS0 nokaslr";

	assert_true(vmlinux_is_linux(k, VX_LEN));
	memset(initrd, 0x5c, sizeof(initrd));
	assert_int_equal(vmlinux_load_image(gm, k, VX_LEN, initrd, sizeof(initrd), cl, &be, &e), 0);

	/* virtual entry -> physical: e_entry - (p_vaddr - p_paddr) */
	assert_true(be.rip == VX_PADDR + 0x40);
	assert_int_equal(be.mode, BOOT_MODE_LONG64);
	assert_true(be.rsi == LAYOUT_ZERO_PAGE);
	assert_true(be.cr3 == LAYOUT_PML4);

	const uint8_t *seg = gmem_ptr(gm, VX_PADDR, VX_SEG_MEM);
	assert_memory_equal(seg, k + VX_SEG_OFF, VX_SEG_FILE);
	for (int i = VX_SEG_FILE; i < VX_SEG_MEM; i++)
		assert_int_equal(seg[i], 0); /* bss cleared */

	const uint8_t *zp = gmem_ptr(gm, LAYOUT_ZERO_PAGE, 4096);
	assert_int_equal(le_get_u16(zp + BZ_BOOT_FLAG), 0xaa55);
	assert_memory_equal(zp + BZ_HEADER, "HdrS", 4);
	assert_int_equal(le_get_u16(zp + BZ_VERSION), VMLINUX_BOOT_VERSION);
	assert_int_equal(zp[BZ_TYPE_OF_LOADER], 0xff);
	assert_true(zp[BZ_LOADFLAGS] & BZ_LOADED_HIGH);
	assert_int_equal(le_get_u32(zp + BZ_KERNEL_ALIGNMENT), VMLINUX_KERNEL_ALIGN);
	assert_true(le_get_u64(zp + BZ_PREF_ADDRESS) == VX_PADDR);
	assert_int_equal(le_get_u32(zp + BZ_INIT_SIZE), VX_SEG_MEM);
	assert_true(le_get_u32(zp + BZ_CMD_LINE_PTR) == LAYOUT_CMDLINE);
	assert_string_equal((const char *)gmem_ptr(gm, LAYOUT_CMDLINE, 64), cl);

	/* e820: low RAM, EBDA..1 MiB reserved, 1 MiB..end */
	assert_int_equal(zp[BZ_E820_ENTRIES], 3);
	assert_true(le_get_u64(zp + BZ_E820_TABLE + 40) == LAYOUT_HIMEM_START);
	assert_true(le_get_u64(zp + BZ_E820_TABLE + 48) == RAM - LAYOUT_HIMEM_START);
	assert_int_equal(le_get_u32(zp + BZ_E820_TABLE + 56), 1);

	/* initrd at the highest 1 MiB boundary below the end of RAM */
	uint64_t rd = le_get_u32(zp + BZ_RAMDISK_IMAGE);
	assert_true(rd == ((RAM - sizeof(initrd)) & ~(MiB - 1)));
	assert_int_equal(le_get_u32(zp + BZ_RAMDISK_SIZE), sizeof(initrd));
	assert_memory_equal(gmem_ptr(gm, rd, sizeof(initrd)), initrd, sizeof(initrd));
	free(k);
}

/* Debian's vmlinux gives e_entry as a physical address (phys_startup_64). */
static void test_vmlinux_physical_entry(void **state)
{
	struct boot_entry be;
	struct err e;
	uint8_t *k = vx_image(VX_PADDR, VX_VADDR, VX_PADDR);

	assert_int_equal(vmlinux_load_image(*state, k, VX_LEN, NULL, 0, NULL, &be, &e), 0);
	assert_true(be.rip == VX_PADDR);
	assert_int_equal(le_get_u32((uint8_t *)gmem_ptr(*state, LAYOUT_ZERO_PAGE, 4096) +
				    BZ_RAMDISK_SIZE), 0);
	free(k);
}

/* Refused, with a message naming why (want), and RAM left as it was. */
static void expect_refused(struct guest_mem *gm, const uint8_t *k, size_t len,
			   const uint8_t *initrd, size_t ilen, const char *cl, const char *want)
{
	struct boot_entry be;
	struct err e;

	assert_int_equal(vmlinux_load_image(gm, k, len, initrd, ilen, cl, &be, &e), -1);
	if (!strstr(e.msg, want))
		fail_msg("error '%s' does not mention '%s'", e.msg, want);
	assert_untouched(gm);
}

static void test_vmlinux_segment_outside_ram(void **state)
{
	uint8_t *k = vx_image(RAM - 0x1000, VX_VADDR, VX_VADDR); /* bss runs past RAM */
	expect_refused(*state, k, VX_LEN, NULL, 0, NULL, "not in guest RAM");
	free(k);
	k = vx_image(128 * MiB, VX_VADDR, VX_VADDR);
	expect_refused(*state, k, VX_LEN, NULL, 0, NULL, "not in guest RAM");
	free(k);
	/* On the loader's own pages (zero page at 0x7000). */
	k = vx_image(0x6000, VX_VADDR, VX_VADDR);
	expect_refused(*state, k, VX_LEN, NULL, 0, NULL, "overlaps loader data");
	free(k);
	/* An address that wraps. */
	k = vx_image(UINT64_MAX - 0x1000, VX_VADDR, VX_VADDR);
	expect_refused(*state, k, VX_LEN, NULL, 0, NULL, "beyond");
	free(k);
}

static void test_vmlinux_entry_outside(void **state)
{
	uint8_t *k = vx_image(VX_PADDR, VX_VADDR, VX_VADDR + VX_SEG_MEM);
	expect_refused(*state, k, VX_LEN, NULL, 0, NULL, "outside every segment");
	free(k);
	k = vx_image(VX_PADDR, VX_VADDR, 0);
	expect_refused(*state, k, VX_LEN, NULL, 0, NULL, "outside every segment");
	free(k);
}

static void test_vmlinux_not_linux(void **state)
{
	uint8_t *k = vx_image(VX_PADDR, VX_VADDR, VX_VADDR);

	le_put_u16(k + 18, 3);          /* EM_386 */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	expect_refused(*state, k, VX_LEN, NULL, 0, NULL, "not an x86-64 Linux");
	le_put_u16(k + 18, 62);
	le_put_u16(k + 16, 3);          /* ET_DYN */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	le_put_u16(k + 16, 2);
	k[4] = 1;                       /* ELFCLASS32 */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	k[4] = 2;
	memcpy(k + VX_NOTE_OFF + 12, "Xen\0\0", 6); /* an ELF, but not Linux's */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	expect_refused(*state, k, VX_LEN, NULL, 0, NULL, "no \"Linux\" note");
	free(k);
}

static void test_vmlinux_hostile_notes(void **state)
{
	uint8_t *k = vx_image(VX_PADDR, VX_VADDR, VX_VADDR);
	uint8_t *ph = k + VX_PHOFF + 56;

	le_put_u32(k + VX_NOTE_OFF, 0xfffffffe);       /* namesz wraps when padded */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	le_put_u32(k + VX_NOTE_OFF, 6);
	le_put_u32(k + VX_NOTE_OFF + 4, 0xffffffff);   /* descsz past the segment */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	le_put_u32(k + VX_NOTE_OFF + 4, 4);
	le_put_u64(ph + 8, UINT64_MAX - 4);            /* note offset wraps */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	le_put_u64(ph + 8, VX_NOTE_OFF);
	le_put_u64(ph + 32, UINT64_MAX);               /* note size absurd */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	le_put_u64(ph + 32, VX_NOTE_LEN);
	le_put_u64(k + 32, UINT64_MAX - 8);            /* phoff wraps */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	le_put_u64(k + 32, VX_PHOFF);
	le_put_u16(k + 56, 0xffff);                    /* phnum absurd */
	assert_false(vmlinux_is_linux(k, VX_LEN));
	le_put_u16(k + 56, 2);
	assert_true(vmlinux_is_linux(k, VX_LEN));
	expect_refused(*state, NULL, 0, NULL, 0, NULL, "not an x86-64 Linux");
	free(k);
}

static void test_vmlinux_truncated(void **state)
{
	uint8_t *k = vx_image(VX_PADDR, VX_VADDR, VX_VADDR);

	/* Every shorter length, each in its own exact-size buffer so ASan
	 * catches a read past the end. */
	for (size_t len = 0; len < VX_LEN; len++) {
		uint8_t *t = malloc(len ? len : 1);
		assert_non_null(t);
		memcpy(t, k, len);
		/* Cut before the note: not recognized; after: segment data missing. */
		expect_refused(*state, t, len, NULL, 0, NULL,
			       len < VX_NOTE_OFF + VX_NOTE_LEN ? "no \"Linux\" note" : "past end of file");
		free(t);
	}
	free(k);
}

static void test_vmlinux_plan_refused(void **state)
{
	uint8_t *k = vx_image(VX_PADDR, VX_VADDR, VX_VADDR);
	char cl[VMLINUX_CMDLINE_SIZE + 2];
	size_t big = RAM - 16 * MiB;    /* would have to start below the kernel's end */
	uint8_t *rd = calloc(1, big);

	memset(cl, 'x', sizeof(cl) - 1);
	cl[sizeof(cl) - 1] = 0;
	expect_refused(*state, k, VX_LEN, NULL, 0, cl, "command line");
	assert_non_null(rd);
	expect_refused(*state, k, VX_LEN, rd, big, NULL, "does not fit");
	free(rd);
	free(k);
}

static void test_vmlinux_probe_file(void **state)
{
	char path[] = "/tmp/ferry-vmlinux-XXXXXX";
	uint8_t *k = vx_image(VX_PADDR, VX_VADDR, VX_VADDR);
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, k, VX_LEN), VX_LEN);
	assert_true(vmlinux_probe_file(path));
	/* Same file cut short of its note: not recognized. */
	assert_int_equal(ftruncate(fd, VX_NOTE_OFF + 8), 0);
	assert_false(vmlinux_probe_file(path));
	close(fd);
	unlink(path);
	assert_false(vmlinux_probe_file(path));
	assert_false(vmlinux_probe_file("/"));
	free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vmlinux_good, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_vmlinux_physical_entry, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_vmlinux_segment_outside_ram, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_vmlinux_entry_outside, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_vmlinux_not_linux, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_vmlinux_hostile_notes, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_vmlinux_truncated, ram_setup, ram_teardown),
		cmocka_unit_test_setup_teardown(test_vmlinux_plan_refused, ram_setup, ram_teardown),
		cmocka_unit_test(test_vmlinux_probe_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
