/*
 * virtio-blk end to end without KVM: a fake VM (vm_fd -1, malloc'd RAM),
 * the real PCI bus and legacy transport driven through port I/O as a guest
 * driver would, against a temporary image file. Covers the data path,
 * range checks, flush, the OFD lock handoff, a broken guest, and the state
 * round trip onto a second "host".
 */
#include <fcntl.h>
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
#include "devices/pci.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "vmm/vm.h"

#define RAM_SIZE   (1u << 20)
#define RING_PFN   0x10
#define HDR_GPA    0x40000ULL
#define DATA_GPA   0x41000ULL
#define STATUS_GPA 0x50000ULL
#define IO         LAYOUT_PCI_IO_START /* slot 1's BAR */
#define SECTORS    64

struct fixture {
	struct vm *vm;
	char path[64];
	struct virtio_blk *blk;
	uint16_t avail_idx;
};

static struct vm *fake_vm(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct err e;

	assert_non_null(vm);
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem.memfd = -1;
	vm->mem.host = calloc(1, RAM_SIZE);
	vm->mem.ram_size = RAM_SIZE;
	vm->mem.nregions = 1;
	vm->mem.regions[0] = (struct gmem_region){ .gpa = 0, .size = RAM_SIZE };
	vm->mem.vmm_dirty = calloc(RAM_SIZE / GMEM_PAGE_SIZE / 64 + 1, 8);
	assert_non_null(vm->mem.host);
	assert_int_equal(pci_create(vm, &e), 0);
	return vm;
}

static void fake_vm_free(struct vm *vm)
{
	for (int i = vm->ndevices - 1; i >= 0; i--)
		if (vm->devices[i].destroy)
			vm->devices[i].destroy(vm->devices[i].opaque);
	free(vm->mem.host);
	free(vm->mem.vmm_dirty);
	free(vm);
}

static void out(struct vm *vm, uint16_t port, uint32_t size, uint32_t v)
{
	uint8_t d[4];
	le_put_u32(d, v);
	iobus_dispatch(&vm->pio, port, true, d, size);
}

static uint32_t in(struct vm *vm, uint16_t port, uint32_t size)
{
	uint8_t d[4] = { 0 };
	uint32_t v = 0;
	iobus_dispatch(&vm->pio, port, false, d, size);
	for (uint32_t i = size; i-- > 0;)
		v = (v << 8) | d[i];
	return v;
}

/* The legacy driver bring-up sequence. */
static void driver_init(struct vm *vm)
{
	uint32_t feat;

	out(vm, IO + VIRTIO_PCI_STATUS, 1, 0);
	out(vm, IO + VIRTIO_PCI_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	out(vm, IO + VIRTIO_PCI_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	feat = in(vm, IO + VIRTIO_PCI_HOST_FEATURES, 4);
	assert_true(feat & VIRTIO_BLK_F_FLUSH);
	out(vm, IO + VIRTIO_PCI_GUEST_FEATURES, 4, feat);
	out(vm, IO + VIRTIO_PCI_QUEUE_SEL, 2, 0);
	assert_int_equal(in(vm, IO + VIRTIO_PCI_QUEUE_NUM, 2), 256);
	out(vm, IO + VIRTIO_PCI_QUEUE_PFN, 4, RING_PFN);
	out(vm, IO + VIRTIO_PCI_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE |
	    VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct err e;
	int fd;

	assert_non_null(f);
	snprintf(f->path, sizeof(f->path), "/tmp/ferry-blk-test-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, SECTORS * 512), 0);
	close(fd);
	f->vm = fake_vm();
	if (virtio_blk_create(f->vm, 1, f->path, false, &e) < 0)
		fail_msg("create: %s", e.msg);
	f->blk = virtio_blk_find(f->vm, 0);
	assert_non_null(f->blk);
	driver_init(f->vm);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	fake_vm_free(f->vm);
	unlink(f->path);
	free(f);
	return 0;
}

static uint8_t *ram(struct vm *vm, uint64_t gpa)
{
	return vm->mem.host + gpa;
}

static void set_desc(struct vm *vm, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = ram(vm, ((uint64_t)RING_PFN << 12) + 16ULL * i);
	le_put_u64(d, addr);
	le_put_u32(d + 8, len);
	le_put_u16(d + 12, flags);
	le_put_u16(d + 14, next);
}

static void make_avail(struct vm *vm, uint16_t *avail_idx, uint16_t head)
{
	uint8_t *a = ram(vm, ((uint64_t)RING_PFN << 12) + 16 * 256);
	le_put_u16(a + 4 + 2 * (*avail_idx % 256), head);
	(*avail_idx)++;
	le_put_u16(a + 2, *avail_idx);
}

static uint16_t used_idx(struct vm *vm)
{
	return le_get_u16(ram(vm, ((uint64_t)RING_PFN << 12) + 0x2000 + 2));
}

/* Submit header [+ data] + status, kick, return the status byte. */
static int request(struct vm *vm, uint16_t *avail_idx, uint32_t type,
		   uint64_t sector, uint32_t len, bool dev_writes)
{
	uint8_t *h = ram(vm, HDR_GPA);
	uint16_t before = used_idx(vm);

	le_put_u32(h, type);
	le_put_u32(h + 4, 0);
	le_put_u64(h + 8, sector);
	*ram(vm, STATUS_GPA) = 0xee;
	set_desc(vm, 0, HDR_GPA, 16, VIRTQ_DESC_F_NEXT, len ? 1 : 2);
	if (len)
		set_desc(vm, 1, DATA_GPA, len,
			 VIRTQ_DESC_F_NEXT | (dev_writes ? VIRTQ_DESC_F_WRITE : 0), 2);
	set_desc(vm, 2, STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
	make_avail(vm, avail_idx, 0);
	out(vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
	if (used_idx(vm) != (uint16_t)(before + 1))
		return -1; /* not completed */
	return *ram(vm, STATUS_GPA);
}

static bool page_dirty(struct vm *vm, uint64_t gpa)
{
	uint64_t p = gpa >> GMEM_PAGE_SHIFT;
	return vm->mem.vmm_dirty[p / 64] & (1ULL << (p % 64));
}

/* A read that fails part-way (the image shrank under us) has already
 * put disk bytes into guest memory: IOERR to the guest, and the page
 * marked dirty all the same, or a move would leave it behind. */
static void test_partial_read_marks_dirty(void **state)
{
	struct fixture *f = *state;
	uint8_t pattern[512];
	int fd, st;

	for (unsigned i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7 + 3);
	fd = open(f->path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, pattern, sizeof(pattern), 3 * 512), sizeof(pattern));
	assert_int_equal(ftruncate(fd, 4 * 512), 0); /* ends after sector 3; capacity says more */
	close(fd);
	memset(ram(f->vm, DATA_GPA), 0, 1024);
	memset(f->vm->mem.vmm_dirty, 0, (RAM_SIZE / GMEM_PAGE_SIZE / 64 + 1) * 8);
	st = request(f->vm, &f->avail_idx, VIRTIO_BLK_T_IN, 3, 1024, true);
	assert_int_equal(st, VIRTIO_BLK_S_IOERR);
	assert_memory_equal(ram(f->vm, DATA_GPA), pattern, sizeof(pattern));
	assert_true(page_dirty(f->vm, DATA_GPA));
}

static void test_config(void **state)
{
	struct fixture *f = *state;
	uint64_t cap = in(f->vm, IO + VIRTIO_PCI_CONFIG, 4) |
		       (uint64_t)in(f->vm, IO + VIRTIO_PCI_CONFIG + 4, 4) << 32;

	assert_int_equal(cap, SECTORS);
	assert_int_equal(virtio_blk_capacity(f->blk), SECTORS);
	assert_string_equal(virtio_blk_path(f->blk), f->path);
	assert_true(virtio_blk_locked(f->blk));
	/* Legacy ids: 0x1af4:0x1001, subsystem 2 (block). */
	assert_int_equal(virtio_blk_dev(f->blk)->pci.cfg[2], 0x01);
	assert_int_equal(virtio_blk_dev(f->blk)->pci.cfg[PCI_SUBSYS_ID], 2);
	assert_int_equal(f->vm->devices[1].name[0], 'v');
	assert_string_equal(f->vm->devices[1].name, "virtio-blk.0");
}

static void test_write_read_back(void **state)
{
	struct fixture *f = *state;
	uint8_t pattern[1024], disk[1024];
	int fd;

	for (unsigned i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7 + 3);
	memcpy(ram(f->vm, DATA_GPA), pattern, sizeof(pattern));
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_OUT, 3, 1024, false),
			 VIRTIO_BLK_S_OK);
	fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, disk, sizeof(disk), 3 * 512), sizeof(disk));
	close(fd);
	assert_memory_equal(disk, pattern, sizeof(pattern));

	/* Interrupt pending; reading ISR acknowledges it. */
	assert_int_equal(in(f->vm, IO + VIRTIO_PCI_ISR, 1), VIRTIO_ISR_QUEUE);
	assert_int_equal(in(f->vm, IO + VIRTIO_PCI_ISR, 1), 0);

	memset(ram(f->vm, DATA_GPA), 0, sizeof(pattern));
	memset(f->vm->mem.vmm_dirty, 0, (RAM_SIZE / GMEM_PAGE_SIZE / 64 + 1) * 8);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_IN, 3, 1024, true),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(ram(f->vm, DATA_GPA), pattern, sizeof(pattern));
	/* Disk data, status byte and used ring were all written by us. */
	assert_true(page_dirty(f->vm, DATA_GPA));
	assert_true(page_dirty(f->vm, STATUS_GPA));
	assert_true(page_dirty(f->vm, ((uint64_t)RING_PFN << 12) + 0x2000));
	assert_false(page_dirty(f->vm, HDR_GPA));
	/* Used length: data + status. */
	assert_int_equal(le_get_u32(ram(f->vm, ((uint64_t)RING_PFN << 12) + 0x2000 + 4 + 8 + 4)),
			 1025);
}

static void test_out_of_range(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_IN, SECTORS - 1, 512, true),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_IN, SECTORS, 512, true),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_IN, SECTORS - 1, 1024, true),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_OUT, SECTORS, 512, false),
			 VIRTIO_BLK_S_IOERR);
	/* sector * 512 would overflow 64 bits. */
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_OUT,
				 0x0080000000000001ULL, 512, false),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_IN, UINT64_MAX, 512, true),
			 VIRTIO_BLK_S_IOERR);
	/* The image did not grow. */
	{
		int fd = open(f->path, O_RDONLY);
		assert_int_equal(lseek(fd, 0, SEEK_END), SECTORS * 512);
		close(fd);
	}
}

static void test_flush_id_unsupp(void **state)
{
	struct fixture *f = *state;
	struct err e;
	const char *base = strrchr(f->path, '/') + 1;

	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_FLUSH, 0, 0, false),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk_flush(f->blk, &e), 0);
	memset(ram(f->vm, DATA_GPA), 0, 32);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_GET_ID, 0, 20, true),
			 VIRTIO_BLK_S_OK);
	/* The id is at most 20 bytes; longer names are cut. */
	assert_memory_equal(ram(f->vm, DATA_GPA), base,
			    strlen(base) < 20 ? strlen(base) : 20);
	assert_int_equal(*ram(f->vm, DATA_GPA + 20), 0);
	assert_int_equal(request(f->vm, &f->avail_idx, 2 /* SCSI_CMD */, 0, 0, false),
			 VIRTIO_BLK_S_UNSUPP);
}

static void test_interrupt_suppressed(void **state)
{
	struct fixture *f = *state;
	uint8_t *avail_flags = ram(f->vm, ((uint64_t)RING_PFN << 12) + 16 * 256);

	in(f->vm, IO + VIRTIO_PCI_ISR, 1);
	le_put_u16(avail_flags, VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_FLUSH, 0, 0, false),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(in(f->vm, IO + VIRTIO_PCI_ISR, 1), 0);
}

static void test_lock(void **state)
{
	struct fixture *f = *state;
	struct vm *vm2 = fake_vm();
	struct err e;

	/* A second VM (another open file description) is refused. */
	assert_int_equal(virtio_blk_create(vm2, 1, f->path, false, &e), -1);
	assert_non_null(strstr(e.msg, "is in use by another VM (locked)"));
	assert_non_null(strstr(e.msg, f->path));
	/* ... even read-only: a writer excludes readers. */
	assert_int_equal(virtio_blk_create(vm2, 1, f->path, true, &e), -1);
	assert_int_equal(vm2->ndevices, 1); /* nothing half-registered */

	/* Handoff: the source releases, the destination takes it. */
	assert_int_equal(virtio_blk_release_lock(f->blk, &e), 0);
	assert_false(virtio_blk_locked(f->blk));
	/* Without the lock the source must not touch the disk. */
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_OUT, 0, 512, false),
			 VIRTIO_BLK_S_IOERR);
	if (virtio_blk_create(vm2, 1, f->path, false, &e) < 0)
		fail_msg("destination create: %s", e.msg);
	assert_int_equal(virtio_blk_take_lock(f->blk, &e), -1);
	assert_non_null(strstr(e.msg, "(locked)"));
	fake_vm_free(vm2); /* closing drops the lock */
	assert_int_equal(virtio_blk_take_lock(f->blk, &e), 0);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_OUT, 0, 512, false),
			 VIRTIO_BLK_S_OK);
}

static void test_readonly(void **state)
{
	struct fixture *f = *state;
	struct vm *a = fake_vm(), *b = fake_vm();
	uint16_t idx = 0;
	struct err e;

	assert_int_equal(virtio_blk_release_lock(f->blk, &e), 0);
	if (virtio_blk_create(a, 1, f->path, true, &e) < 0)
		fail_msg("ro create: %s", e.msg);
	/* Readers share the image. */
	if (virtio_blk_create(b, 1, f->path, true, &e) < 0)
		fail_msg("second ro create: %s", e.msg);
	/* But a writer cannot join them. */
	assert_int_equal(virtio_blk_take_lock(f->blk, &e), -1);
	driver_init(a);
	assert_true(in(a, IO + VIRTIO_PCI_HOST_FEATURES, 4) & VIRTIO_BLK_F_RO);
	assert_int_equal(request(a, &idx, VIRTIO_BLK_T_OUT, 0, 512, false),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(a, &idx, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
	fake_vm_free(a);
	fake_vm_free(b);
}

static void test_broken_guest(void **state)
{
	struct fixture *f = *state;
	struct virtio_dev *vd = virtio_blk_dev(f->blk);

	/* Head index out of range. */
	make_avail(f->vm, &f->avail_idx, 300);
	out(f->vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
	assert_true(in(f->vm, IO + VIRTIO_PCI_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(vd->isr & VIRTIO_ISR_CONFIG);
	/* The guest cannot clear it by writing status... */
	out(f->vm, IO + VIRTIO_PCI_STATUS, 1, 0x07);
	assert_true(in(f->vm, IO + VIRTIO_PCI_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	/* ...and a broken device ignores kicks. */
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_FLUSH, 0, 0, false), -1);

	/* Reset revives it. */
	memset(ram(f->vm, (uint64_t)RING_PFN << 12), 0, 0x3000);
	f->avail_idx = 0;
	driver_init(f->vm);
	assert_int_equal(in(f->vm, IO + VIRTIO_PCI_STATUS, 1), 0x07);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_FLUSH, 0, 0, false),
			 VIRTIO_BLK_S_OK);

	/* Malformed request: header shorter than 16 bytes. */
	set_desc(f->vm, 0, HDR_GPA, 8, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f->vm, 2, STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
	make_avail(f->vm, &f->avail_idx, 0);
	out(f->vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
	assert_true(vd->status & VIRTIO_STATUS_NEEDS_RESET);

	/* Bad queue number in a notify, or a ring outside RAM. */
	driver_init(f->vm);
	out(f->vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, 7);
	assert_true(vd->status & VIRTIO_STATUS_NEEDS_RESET);
	driver_init(f->vm);
	out(f->vm, IO + VIRTIO_PCI_QUEUE_PFN, 4, 0xfffff);
	assert_true(vd->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* A ring that feeds itself: chain A writes the device's used index (in
 * the used ring) to sector 5, chain B reads sector 5 back over the avail
 * index, and the avail ring alternates A, B. With the used index 100
 * ahead of the avail one, every B leaves the guest's index 98 ahead of
 * the device's, so a device that works until the ring is empty never
 * returns (and holds the device lock: no pause, save or stop).
 * The used index starts at 4 in RAM so the first B moves the index on. */
static void self_feeding_ring(struct fixture *f)
{
	uint64_t ring = (uint64_t)RING_PFN << 12;
	uint8_t *a = ram(f->vm, ring + 16 * 256);

	le_put_u16(ram(f->vm, ring + 0x2000 + 2), 4);
	le_put_u32(ram(f->vm, HDR_GPA), VIRTIO_BLK_T_OUT);
	le_put_u64(ram(f->vm, HDR_GPA + 8), 5);
	le_put_u32(ram(f->vm, HDR_GPA + 0x100), VIRTIO_BLK_T_IN);
	le_put_u64(ram(f->vm, HDR_GPA + 0x108), 5);
	set_desc(f->vm, 10, HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 11);
	set_desc(f->vm, 11, ring + 0x2000 + 2, 2, VIRTQ_DESC_F_NEXT, 12);
	set_desc(f->vm, 12, STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(f->vm, 13, HDR_GPA + 0x100, 16, VIRTQ_DESC_F_NEXT, 14);
	set_desc(f->vm, 14, ring + 16 * 256 + 2, 2, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 15);
	set_desc(f->vm, 15, STATUS_GPA + 1, 1, VIRTQ_DESC_F_WRITE, 0);
	for (int i = 0; i < 256; i++)
		le_put_u16(a + 4 + 2 * i, i % 2 ? 13 : 10);
	le_put_u16(a + 2, 2);
}

/* A state whose used index is not where its avail index says is refused:
 * requests complete before a kick returns, so a saved queue has returned
 * every chain it took, but for the one that broke the device. */
static void test_restore_refuses_inconsistent_indices(void **state)
{
	struct fixture *f = *state;
	struct virtio_dev *vd = virtio_blk_dev(f->blk);
	struct virtio_blk_state st;
	struct err e;

	virtio_blk_save(f->blk, &st);
	st.transport.q[0].last_avail_idx = 107;
	st.transport.q[0].used_idx = 107;
	assert_int_equal(virtio_blk_restore(f->blk, &st, &e), 0);
	st.transport.q[0].used_idx = 7; /* 100 chains never returned */
	assert_int_equal(virtio_blk_restore(f->blk, &st, &e), -1);
	assert_non_null(strstr(e.msg, "used index"));
	st.transport.q[0].used_idx = 108; /* more returned than taken */
	assert_int_equal(virtio_blk_restore(f->blk, &st, &e), -1);
	/* one taken and not returned: only by a device the guest broke */
	st.transport.q[0].used_idx = 106;
	assert_int_equal(virtio_blk_restore(f->blk, &st, &e), -1);
	st.transport.status |= VIRTIO_STATUS_NEEDS_RESET;
	assert_int_equal(virtio_blk_restore(f->blk, &st, &e), 0);
	assert_int_equal(vd->vq[0].used_idx, 106);
	/* Two taken and not returned: not even a broken device leaves that. */
	st.transport.q[0].used_idx = 105;
	assert_int_equal(virtio_blk_restore(f->blk, &st, &e), -1);

	/* The feedback ring from such a state is refused before it runs. */
	virtio_blk_save(f->blk, &st);
	st.transport.status = 0x07;
	st.transport.q[0].last_avail_idx = 0;
	st.transport.q[0].used_idx = 100;
	self_feeding_ring(f);
	assert_int_equal(virtio_blk_restore(f->blk, &st, &e), -1);
}

/* However the indices got there, one kick takes at most a queue's worth
 * of chains: every chain a driver makes available is followed by a kick,
 * so what is left is taken at the next one. */
static void test_kick_does_bounded_work(void **state)
{
	struct fixture *f = *state;
	struct virtio_dev *vd = virtio_blk_dev(f->blk);

	self_feeding_ring(f);
	vd->vq[0].used_idx = 100;
	out(f->vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
	assert_int_equal(vd->vq[0].last_avail_idx, 256);
	assert_int_equal(vd->vq[0].used_idx, 356);
	assert_false(vd->status & VIRTIO_STATUS_NEEDS_RESET);
	/* the guest's index is still ahead: the next kick goes on */
	out(f->vm, IO + VIRTIO_PCI_QUEUE_NOTIFY, 2, 0);
	assert_int_equal(vd->vq[0].last_avail_idx, 512);
}

static void test_state_round_trip(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_state st, st2;
	struct stream w, r;
	struct vm *dst;
	struct virtio_blk *b2;
	struct virtio_dev *vd2;
	uint16_t idx;
	struct err e;

	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_FLUSH, 0, 0, false),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(request(f->vm, &f->avail_idx, VIRTIO_BLK_T_FLUSH, 0, 0, false),
			 VIRTIO_BLK_S_OK);
	/* ISR left pending so post_load must re-raise it. */
	virtio_blk_save(f->blk, &st);
	assert_int_equal(st.transport.q[0].used_idx, 2);
	assert_int_equal(st.transport.q[0].last_avail_idx, 2);
	assert_int_equal(st.transport.isr, VIRTIO_ISR_QUEUE);
	stream_init_mem_writer(&w);
	virtio_blk_state_encode(&w, &st);
	assert_true(stream_ok(&w));

	/* Destination: device created without the lock, memory copied. */
	dst = fake_vm();
	memcpy(dst->mem.host, f->vm->mem.host, RAM_SIZE);
	if (virtio_blk_create_ex(dst, 1, f->path, false, false, &e) < 0)
		fail_msg("dst create: %s", e.msg);
	b2 = virtio_blk_find(dst, 0);
	vd2 = virtio_blk_dev(b2);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(virtio_blk_state_decode(&r, VIRTIO_BLK_STATE_VERSION, &st2, &e), 0);
	if (virtio_blk_restore(b2, &st2, &e) < 0)
		fail_msg("restore: %s", e.msg);
	assert_int_equal(virtio_post_load(vd2, &e), 0);
	assert_int_equal(vd2->vq[0].used_idx, 2);
	assert_int_equal(vd2->vq[0].pfn, RING_PFN);
	assert_int_equal(vd2->status, 0x07);
	assert_int_equal(vd2->guest_features, virtio_blk_dev(f->blk)->guest_features);
	assert_true(vd2->irq_level);
	assert_int_equal(in(dst, IO + VIRTIO_PCI_ISR, 1), VIRTIO_ISR_QUEUE);

	/* Storage handoff, then the destination carries on the same ring. */
	assert_int_equal(virtio_blk_flush(f->blk, &e), 0);
	assert_int_equal(virtio_blk_release_lock(f->blk, &e), 0);
	assert_int_equal(virtio_blk_take_lock(b2, &e), 0);
	idx = f->avail_idx;
	memcpy(ram(dst, DATA_GPA), "migrated", 8);
	assert_int_equal(request(dst, &idx, VIRTIO_BLK_T_OUT, 5, 512, false), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(dst), 3);

	/* Via the vm_device glue as the migration code calls it. */
	{
		struct stream w2, r2;
		struct vm_device *d = &f->vm->devices[1];
		stream_init_mem_writer(&w2);
		assert_int_equal(d->save(d->opaque, &w2, &e), 0);
		stream_init_mem_reader(&r2, stream_mem_data(&w2), stream_mem_len(&w2));
		assert_int_equal(dst->devices[1].load(dst->devices[1].opaque, &r2,
						      d->version, &e), 0);
		assert_int_equal(dst->devices[1].post_load(dst->devices[1].opaque, &e), 0);
		/* Truncated input fails cleanly. */
		stream_init_mem_reader(&r2, stream_mem_data(&w2), stream_mem_len(&w2) - 3);
		assert_int_equal(dst->devices[1].load(dst->devices[1].opaque, &r2,
						      d->version, &e), -1);
		stream_destroy(&w2);
	}

	/* Validation: a different disk size or hostile values are refused. */
	st2 = st;
	st2.capacity = SECTORS * 2;
	assert_int_equal(virtio_blk_restore(b2, &st2, &e), -1);
	assert_non_null(strstr(e.msg, "sectors"));
	st2 = st;
	st2.transport.q[0].pfn = 0xfffff;
	assert_int_equal(virtio_blk_restore(b2, &st2, &e), -1);
	st2 = st;
	st2.transport.guest_features |= 1u << 30;
	assert_int_equal(virtio_blk_restore(b2, &st2, &e), -1);
	st2 = st;
	st2.transport.q[0].size = 128;
	assert_int_equal(virtio_blk_restore(b2, &st2, &e), -1);
	st2 = st;
	st2.transport.isr = 0x80;
	assert_int_equal(virtio_blk_restore(b2, &st2, &e), -1);
	/* A stream claiming too many queues. */
	{
		struct virtio_blk_state bad = st;
		struct stream w3, r3;
		bad.transport.nqueues = 200;
		stream_init_mem_writer(&w3);
		virtio_state_encode(&w3, &bad.transport);
		stream_init_mem_reader(&r3, stream_mem_data(&w3), stream_mem_len(&w3));
		assert_int_equal(virtio_blk_state_decode(&r3, VIRTIO_BLK_STATE_VERSION,
							 &st2, &e), -1);
		stream_destroy(&w3);
		/* One queue too many, with its bytes all there: the limit itself
		 * must hold, or the decoder writes past q[]. */
		bad.transport.nqueues = VIRTIO_MAX_QUEUES + 1;
		stream_init_mem_writer(&w3);
		virtio_state_encode(&w3, &bad.transport);
		for (int i = 0; i < 5; i++)
			stream_put_u16(&w3, 0);
		stream_init_mem_reader(&r3, stream_mem_data(&w3), stream_mem_len(&w3));
		assert_int_equal(virtio_blk_state_decode(&r3, VIRTIO_BLK_STATE_VERSION,
							 &st2, &e), -1);
		stream_destroy(&w3);
	}
	stream_destroy(&w);
	fake_vm_free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_id_unsupp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_suppressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_guest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_read_marks_dirty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_inconsistent_indices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kick_does_bounded_work, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
