/*
 * The VM-wide interrupt state through a whole save and restore (needs
 * /dev/kvm and the test guest, else skipped): a state file of one machine
 * restored into another (vmstate_save, snapshot_load_state, vmstate_apply)
 * carries the IOAPIC's redirection table, the PIC's mask and the kvmclock.
 * The test guest polls its devices and runs on the LAPIC timer and the TSC,
 * so no guest-level test sees an irqchip or a kvmclock left at its
 * power-on state: a Linux guest would lose its device interrupts, and its
 * clock would jump back to the moment the destination's VM was created.
 * A device interrupt pending at the save is raised again after the
 * restore. A section with bytes the restore does not read, or one the VM
 * has no place for, is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include <cmocka.h>

#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "migration/snapshot.h"
#include "kvm_test.h"

static void kvm_test_sink(void *opaque, const uint8_t *buf, size_t n)
{
	(void)opaque;
	(void)buf;
	(void)n;
}

static void get_chip(struct machine *m, struct kvm_irqchip *c, uint32_t id)
{
	memset(c, 0, sizeof(*c));
	c->chip_id = id;
	if (ioctl(m->vm.vm_fd, KVM_GET_IRQCHIP, c) < 0)
		fail_msg("KVM_GET_IRQCHIP %u: %s", id, strerror(errno));
}

static void set_chip(struct machine *m, struct kvm_irqchip *c)
{
	if (ioctl(m->vm.vm_fd, KVM_SET_IRQCHIP, c) < 0)
		fail_msg("KVM_SET_IRQCHIP %u: %s", c->chip_id, strerror(errno));
}

static void test_irqchip_restored(void **state)
{
	/* static: struct machine is large */
	static struct machine a, b;
	struct kvm_irqchip io, pic;
	struct vm_config cfg;
	struct ram_stats st = { 0 };
	struct ram_recv rr;
	struct err e = { .code = 0 };
	struct stream w, r;
	const uint64_t redir = 0x45 | (1ULL << 15) | (3ULL << 56); /* vector 0x45, level, APIC 3 */
	(void)state;

	kvm_test_build(&a, "irqa", 32ULL << 20);
	/* a guest's setup: IOAPIC pin 9 routed and unmasked, PIC IRQs masked */
	get_chip(&a, &io, KVM_IRQCHIP_IOAPIC);
	io.chip.ioapic.redirtbl[9].bits = redir;
	set_chip(&a, &io);
	get_chip(&a, &pic, KVM_IRQCHIP_PIC_MASTER);
	pic.chip.pic.imr = 0xfb;
	set_chip(&a, &pic);
	/* a guest up for 1000 s: a fresh VM's kvmclock starts near 0 */
	{
		struct kvm_clock_data c = { .clock = 1000ULL * 1000000000ULL };
		if (ioctl(a.vm.vm_fd, KVM_SET_CLOCK, &c) < 0)
			fail_msg("KVM_SET_CLOCK: %s", strerror(errno));
	}

	stream_init_mem_writer(&w);
	if (snapshot_save(&a, &w, &st, &e) < 0)
		fail_msg("save: %s", e.msg);
	kvm_test_build_as(&b, "irqb", 32ULL << 20, true);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	if (snapshot_load_config(&r, &cfg, &e) < 0 || ram_recv_init(&rr, &b.vm.mem, &e) < 0 ||
	    snapshot_load_state(&r, &b, &rr, &e) < 0)
		fail_msg("restore: %s", e.msg);

	get_chip(&b, &io, KVM_IRQCHIP_IOAPIC);
	assert_true(io.chip.ioapic.redirtbl[9].bits == redir);
	get_chip(&b, &pic, KVM_IRQCHIP_PIC_MASTER);
	assert_int_equal(pic.chip.pic.imr, 0xfb);
	{
		struct kvm_clock_data c = { 0 };
		if (ioctl(b.vm.vm_fd, KVM_GET_CLOCK, &c) < 0)
			fail_msg("KVM_GET_CLOCK: %s", strerror(errno));
		if (c.clock < 1000ULL * 1000000000ULL)
			fail_msg("kvmclock after the restore: %llu ns, the source's was past 1000 s",
				 (unsigned long long)c.clock);
	}

	ram_recv_destroy(&rr);
	stream_destroy(&w);
	machine_destroy(&a);
	machine_destroy(&b);
}

/* A copy of the state file w with 4 zero bytes added to section `name`
 * (its record length and checksum made to fit), or, with `copy_as`, that
 * section kept and a copy of it added under the name copy_as. */
static void edit_section(const struct stream *w, const char *name, const char *copy_as,
			 struct stream *out)
{
	const uint8_t *d = stream_mem_data(w);
	size_t n = stream_mem_len(w), at = 16; /* after the stream header */
	bool done = false;
	stream_init_mem_writer(out);
	stream_put(out, d, at);
	while (at + 8 <= n) {
		uint32_t type = le_get_u32(d + at), len = le_get_u32(d + at + 4);
		const uint8_t *p = d + at + 8;
		uint16_t nl = type == MIG_REC_SECTION ? le_get_u16(p) : 0;
		if (type == MIG_REC_SECTION && nl == strlen(name) && memcmp(p + 2, name, nl) == 0) {
			uint32_t plen = len - 2u - nl - 4u - 8u;
			uint8_t *pay = calloc(1, plen + 4);
			assert_non_null(pay);
			memcpy(pay, p + 2 + nl + 4 + 8, plen);
			if (copy_as) {
				stream_put(out, d + at, 8 + (size_t)len);
				mig_put_section(out, copy_as, le_get_u32(p + 2 + nl), pay, plen);
			} else {
				mig_put_section(out, name, le_get_u32(p + 2 + nl), pay, plen + 4);
			}
			free(pay);
			done = true;
		} else {
			stream_put(out, d + at, 8 + (size_t)len);
		}
		at += 8 + (size_t)len;
	}
	assert_true(done);
}

/* The edited state in bad (consumed) is refused by a restore into b,
 * with an error naming why. */
static void expect_load_refused(struct stream *bad, struct machine *b, const char *why)
{
	struct vm_config cfg;
	struct ram_recv rr;
	struct stream r;
	struct err e = { .code = 0 };

	stream_init_mem_reader(&r, stream_mem_data(bad), stream_mem_len(bad));
	assert_int_equal(snapshot_load_config(&r, &cfg, &e), 0);
	assert_int_equal(ram_recv_init(&rr, &b->vm.mem, &e), 0);
	assert_int_equal(snapshot_load_state(&r, b, &rr, &e), -1);
	assert_non_null(strstr(e.msg, why));
	ram_recv_destroy(&rr);
	stream_destroy(bad);
}

/* A section the restore does not read to its end is refused, not applied
 * with the rest ignored (a layout this build does not know); so is a
 * section the VM has no place for. */
static void test_trailing_bytes_refused(void **state)
{
	static struct machine a, b;
	struct ram_stats st = { 0 };
	struct err e = { .code = 0 };
	struct stream w, bad;
	(void)state;
	kvm_test_build(&a, "trla", 32ULL << 20);
	stream_init_mem_writer(&w);
	if (snapshot_save(&a, &w, &st, &e) < 0)
		fail_msg("save: %s", e.msg);
	edit_section(&w, "kvm", NULL, &bad);
	kvm_test_build_as(&b, "trlb", 32ULL << 20, true);
	expect_load_refused(&bad, &b, "section kvm has 4 unexpected trailing bytes");
	/* a section this VM has no use for (vCPU 1's, in a 1-vCPU VM) */
	edit_section(&w, "cpu.0", "cpu.1", &bad);
	expect_load_refused(&bad, &b, "sections, this VM needs");
	stream_destroy(&w);
	machine_destroy(&a);
	machine_destroy(&b);
}

/* A 1-vCPU machine of the test guest with a virtio-blk disk at path. */
static void build_with_disk(struct machine *m, const char *name, const char *path, bool incoming)
{
	struct vm_config cfg;
	struct err e = { .code = 0 };
	memset(m, 0, sizeof(*m));
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.name, sizeof(cfg.name), "%s", name);
	cfg.mem_size = 32ULL << 20;
	cfg.vcpus = 1;
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", kvm_test_guest);
	snprintf(cfg.disk, sizeof(cfg.disk), "%s", path);
	if (machine_build(m, &cfg, incoming, NULL, kvm_test_sink, NULL, &e) < 0)
		fail_msg("machine: %s", e.msg);
}

/* A device interrupt the guest had not acknowledged when it was saved is
 * raised again on the restored machine (the devices' post_load, after the
 * irqchip is in): a line left low would leave a Linux guest's driver
 * waiting for that interrupt forever. */
static void test_pending_device_interrupt_raised(void **state)
{
	static struct machine a, b;
	char path[] = "/tmp/ferry-kvm-vmstate.XXXXXX";
	struct vm_config cfg;
	struct ram_stats st = { 0 };
	struct ram_recv rr;
	struct err e = { .code = 0 };
	struct stream w, r;
	int fd = mkstemp(path);
	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	build_with_disk(&a, "irqd", path, false);
	virtio_blk_dev(virtio_blk_find(&a.vm, 0))->isr = VIRTIO_ISR_QUEUE;
	stream_init_mem_writer(&w);
	if (snapshot_save(&a, &w, &st, &e) < 0)
		fail_msg("save: %s", e.msg);
	machine_destroy(&a);
	build_with_disk(&b, "irqe", path, true);
	unlink(path); /* open in b from here on; nothing left behind if a check fails */
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(snapshot_load_config(&r, &cfg, &e), 0);
	assert_int_equal(ram_recv_init(&rr, &b.vm.mem, &e), 0);
	if (snapshot_load_state(&r, &b, &rr, &e) < 0)
		fail_msg("restore: %s", e.msg);
	assert_true(virtio_blk_dev(virtio_blk_find(&b.vm, 0))->irq_level);
	ram_recv_destroy(&rr);
	stream_destroy(&w);
	machine_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_irqchip_restored),
		cmocka_unit_test(test_trailing_bytes_refused),
		cmocka_unit_test(test_pending_device_interrupt_raised),
	};
	int skip = kvm_test_skip("saves and restores a VM's interrupt controllers");
	if (skip)
		return skip;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
