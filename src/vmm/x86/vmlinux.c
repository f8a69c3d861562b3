/*
 * ELF vmlinux loader (see vmlinux.h). The file is hostile input: the
 * format probe reads headers and notes through bounds-checked reads, the
 * segments go through elfload's checks, and nothing is written to guest
 * RAM until segments, command line and initrd all fit.
 */
#include "vmm/x86/vmlinux.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/stream.h"
#include "vmm/x86/bzimage.h"
#include "vmm/x86/e820.h"
#include "vmm/x86/elfload.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/loadfile.h"

#define EHDR64_SIZE   64
#define PHDR64_SIZE   56
#define ET_EXEC       2
#define EM_X86_64     62
#define PT_NOTE       4
#define MAX_PHNUM     128
#define MAX_NOTE_SEG  (64 * 1024) /* Linux's .notes is a few hundred bytes */

/* Bytes of the image, from a buffer or a file, so one probe serves both
 * the loader (whole file in memory) and machine_boot (file not read yet). */
struct vsrc {
	const uint8_t *buf;
	int fd;
	uint64_t len;
};

static bool vsrc_read(const struct vsrc *s, uint64_t off, void *dst, size_t n)
{
	size_t done = 0;

	if (off > s->len || n > s->len - off)
		return false;
	if (s->buf) {
		memcpy(dst, s->buf + off, n);
		return true;
	}
	while (done < n) {
		ssize_t r = pread(s->fd, (uint8_t *)dst + done, n - done, (off_t)(off + done));
		if (r <= 0)
			return false;
		done += (size_t)r;
	}
	return true;
}

/* True if the notes in buf[0, len) include one owned by "Linux". */
static bool notes_have_linux(const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (len - off >= 12) {
		uint32_t namesz = le_get_u32(buf + off);
		uint32_t descsz = le_get_u32(buf + off + 4);
		/* Name and descriptor are each padded to 4 bytes; compute in
		 * 64 bits so hostile sizes cannot wrap. */
		uint64_t name_pad = ((uint64_t)namesz + 3) & ~3ULL;
		uint64_t desc_pad = ((uint64_t)descsz + 3) & ~3ULL;
		if (name_pad + desc_pad > len - off - 12)
			return false;
		if (namesz == 6 && memcmp(buf + off + 12, "Linux", 6) == 0)
			return true;
		off += 12 + (size_t)(name_pad + desc_pad);
	}
	return false;
}

static bool src_is_linux(const struct vsrc *s)
{
	uint8_t eh[EHDR64_SIZE];
	uint64_t phoff;
	uint32_t phnum;

	if (!vsrc_read(s, 0, eh, sizeof(eh)) || memcmp(eh, "\x7f" "ELF", 4) != 0)
		return false;
	if (eh[4] != 2 || eh[5] != 1 || le_get_u16(eh + 16) != ET_EXEC ||
	    le_get_u16(eh + 18) != EM_X86_64 || le_get_u16(eh + 54) != PHDR64_SIZE)
		return false;
	phoff = le_get_u64(eh + 32);
	phnum = le_get_u16(eh + 56);
	if (phnum == 0 || phnum > MAX_PHNUM)
		return false;
	for (uint32_t i = 0; i < phnum; i++) {
		uint8_t ph[PHDR64_SIZE];
		uint64_t off, size;
		uint8_t *notes;
		bool yes;

		if (phoff > s->len || !vsrc_read(s, phoff + (uint64_t)i * PHDR64_SIZE, ph, sizeof(ph)))
			return false;
		if (le_get_u32(ph) != PT_NOTE)
			continue;
		off = le_get_u64(ph + 8);
		size = le_get_u64(ph + 32);
		if (size == 0 || size > MAX_NOTE_SEG)
			continue;
		notes = malloc((size_t)size);
		if (!notes)
			return false;
		yes = vsrc_read(s, off, notes, (size_t)size) && notes_have_linux(notes, (size_t)size);
		free(notes);
		if (yes)
			return true;
	}
	return false;
}

bool vmlinux_is_linux(const uint8_t *img, size_t len)
{
	struct vsrc s = { .buf = img, .fd = -1, .len = len };
	return img && src_is_linux(&s);
}

bool vmlinux_probe_file(const char *path)
{
	struct stat st;
	struct vsrc s = { .buf = NULL };
	bool yes = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		s.fd = fd;
		s.len = (uint64_t)st.st_size;
		yes = src_is_linux(&s);
	}
	close(fd);
	return yes;
}

/* The setup header a bzImage would carry, for a kernel that has none:
 * boot_params bytes from BZ_SETUP_SECTS to BZ_HDR_MAX_END. Only what
 * startup_64 and setup_arch read matters; the rest states the truth
 * (where the kernel sits, that it is 64-bit and not to be relocated). */
static void make_header(uint8_t *zp, uint64_t lo, uint64_t hi)
{
	memset(zp, 0, BZ_HDR_MAX_END);
	le_put_u16(zp + BZ_BOOT_FLAG, 0xaa55);
	memcpy(zp + BZ_HEADER, "HdrS", 4);
	le_put_u16(zp + BZ_VERSION, VMLINUX_BOOT_VERSION);
	zp[BZ_LOADFLAGS] = BZ_LOADED_HIGH;
	le_put_u32(zp + BZ_INITRD_ADDR_MAX, VMLINUX_INITRD_ADDR_MAX);
	le_put_u32(zp + BZ_KERNEL_ALIGNMENT, VMLINUX_KERNEL_ALIGN);
	zp[BZ_RELOCATABLE] = 0; /* it runs where it was linked */
	le_put_u16(zp + BZ_XLOADFLAGS, BZ_XLF_KERNEL_64);
	le_put_u32(zp + BZ_CMDLINE_SIZE, VMLINUX_CMDLINE_SIZE);
	le_put_u64(zp + BZ_PREF_ADDRESS, lo);
	le_put_u32(zp + BZ_INIT_SIZE, (uint32_t)(hi - lo));
}

int vmlinux_load_image(struct guest_mem *gm, const uint8_t *kernel, size_t kernel_len,
		       const uint8_t *initrd, size_t initrd_len, const char *cmdline,
		       struct boot_entry *out, struct err *e)
{
	/* Segments must stay below the MMIO hole (the boot page tables map
	 * 4 GiB, the kernel's early code wants to be in low RAM) and off
	 * the loader's own pages below 1 MiB (zero page, page tables,
	 * command line, MP table). */
	struct elfload_limits lim = { LAYOUT_MMIO_HOLE_START, 0, LAYOUT_HIMEM_START };
	uint8_t hdr[BZ_HDR_MAX_END];
	struct elfload_result r;
	struct e820_map map;
	struct linux_boot lb;
	uint64_t initrd_addr;

	if (!vmlinux_is_linux(kernel, kernel_len))
		return err_set(e, "vmlinux: not an x86-64 Linux ELF executable (no \"Linux\" note)");
	if (e820_build(gm, &map, e) < 0)
		return -1;
	if (elfload_load_ex(NULL, &map, &lim, kernel, kernel_len, &r, e) < 0)
		return err_prefix(e, "vmlinux");
	make_header(hdr, r.lo, r.hi);
	memset(&lb, 0, sizeof(lb));
	lb.hdr = hdr + BZ_SETUP_SECTS;
	lb.hdr_len = BZ_HDR_MAX_END - BZ_SETUP_SECTS;
	lb.kernel_end = r.hi;
	lb.entry = r.entry;
	lb.initrd_addr_max = VMLINUX_INITRD_ADDR_MAX;
	lb.cmdline_size = VMLINUX_CMDLINE_SIZE;
	lb.cmdline = cmdline;
	lb.initrd = initrd;
	lb.initrd_len = initrd_len;
	if (bzimage_plan_boot(&lb, &map, &initrd_addr, e) < 0)
		return err_prefix(e, "vmlinux");
	if (elfload_load_ex(gm, &map, &lim, kernel, kernel_len, &r, e) < 0 ||
	    bzimage_write_boot(gm, &lb, &map, initrd_addr, out, e) < 0)
		return err_prefix(e, "vmlinux");
	return 0;
}

int vmlinux_load(struct guest_mem *gm, const char *kernel, const char *initrd,
		 const char *cmdline, struct boot_entry *out, struct err *e)
{
	return linux_load_files(gm, kernel, initrd, cmdline, vmlinux_load_image, out, e);
}
