/*
 * Named CPUID feature bits and the user's feature mask. Names follow
 * Linux's /proc/cpuinfo spelling so an administrator can copy them from a
 * host. Dependencies mirror the kernel's cpuid-deps.c for the bits we
 * name: hiding xsave also hides AVX and everything built on it, since a
 * guest seeing AVX without XSAVE would fault trying to use it.
 */
#include "vmm/x86/cpuid.h"

#include <string.h>

#define L7   0x7
#define LX   0x80000001
#define F(n, l, s, r, b, req) { n, l, s, r, b, req }

static const struct cpuid_feature features[] = {
	F("sse3",        1, 0, CPUID_ECX, 0, NULL),
	F("pclmulqdq",   1, 0, CPUID_ECX, 1, NULL),
	F("monitor",     1, 0, CPUID_ECX, 3, NULL),
	F("ssse3",       1, 0, CPUID_ECX, 9, "sse3"),
	F("fma",         1, 0, CPUID_ECX, 12, "avx"),
	F("cx16",        1, 0, CPUID_ECX, 13, NULL),
	F("pcid",        1, 0, CPUID_ECX, 17, NULL),
	F("sse4_1",      1, 0, CPUID_ECX, 19, "ssse3"),
	F("sse4_2",      1, 0, CPUID_ECX, 20, "sse4_1"),
	F("x2apic",      1, 0, CPUID_ECX, 21, NULL),
	F("movbe",       1, 0, CPUID_ECX, 22, NULL),
	F("popcnt",      1, 0, CPUID_ECX, 23, NULL),
	F("tsc_deadline", 1, 0, CPUID_ECX, 24, NULL),
	F("aes",         1, 0, CPUID_ECX, 25, NULL),
	F("xsave",       1, 0, CPUID_ECX, 26, NULL),
	F("avx",         1, 0, CPUID_ECX, 28, "xsave"),
	F("f16c",        1, 0, CPUID_ECX, 29, "avx"),
	F("rdrand",      1, 0, CPUID_ECX, 30, NULL),
	F("fsgsbase",    L7, 0, CPUID_EBX, 0, NULL),
	F("bmi1",        L7, 0, CPUID_EBX, 3, NULL),
	F("hle",         L7, 0, CPUID_EBX, 4, NULL),
	F("avx2",        L7, 0, CPUID_EBX, 5, "avx"),
	F("smep",        L7, 0, CPUID_EBX, 7, NULL),
	F("bmi2",        L7, 0, CPUID_EBX, 8, NULL),
	F("erms",        L7, 0, CPUID_EBX, 9, NULL),
	F("invpcid",     L7, 0, CPUID_EBX, 10, NULL),
	F("rtm",         L7, 0, CPUID_EBX, 11, NULL),
	F("avx512f",     L7, 0, CPUID_EBX, 16, "avx"),
	F("avx512dq",    L7, 0, CPUID_EBX, 17, "avx512f"),
	F("rdseed",      L7, 0, CPUID_EBX, 18, NULL),
	F("adx",         L7, 0, CPUID_EBX, 19, NULL),
	F("smap",        L7, 0, CPUID_EBX, 20, NULL),
	F("clflushopt",  L7, 0, CPUID_EBX, 23, NULL),
	F("clwb",        L7, 0, CPUID_EBX, 24, NULL),
	F("avx512cd",    L7, 0, CPUID_EBX, 28, "avx512f"),
	F("sha_ni",      L7, 0, CPUID_EBX, 29, NULL),
	F("avx512bw",    L7, 0, CPUID_EBX, 30, "avx512f"),
	F("avx512vl",    L7, 0, CPUID_EBX, 31, "avx512f"),
	F("avx512vbmi",  L7, 0, CPUID_ECX, 1, "avx512f"),
	F("umip",        L7, 0, CPUID_ECX, 2, NULL),
	F("pku",         L7, 0, CPUID_ECX, 3, "xsave"),
	F("waitpkg",     L7, 0, CPUID_ECX, 5, NULL),
	F("gfni",        L7, 0, CPUID_ECX, 8, NULL),
	F("vaes",        L7, 0, CPUID_ECX, 9, "avx"),
	F("vpclmulqdq",  L7, 0, CPUID_ECX, 10, "avx"),
	F("avx512_vnni", L7, 0, CPUID_ECX, 11, "avx512f"),
	F("la57",        L7, 0, CPUID_ECX, 16, NULL),
	F("rdpid",       L7, 0, CPUID_ECX, 22, NULL),
	F("md_clear",    L7, 0, CPUID_EDX, 10, NULL),
	F("serialize",   L7, 0, CPUID_EDX, 14, NULL),
	F("arch_capabilities", L7, 0, CPUID_EDX, 29, NULL),
	F("xsaveopt",    0xd, 1, CPUID_EAX, 0, "xsave"),
	F("xsavec",      0xd, 1, CPUID_EAX, 1, "xsave"),
	F("xgetbv1",     0xd, 1, CPUID_EAX, 2, "xsave"),
	F("xsaves",      0xd, 1, CPUID_EAX, 3, "xsave"),
	F("lahf_lm",     LX, 0, CPUID_ECX, 0, NULL),
	F("abm",         LX, 0, CPUID_ECX, 5, NULL),
	F("sse4a",       LX, 0, CPUID_ECX, 6, NULL),
	F("3dnowprefetch", LX, 0, CPUID_ECX, 8, NULL),
	F("pdpe1gb",     LX, 0, CPUID_EDX, 26, NULL),
	F("rdtscp",      LX, 0, CPUID_EDX, 27, NULL),
	F("invtsc",      0x80000007, 0, CPUID_EDX, 8, NULL),
};
#define NFEATURES (sizeof(features) / sizeof(features[0]))
_Static_assert(NFEATURES <= 64 * CPUID_MASK_WORDS, "feature mask too small");

const struct cpuid_feature *cpuid_features(size_t *n)
{
	*n = NFEATURES;
	return features;
}

int cpuid_feature_find(const char *name)
{
	for (size_t i = 0; i < NFEATURES; i++)
		if (strcmp(features[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool cpuid_mask_hides(const struct cpuid_mask *m, int i)
{
	return (m->clear[i / 64] >> (i % 64)) & 1;
}

static void set_clear(struct cpuid_mask *m, int i, bool on)
{
	if (on)
		m->clear[i / 64] |= 1ULL << (i % 64);
	else
		m->clear[i / 64] &= ~(1ULL << (i % 64));
}

/* Hide everything whose prerequisite is hidden, until nothing changes
 * (chains such as xsave -> avx -> avx512f -> avx512bw). */
static void close_deps(struct cpuid_mask *m)
{
	bool changed = true;
	while (changed) {
		changed = false;
		for (size_t i = 0; i < NFEATURES; i++) {
			int r;
			if (!features[i].requires || cpuid_mask_hides(m, (int)i))
				continue;
			r = cpuid_feature_find(features[i].requires);
			if (r >= 0 && cpuid_mask_hides(m, r)) {
				set_clear(m, (int)i, true);
				changed = true;
			}
		}
	}
}

int cpuid_parse_mask(const char *s, struct cpuid_mask *m, struct err *e)
{
	char name[32];
	int invtsc = cpuid_feature_find("invtsc");

	memset(m, 0, sizeof(*m));
	while (s && *s) {
		size_t n = strcspn(s, ",");
		char sign = *s;
		int i;

		if (n == 0) {
			s++;
			continue;
		}
		if ((sign != '-' && sign != '+') || n < 2)
			return err_set(e, "CPU feature mask: \"%.*s\" must be -name or +name",
				       (int)n, s);
		if (n - 1 >= sizeof(name))
			return err_set(e, "CPU feature mask: unknown feature \"%.*s\"", (int)(n - 1), s + 1);
		memcpy(name, s + 1, n - 1);
		name[n - 1] = '\0';
		i = cpuid_feature_find(name);
		if (i < 0)
			return err_set(e, "CPU feature mask: unknown feature \"%s\"", name);
		set_clear(m, i, sign == '-');
		if (i == invtsc)
			m->invtsc = sign == '+';
		s += n;
	}
	close_deps(m);
	return 0;
}
