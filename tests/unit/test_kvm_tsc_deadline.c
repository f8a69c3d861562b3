/*
 * A vCPU halted on its TSC-deadline timer wakes on time after a restore
 * (needs /dev/kvm, the test guest, and a KVM that lets the VMM set the
 * guest's TSC; else skipped, saying which).
 *
 * The deadline is a TSC value: KVM arms its timer against the guest TSC
 * of the moment the MSR is written, so vcpu_restore writes IA32_TSC
 * first. The source here has run 1000 s longer than the destination's
 * new VM (its TSC and its deadline moved on together, as over a long
 * uptime). Written the other way round, the deadline would lie 1000 s
 * ahead of the destination's TSC and the halted vCPU would sleep that
 * long: a Linux guest's timers would stop after the move.
 *
 * kvm_pvm ties the guest's TSC to the host's and ignores the VMM's
 * writes of IA32_TSC, so there the order cannot show and this skips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <time.h>

#include <cmocka.h>

#include "migration/snapshot.h"
#include "vmm/guestcheck.h"
#include "vmm/vcpu.h"
#include "kvm_test.h"

#define MSR_IA32_TSC 0x10
#define MSR_TSC_DEADLINE 0x6e0
#define APIC_LVT_TIMER 0x320
#define AHEAD_S 1000ULL

static void kvm_test_sink(void *opaque, const uint8_t *buf, size_t n)
{
	(void)opaque;
	(void)buf;
	(void)n;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int msr_xfer(int vcpu_fd, unsigned long req, uint32_t index, uint64_t *data)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = index, .e.data = *data };
	if (ioctl(vcpu_fd, req, &m) != 1)
		return -1;
	*data = m.e.data;
	return 0;
}

static uint64_t msr_get(int vcpu_fd, uint32_t index)
{
	uint64_t v = 0;
	if (msr_xfer(vcpu_fd, KVM_GET_MSRS, index, &v) < 0)
		fail_msg("KVM_GET_MSRS 0x%x: %s", index, strerror(errno));
	return v;
}

static void msr_set(int vcpu_fd, uint32_t index, uint64_t v)
{
	if (msr_xfer(vcpu_fd, KVM_SET_MSRS, index, &v) < 0)
		fail_msg("KVM_SET_MSRS 0x%x: %s", index, strerror(errno));
}

static const uint8_t *map_gpa(void *opaque, uint64_t gpa, uint64_t len)
{
	return gmem_ptr(opaque, gpa, len);
}

/* The test guest's first vCPU's once-a-second counter; 0 until the guest
 * has set up its control block. */
static uint64_t heartbeat_of(struct machine *m)
{
	struct guestcheck_report rep;
	char why[256];
	memset(&rep, 0, sizeof(rep));
	if (guestcheck_verify_map(map_gpa, &m->vm.mem, &rep, why, sizeof(why)) < 0)
		return 0;
	return rep.vcpu_heartbeat[0];
}

/* Pauses m's vCPU where it is halted with its TSC-deadline timer armed
 * (where the idle test guest spends nearly all its time); the deadline. */
static uint64_t pause_halted_on_deadline(struct machine *m)
{
	int fd = m->vm.vcpus[0]->fd;
	for (int tries = 0; tries < 200; tries++) {
		struct kvm_mp_state mp;
		struct kvm_lapic_state la;
		uint32_t lvt;
		vcpus_pause(&m->vm);
		assert_int_equal(ioctl(fd, KVM_GET_MP_STATE, &mp), 0);
		assert_int_equal(ioctl(fd, KVM_GET_LAPIC, &la), 0);
		memcpy(&lvt, la.regs + APIC_LVT_TIMER, sizeof(lvt));
		if (((lvt >> 17) & 3) != 2)
			fail_msg("the test guest's LAPIC timer is not in TSC-deadline mode (LVT 0x%x)", lvt);
		uint64_t dl = msr_get(fd, MSR_TSC_DEADLINE);
		if (mp.mp_state == KVM_MP_STATE_HALTED && dl > msr_get(fd, MSR_IA32_TSC))
			return dl;
		vcpus_resume(&m->vm);
		sleep_ms(20);
	}
	fail_msg("the vCPU was never found halted on an armed deadline");
	return 0;
}

static void test_deadline_wakes_after_restore(void **state)
{
	static struct machine a, b;
	struct vm_config cfg;
	struct ram_stats st = { 0 };
	struct ram_recv rr;
	struct err e = { .code = 0 };
	struct stream w, r;
	(void)state;

	kvm_test_build(&a, "tsca", 64ULL << 20);
	if (machine_boot(&a, &e) < 0 || vcpus_start(&a.vm, &e) < 0)
		fail_msg("machine: %s", e.msg);
	for (int i = 0; i < 30000 && heartbeat_of(&a) < 1; i += 10) /* booted and idle */
		sleep_ms(10);
	assert_true(heartbeat_of(&a) >= 1);

	int fd = a.vm.vcpus[0]->fd;
	uint64_t dl = pause_halted_on_deadline(&a);
	long khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
	if (khz <= 0)
		fail_msg("KVM_GET_TSC_KHZ: %s", strerror(errno));
	uint64_t ahead = AHEAD_S * (uint64_t)khz * 1000ULL, tsc = msr_get(fd, MSR_IA32_TSC);
	msr_set(fd, MSR_IA32_TSC, tsc + ahead);
	msr_set(fd, MSR_TSC_DEADLINE, dl + ahead);
	assert_true(msr_get(fd, MSR_TSC_DEADLINE) == dl + ahead);
	stream_init_mem_writer(&w);
	if (snapshot_save(&a, &w, &st, &e) < 0)
		fail_msg("save: %s", e.msg);
	vcpus_stop(&a.vm);
	machine_destroy(&a);

	kvm_test_build_as(&b, "tscb", 64ULL << 20, true);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	if (snapshot_load_config(&r, &cfg, &e) < 0 || ram_recv_init(&rr, &b.vm.mem, &e) < 0 ||
	    snapshot_load_state(&r, &b, &rr, &e) < 0)
		fail_msg("restore: %s", e.msg);
	assert_true(msr_get(b.vm.vcpus[0]->fd, MSR_TSC_DEADLINE) == dl + ahead);
	uint64_t hb0 = heartbeat_of(&b);
	assert_true(hb0 >= 1);
	if (vcpus_start(&b.vm, &e) < 0)
		fail_msg("vcpus_start: %s", e.msg);
	/* the deadline was at most the guest's 1 s heartbeat period away */
	int waited = 0;
	while (waited < 5000 && heartbeat_of(&b) == hb0) {
		sleep_ms(10);
		waited += 10;
	}
	print_message("restored vCPU woke after %d ms (its deadline was %llu ms ahead at the save)\n",
		      waited, (unsigned long long)((dl - tsc) / (uint64_t)khz));
	assert_true(heartbeat_of(&b) > hb0);
	vcpus_stop(&b.vm);
	ram_recv_destroy(&rr);
	stream_destroy(&w);
	machine_destroy(&b);
}

/* 0 if the VMM can move this KVM's guest TSC, else 77 after saying so. */
static int tsc_settable(void)
{
	static struct machine m;
	int fd, rc = 0;

	kvm_test_build(&m, "tscprobe", 16ULL << 20);
	fd = m.vm.vcpus[0]->fd;
	uint64_t want = msr_get(fd, MSR_IA32_TSC) + (AHEAD_S << 32), got;
	msr_set(fd, MSR_IA32_TSC, want);
	got = msr_get(fd, MSR_IA32_TSC);
	if (got < want) {
		printf("SKIP: this KVM ignores the VMM's writes of IA32_TSC (wrote 0x%llx, reads "
		       "0x%llx; kvm_pvm ties the guest's TSC to the host's): the restore order "
		       "of IA32_TSC and the TSC deadline cannot show here\n",
		       (unsigned long long)want, (unsigned long long)got);
		rc = 77;
	}
	machine_destroy(&m);
	return rc;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deadline_wakes_after_restore),
	};
	int skip = kvm_test_skip("restores a guest's armed TSC-deadline timer");
	if (skip || (skip = tsc_settable()))
		return skip;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
