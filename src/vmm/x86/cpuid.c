/*
 * CPUID normalization (see cpuid.h). Works on a copy of the host's
 * supported table; every change is one of: the per-vCPU identity (APIC id,
 * topology leaves), bits the VMM emulates (hypervisor, TSC deadline), or
 * bits hidden to keep the migration surface small (PMU, VMX/SVM, invariant
 * TSC) and the user's mask.
 */
#include "vmm/x86/cpuid.h"

#include <stdlib.h>
#include <string.h>

#define LEAF_VENDOR     0x0
#define LEAF_FEATURES   0x1
#define LEAF_CACHE      0x4
#define LEAF_PMU        0xa
#define LEAF_TOPO       0xb
#define LEAF_XSAVE      0xd
#define LEAF_TOPO2      0x1f
#define LEAF_KVM_SIG    0x40000000
#define LEAF_KVM_FEAT   0x40000001
#define LEAF_EXT        0x80000001
#define LEAF_APM        0x80000007
#define LEAF_ADDR       0x80000008
#define LEAF_SVM        0x8000000a
#define LEAF_AMD_CACHE  0x8000001d
#define LEAF_AMD_TOPO   0x8000001e
#define LEAF_AMD_PMU    0x80000022

#define L1_ECX_VMX       (1u << 5)
#define L1_ECX_PDCM      (1u << 15)
#define L1_ECX_TSC_DL    (1u << 24)
#define L1_ECX_HYPERV    (1u << 31)
#define L1_EDX_HTT       (1u << 28)
#define EXT_ECX_SVM      (1u << 2)
#define EXT_ECX_PERFCTR  ((1u << 23) | (1u << 24) | (1u << 28))
#define APM_EDX_INVTSC   (1u << 8)
#define TOPO_SPARE       4 /* room for the 0xB/0x1F subleaves we add */

struct kvm_cpuid2 *cpuid_alloc(uint32_t cap)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)cap * sizeof(c->entries[0]));
	return c;
}

struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *x = (struct kvm_cpuid_entry2 *)&c->entries[i];
		if (x->function != fn)
			continue;
		if (!(x->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || x->index == idx)
			return x;
	}
	return NULL;
}

uint32_t *cpuid_reg_ptr(struct kvm_cpuid_entry2 *ent, int reg)
{
	switch (reg) {
	case CPUID_EAX: return &ent->eax;
	case CPUID_EBX: return &ent->ebx;
	case CPUID_ECX: return &ent->ecx;
	default:        return &ent->edx;
	}
}

/* Bits needed to number n things: the x2APIC id shift of the core level. */
static uint32_t id_bits(int n)
{
	uint32_t b = 0;
	while ((1 << b) < n)
		b++;
	return b;
}

static void drop_leaf(struct kvm_cpuid2 *c, uint32_t fn)
{
	uint32_t j = 0;
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function != fn)
			c->entries[j++] = c->entries[i];
	c->nent = j;
}

/* Leaves 0xB and 0x1F: an SMT level of one thread and a core level of
 * nvcpus cores, so x2APIC id == vCPU index; subleaf 2 ends the list. */
static void put_topology(struct kvm_cpuid2 *c, uint32_t fn, int apic, int nvcpus)
{
	static const uint32_t types[3] = { 1, 2, 0 }; /* SMT, core, invalid */

	drop_leaf(c, fn);
	for (uint32_t sub = 0; sub < 3; sub++) {
		struct kvm_cpuid_entry2 *x = &c->entries[c->nent++];
		memset(x, 0, sizeof(*x));
		x->function = fn;
		x->index = sub;
		x->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
		x->eax = sub == 1 ? id_bits(nvcpus) : 0;
		x->ebx = sub == 0 ? 1 : sub == 1 ? (uint32_t)nvcpus : 0;
		x->ecx = types[sub] << 8 | sub;
		x->edx = (uint32_t)apic;
	}
}

/* Deterministic cache leaves (Intel 4, AMD 0x8000001D): L1/L2 private to
 * the core (one thread), L3 shared by the whole socket. */
static void fix_cache_leaf(struct kvm_cpuid_entry2 *x, int nvcpus, int intel)
{
	uint32_t level = (x->eax >> 5) & 7;
	uint32_t share = level >= 3 ? (uint32_t)nvcpus - 1 : 0;

	if ((x->eax & 0x1f) == 0)
		return; /* "no more caches" */
	x->eax &= ~0x03ffc000u;
	x->eax |= (share & 0xfff) << 14;
	if (intel) {
		x->eax &= ~0xfc000000u;
		x->eax |= (((uint32_t)nvcpus - 1) & 0x3f) << 26;
	}
}

static void apply_mask(struct kvm_cpuid2 *c, const struct cpuid_mask *mask)
{
	size_t n;
	const struct cpuid_feature *f = cpuid_features(&n);

	for (size_t i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *x;
		if (!cpuid_mask_hides(mask, (int)i))
			continue;
		x = cpuid_find(c, f[i].leaf, f[i].subleaf);
		if (x)
			*cpuid_reg_ptr(x, f[i].reg) &= ~(1u << f[i].bit);
	}
}

static void zero_regs(struct kvm_cpuid_entry2 *x)
{
	x->eax = x->ebx = x->ecx = x->edx = 0;
}

static int is_intel(const struct kvm_cpuid2 *c)
{
	const struct kvm_cpuid_entry2 *v = cpuid_find(c, LEAF_VENDOR, 0);
	/* "GenuineIntel": EBX "Genu", EDX "ineI", ECX "ntel". */
	return v && v->ebx == 0x756e6547 && v->edx == 0x49656e69 && v->ecx == 0x6c65746e;
}

int cpuid_normalize(const struct kvm_cpuid2 *sup, const struct cpuid_mask *mask,
		    int vcpu_index, int nvcpus, struct kvm_cpuid2 **out, struct err *e)
{
	struct cpuid_mask none;
	struct kvm_cpuid2 *c;
	struct kvm_cpuid_entry2 *x;
	int intel, hide_xsave, tscdl = cpuid_feature_find("tsc_deadline");
	uint32_t max_basic;

	*out = NULL;
	if (!mask) {
		memset(&none, 0, sizeof(none));
		mask = &none;
	}
	if (nvcpus < 1 || nvcpus > 255 || vcpu_index < 0 || vcpu_index >= nvcpus)
		return err_set(e, "cpuid: vCPU %d of %d", vcpu_index, nvcpus);
	if (sup->nent == 0 || sup->nent > CPUID_MAX_ENTRIES)
		return err_set(e, "cpuid: supported table has %u entries", sup->nent);
	x = cpuid_find(sup, LEAF_VENDOR, 0);
	if (!x || !cpuid_find(sup, LEAF_FEATURES, 0))
		return err_set(e, "cpuid: supported table lacks leaf 0 or 1");
	max_basic = x->eax;

	c = cpuid_alloc(sup->nent + 2 * TOPO_SPARE);
	if (!c)
		return err_set(e, "cpuid: out of memory");
	c->nent = sup->nent;
	memcpy(c->entries, sup->entries, sup->nent * sizeof(c->entries[0]));
	intel = is_intel(c);
	apply_mask(c, mask);

	x = cpuid_find(c, LEAF_FEATURES, 0);
	x->ebx = (x->ebx & 0x0000ffffu) | (uint32_t)vcpu_index << 24 | ((uint32_t)nvcpus & 0xff) << 16;
	x->ecx |= L1_ECX_HYPERV;
	x->ecx &= ~(L1_ECX_VMX | L1_ECX_PDCM);
	/* KVM emulates the TSC-deadline timer in its LAPIC but does not list
	 * it as supported; QEMU and Firecracker set it the same way. */
	if (!cpuid_mask_hides(mask, tscdl))
		x->ecx |= L1_ECX_TSC_DL;
	if (nvcpus > 1)
		x->edx |= L1_EDX_HTT;
	else
		x->edx &= ~L1_EDX_HTT;
	hide_xsave = !(x->ecx & (1u << 26));

	for (uint32_t i = 0; i < c->nent; i++) {
		x = &c->entries[i];
		switch (x->function) {
		case LEAF_CACHE:
			if (intel)
				fix_cache_leaf(x, nvcpus, 1);
			break;
		case LEAF_AMD_CACHE:
			fix_cache_leaf(x, nvcpus, 0);
			break;
		case LEAF_PMU:
		case LEAF_SVM:
		case LEAF_AMD_PMU:
			zero_regs(x);
			break;
		case LEAF_XSAVE:
			if (hide_xsave)
				zero_regs(x);
			break;
		case LEAF_KVM_SIG:
			if (x->eax < LEAF_KVM_FEAT)
				x->eax = LEAF_KVM_FEAT;
			memcpy(&x->ebx, "KVMK", 4);
			memcpy(&x->ecx, "VMKV", 4);
			memcpy(&x->edx, "M\0\0\0", 4);
			break;
		case LEAF_EXT:
			x->ecx &= ~(EXT_ECX_SVM | EXT_ECX_PERFCTR);
			break;
		case LEAF_APM:
			if (!mask->invtsc)
				x->edx &= ~APM_EDX_INVTSC;
			break;
		case LEAF_ADDR:
			if (!intel)
				x->ecx = (x->ecx & ~0xf0ffu) | id_bits(nvcpus) << 12 |
					 (((uint32_t)nvcpus - 1) & 0xff);
			break;
		case LEAF_AMD_TOPO:
			x->eax = (uint32_t)vcpu_index;
			x->ebx = (uint32_t)vcpu_index & 0xff; /* core id, 1 thread/core */
			x->ecx = 0;                           /* node 0, 1 node */
			break;
		default:
			break;
		}
	}
	if (max_basic >= LEAF_TOPO)
		put_topology(c, LEAF_TOPO, vcpu_index, nvcpus);
	if (max_basic >= LEAF_TOPO2 && cpuid_find(sup, LEAF_TOPO2, 0))
		put_topology(c, LEAF_TOPO2, vcpu_index, nvcpus);
	*out = c;
	return 0;
}
