/*
 * libFuzzer harness for everything that reads a ferry stream from an
 * untrusted peer. Each input goes through two readers:
 *   (a) streamcheck_run, the offline checker behind ferry-stream;
 *   (b) the real receive path, as snapshot_load_* / a live migration drive
 *       it: header and configuration, then ram_recv_record writing pages
 *       into a 64 MiB fake guest (a plain malloc'd buffer, so ASan sees any
 *       write outside it), vmstate_read_section collecting sections, and at
 *       STATE_END every collected section run through its device decoder
 *       (what vmstate_apply does before it touches KVM); DIGEST, SYNC,
 *       ABORT, CPUID and CPU_MODEL records through their readers, and
 *       DISK records' headers against the copy CONFIG describes; POSTCOPY
 *       records into the owed set, and after a POSTCOPY_END every MEM
 *       record through post-copy's receiver (its checks; with no
 *       userfaultfd here, placing a page fails, which is a rejection).
 * Neither may crash, leak, hang or touch memory it does not own; rejecting
 * the input is always fine. Build with tests/fuzz/build.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci.h"
#include "devices/uart.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "migration/check.h"
#include "migration/digest.h"
#include "migration/diskcopy.h"
#include "migration/postcopy.h"
#include "migration/ram.h"
#include "migration/snapshot.h"
#include "vmm/vmstate.h"
#include "vmm/x86/cpuid.h"
#include "vmm/x86/cpustate.h"

#define FAKE_RAM (64ULL << 20)

static struct guest_mem gm;
static union {
	struct vcpu_state vcpu;
	struct kvm_vm_state kvm;
	struct uart_state uart;
	struct pci_state pci;
	struct virtio_blk_state blk;
	struct virtio_net_state net;
} *dec;
static struct streamcheck_report *rep;

/* One region at GPA 0, like gmem_init for a small guest, but no memfd:
 * the receive path only needs host/regions/ram_size. */
static void fake_guest_init(void)
{
	gm.memfd = -1;
	gm.host = malloc(FAKE_RAM);
	gm.ram_size = FAKE_RAM;
	gm.nregions = 1;
	gm.regions[0] = (struct gmem_region){ .gpa = 0, .size = FAKE_RAM, .offset = 0, .slot = 0 };
	gm.vmm_dirty = calloc(FAKE_RAM / 4096 / 64, sizeof(uint64_t));
	dec = malloc(sizeof(*dec));
	rep = malloc(sizeof(*rep));
	if (!gm.host || !gm.vmm_dirty || !dec || !rep)
		abort();
}

/* Decode one stashed section with its device decoder, as vmstate_apply would. */
static void decode_section(const struct vmstate_section *s)
{
	struct stream r;
	struct err e;
	int rc = -1;
	stream_init_mem_reader(&r, s->data, s->len);
	if (!strncmp(s->name, "cpu.", 4))
		rc = vcpu_state_get(&r, s->version, &dec->vcpu, &e);
	else if (!strcmp(s->name, "kvm"))
		rc = kvm_vm_state_get(&r, &dec->kvm, &e);
	else if (!strcmp(s->name, "uart"))
		rc = uart_state_get(&r, &dec->uart, &e);
	else if (!strcmp(s->name, "pci"))
		rc = pci_state_decode(&r, s->version, &dec->pci, &e);
	else if (!strncmp(s->name, "virtio-blk.", 11))
		rc = virtio_blk_state_decode(&r, s->version, &dec->blk, &e);
	else if (!strncmp(s->name, "virtio-net.", 11))
		rc = virtio_net_state_decode(&r, s->version, &dec->net, &e);
	(void)rc;
	(void)stream_remaining(&r);
}

static void receive(const uint8_t *data, size_t size)
{
	struct vmstate_loaded *ld;
	struct vm_config cfg;
	struct ram_recv rr;
	struct postcopy_in pc;
	bool after_switch = false; /* a POSTCOPY_END seen: MEM goes to post-copy's receiver */
	struct stream r;
	struct mig_rec rec;
	struct err e;

	stream_init_mem_reader(&r, data, size);
	if (snapshot_load_config(&r, &cfg, &e) < 0)
		return;
	if (ram_recv_init(&rr, &gm, &e) < 0 || postcopy_in_init(&pc, &gm, &e) < 0)
		abort();
	ld = calloc(1, sizeof(*ld));
	if (!ld)
		abort();
	for (;;) {
		if (mig_get_rec(&r, &rec, &e) < 0)
			break;
		if (rec.type == MIG_REC_MEM && after_switch) {
			if (postcopy_in_recv(&pc, &r, rec.len, &e) < 0)
				break;
		} else if (rec.type == MIG_REC_MEM) {
			if (ram_recv_record(&rr, &r, rec.len, &e) < 0)
				break;
		} else if (rec.type == MIG_REC_POSTCOPY) {
			if (postcopy_in_read_owed(&pc, &r, rec.len, &e) < 0)
				break;
		} else if (rec.type == MIG_REC_POSTCOPY_END) {
			after_switch = true;
		} else if (rec.type == MIG_REC_SECTION) {
			if (vmstate_read_section(ld, &r, rec.len, &e) < 0)
				break;
		} else if (rec.type == MIG_REC_STATE_END) {
			for (int i = 0; i < ld->n; i++)
				decode_section(&ld->s[i]);
			break;
		} else if (rec.type == MIG_REC_DIGEST) {
			struct mem_digest dg = { 0 };
			int rc = digest_get(&r, rec.len, gmem_npages(&gm), &dg, &e);
			digest_free(&dg);
			if (rc < 0)
				break;
		} else if (rec.type == MIG_REC_SYNC) {
			struct mig_sync sy;
			if (mig_get_sync(&r, &rec, &sy, &e) < 0)
				break;
		} else if (rec.type == MIG_REC_ABORT) {
			(void)mig_get_abort(&r, &rec, &e);
			break;
		} else if (rec.type == MIG_REC_CPUID) {
			struct kvm_cpuid2 *c = NULL;
			int rc = cpuid_decode(&r, rec.len, &c, &e);
			free(c);
			if (rc < 0)
				break;
		} else if (rec.type == MIG_REC_DISK) {
			/* as the destination reads a run of the disk's copy,
			 * up to the write into an image this harness has none of */
			struct diskcopy_hdr h;
			if (diskcopy_get_hdr(&r, rec.len, cfg.disk_copy_bytes, &h, &e) < 0)
				break;
			stream_skip(&r, h.length);
			if (!stream_ok(&r))
				break;
		} else if (rec.type == MIG_REC_CPU_MODEL) {
			struct cpu_model cm;
			if (cpu_model_get(&r, rec.len, &cm, &e) < 0)
				break;
		} else if (rec.type == MIG_REC_EOS || rec.type == MIG_REC_CONFIG) {
			break;
		} else {
			stream_skip(&r, rec.len);
			if (!stream_ok(&r))
				break;
		}
	}
	vmstate_loaded_free(ld);
	free(ld);
	ram_recv_destroy(&rr);
	postcopy_in_destroy(&pc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct streamcheck_opts o = { .strict = false };
	struct stream r;
	struct err e;

	if (!gm.host)
		fake_guest_init();
	stream_init_mem_reader(&r, data, size);
	(void)streamcheck_run(&r, &o, rep, &e);
	receive(data, size);
	return 0;
}
