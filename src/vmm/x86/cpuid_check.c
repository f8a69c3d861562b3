/*
 * Can this host run a guest that already sees a given CPUID? Compares the
 * vendor and every feature register a guest acts on; a bit the guest has
 * but the host's KVM lacks is a reason to refuse an incoming migration,
 * named in words the administrator can act on (the mask names, or the raw
 * leaf/register/bit when the bit has no name).
 */
#include "vmm/x86/cpuid.h"

#include <stdio.h>
#include <string.h>

struct feat_reg {
	uint32_t leaf, sub;
	uint8_t reg;
	uint32_t ignore; /* bits the VMM sets itself, not taken from the host */
};

static const struct feat_reg checked[] = {
	/* leaf 1 ECX: TSC deadline (24, handled apart), OSXSAVE (27, mirrors
	 * CR4), hypervisor (31). EDX: HTT (28) describes our topology. */
	{ 0x1, 0, CPUID_ECX, (1u << 24) | (1u << 27) | (1u << 31) },
	{ 0x1, 0, CPUID_EDX, 1u << 28 },
	{ 0x7, 0, CPUID_EBX, 0 },
	{ 0x7, 0, CPUID_ECX, 1u << 4 /* OSPKE mirrors CR4 (bit 27 is MOVDIRI, a real feature) */ },
	{ 0x7, 0, CPUID_EDX, 0 },
	{ 0x7, 1, CPUID_EAX, 0 },
	{ 0xd, 0, CPUID_EAX, 0 },   /* XCR0 components, low half */
	{ 0xd, 0, CPUID_EDX, 0 },
	{ 0xd, 1, CPUID_EAX, 0 },
	{ 0x80000001, 0, CPUID_ECX, 0 },
	{ 0x80000001, 0, CPUID_EDX, 0 },
	{ 0x80000007, 0, CPUID_EDX, 0 },
	{ 0x80000008, 0, CPUID_EBX, 0 },
	{ 0x40000001, 0, CPUID_EAX, 0 },
};

static const char regname[4][4] = { "eax", "ebx", "ecx", "edx" };

static void bit_name(const struct feat_reg *r, int bit, char *buf, size_t len)
{
	size_t n;
	const struct cpuid_feature *f = cpuid_features(&n);

	for (size_t i = 0; i < n; i++) {
		if (f[i].leaf == r->leaf && f[i].subleaf == r->sub && f[i].reg == r->reg &&
		    f[i].bit == bit) {
			snprintf(buf, len, "%s", f[i].name);
			return;
		}
	}
	if (r->leaf == 0xd && r->sub == 0)
		snprintf(buf, len, "xsave-component-%d", bit + (r->reg == CPUID_EDX ? 32 : 0));
	else
		snprintf(buf, len, "cpuid.%#x.%u.%s[%d]", r->leaf, r->sub, regname[r->reg], bit);
}

static void append(char *why, size_t whylen, const char *s)
{
	size_t cur = strlen(why);
	if (cur + 1 >= whylen)
		return;
	snprintf(why + cur, whylen - cur, "%s%s", cur ? " " : "", s);
}

static void vendor(const struct kvm_cpuid2 *c, char out[13])
{
	const struct kvm_cpuid_entry2 *v = cpuid_find(c, 0, 0);
	memset(out, 0, 13);
	if (v) {
		memcpy(out, &v->ebx, 4);
		memcpy(out + 4, &v->edx, 4);
		memcpy(out + 8, &v->ecx, 4);
	}
}

int cpuid_compare(const struct kvm_cpuid2 *host, const struct kvm_cpuid2 *guest,
		  bool host_tsc_deadline, char *why, size_t whylen)
{
	char hv[13], gv[13], name[48];
	int missing = 0;

	if (whylen)
		why[0] = '\0';
	vendor(host, hv);
	vendor(guest, gv);
	if (strcmp(hv, gv) != 0) {
		snprintf(why, whylen, "CPU vendor differs: guest sees \"%s\", host has \"%s\"", gv, hv);
		return -1;
	}
	for (size_t i = 0; i < sizeof(checked) / sizeof(checked[0]); i++) {
		const struct feat_reg *r = &checked[i];
		struct kvm_cpuid_entry2 *g = cpuid_find(guest, r->leaf, r->sub);
		struct kvm_cpuid_entry2 *h = cpuid_find(host, r->leaf, r->sub);
		uint32_t gbits, hbits, lack;

		if (!g)
			continue;
		gbits = *cpuid_reg_ptr(g, r->reg) & ~r->ignore;
		hbits = h ? *cpuid_reg_ptr(h, r->reg) : 0;
		lack = gbits & ~hbits;
		for (int b = 0; b < 32; b++) {
			if (!(lack >> b & 1))
				continue;
			if (!missing)
				append(why, whylen, "host CPU lacks:");
			bit_name(r, b, name, sizeof(name));
			append(why, whylen, name);
			missing++;
		}
	}
	{
		struct kvm_cpuid_entry2 *g = cpuid_find(guest, 1, 0);
		if (g && (g->ecx & (1u << 24)) && !host_tsc_deadline) {
			if (!missing)
				append(why, whylen, "host CPU lacks:");
			append(why, whylen, "tsc_deadline");
			missing++;
		}
	}
	return missing ? -1 : 0;
}

int cpuid_check_mask(const struct kvm_cpuid2 *guest, const char *mask, char *why, size_t whylen)
{
	struct cpuid_mask m;
	struct err e;
	size_t n, used = 0;
	const struct cpuid_feature *f = cpuid_features(&n);
	int bad = 0;
	if (whylen)
		why[0] = '\0';
	if (!mask || !*mask)
		return 0;
	if (cpuid_parse_mask(mask, &m, &e) < 0) {
		snprintf(why, whylen, "host CPU mask: %.300s", e.msg);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *g;
		if (!cpuid_mask_hides(&m, (int)i))
			continue;
		g = cpuid_find(guest, f[i].leaf, f[i].subleaf);
		if (!g || !((*cpuid_reg_ptr(g, f[i].reg) >> f[i].bit) & 1))
			continue;
		used += (size_t)snprintf(why + used, used < whylen ? whylen - used : 0, "%s%s",
					 bad ? " " : "host CPU lacks (by this host's CPU mask): ", f[i].name);
		bad++;
	}
	return bad ? -1 : 0;
}
