/*
 * The guest's CPUID: KVM's supported table, normalized per vCPU (APIC ids,
 * topology of one single-thread core per vCPU in one socket, hypervisor
 * and TSC-deadline bits, no PMU, no nested virtualization, no invariant TSC
 * unless asked), minus the features a user mask removes. For migration the
 * table travels in the stream and the destination checks that its own KVM
 * covers every feature bit the guest sees.
 *
 * The logic is pure (cpuid_normalize, cpuid_compare take the supported
 * table as an argument) so unit tests run without /dev/kvm; cpuid_build and
 * cpuid_check_host are the thin KVM wrappers.
 */
#ifndef FERRY_X86_CPUID_H
#define FERRY_X86_CPUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "common/err.h"
#include "common/stream.h"

#define CPUID_MAX_ENTRIES 256

enum cpuid_reg { CPUID_EAX = 0, CPUID_EBX, CPUID_ECX, CPUID_EDX };

/* One named feature bit the mask can remove. */
struct cpuid_feature {
	const char *name;
	uint32_t leaf;
	uint32_t subleaf;
	uint8_t reg;          /* enum cpuid_reg */
	uint8_t bit;
	const char *requires; /* removed too when this feature is removed */
};

#define CPUID_MASK_WORDS 2
struct cpuid_mask {
	uint64_t clear[CPUID_MASK_WORDS]; /* bit i: feature table entry i hidden */
	bool invtsc;                      /* expose invariant TSC (blocks nothing in
					   * ferry, but the TSC rate must then match) */
};

/* The feature table. */
const struct cpuid_feature *cpuid_features(size_t *n);
/* Index of a feature by name, or -1. */
int cpuid_feature_find(const char *name);
/* "-avx2,-avx512f,+invtsc": '-' hides a feature (and those that need it),
 * '+' undoes an earlier '-' (and for invtsc, exposes it). Empty or NULL
 * is the empty mask. Unknown names fail. */
int cpuid_parse_mask(const char *s, struct cpuid_mask *m, struct err *e);
/* True if the mask hides feature table entry i. */
bool cpuid_mask_hides(const struct cpuid_mask *m, int i);

/* kvm_cpuid2 helpers: allocation with room for cap entries (nent = 0),
 * and lookup honouring KVM_CPUID_FLAG_SIGNIFCANT_INDEX. */
struct kvm_cpuid2 *cpuid_alloc(uint32_t cap);
struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx);
uint32_t *cpuid_reg_ptr(struct kvm_cpuid_entry2 *ent, int reg);

/* Pure: the CPUID for vCPU vcpu_index of nvcpus, from the host's supported
 * table. *out is malloc'd; the caller frees it. */
int cpuid_normalize(const struct kvm_cpuid2 *supported, const struct cpuid_mask *mask,
		    int vcpu_index, int nvcpus, struct kvm_cpuid2 **out, struct err *e);
/* Pure: 0 if host covers guest (same vendor, every feature bit and XSAVE
 * component), else -1 with the missing names in why. host_tsc_deadline
 * says whether the host KVM emulates the TSC-deadline timer (it is not in
 * the supported table). */
int cpuid_compare(const struct kvm_cpuid2 *host, const struct kvm_cpuid2 *guest,
		  bool host_tsc_deadline, char *why, size_t whylen);

/* KVM_GET_SUPPORTED_CPUID with a buffer grown on E2BIG. */
int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out, struct err *e);
int cpuid_build(int kvm_fd, const struct cpuid_mask *mask, int vcpu_index, int nvcpus,
		struct kvm_cpuid2 **out, struct err *e);
/* 0 if this host can run a guest that sees `guest`; else -1 and why. */
int cpuid_check_host(int kvm_fd, const struct kvm_cpuid2 *guest, char *why, size_t whylen);
/* Features the operator declared this host must not offer (--host-cpu-mask,
 * a migration baseline like an older CPU in the cluster): 0 if guest sees
 * none of them (or mask is NULL/empty), else -1 naming them. */
int cpuid_check_mask(const struct kvm_cpuid2 *guest, const char *mask, char *why, size_t whylen);

/* Stream form: u32 count, then per entry function, index, flags, eax, ebx,
 * ecx, edx as u32. Decode validates count <= CPUID_MAX_ENTRIES, flags and
 * duplicate (function, index) pairs. */
void cpuid_encode(struct stream *w, const struct kvm_cpuid2 *c);
/* len: the record's payload length, checked against the entry count. */
int cpuid_decode(struct stream *r, uint32_t len, struct kvm_cpuid2 **out, struct err *e);
#define CPUID_ENTRY_WIRE 28 /* seven u32 per entry */

#endif
