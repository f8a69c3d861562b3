/*
 * CPUID normalization and the migration checks, on a synthetic "host
 * supported" table so no /dev/kvm is needed: per-vCPU APIC ids and
 * topology leaves, hidden PMU/VMX/invariant TSC, the user's feature mask
 * with its dependencies, the destination check's missing-feature message,
 * and the stream encoding against hostile input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream.h"
#include "vmm/x86/cpuid.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX

static void put(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, uint32_t flags,
		uint32_t a, uint32_t b, uint32_t cx, uint32_t d)
{
	struct kvm_cpuid_entry2 *x = &c->entries[c->nent++];
	memset(x, 0, sizeof(*x));
	x->function = fn;
	x->index = idx;
	x->flags = flags;
	x->eax = a;
	x->ebx = b;
	x->ecx = cx;
	x->edx = d;
}

#define B(n) (1u << (n))

/* A plausible Intel host as KVM_GET_SUPPORTED_CPUID would report it. */
static struct kvm_cpuid2 *host_table(void)
{
	struct kvm_cpuid2 *c = cpuid_alloc(64);

	put(c, 0, 0, 0, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69); /* GenuineIntel */
	/* leaf 1: sse3 ssse3 x2apic xsave avx vmx pdcm; EBX: clflush 8, apic id 5 */
	put(c, 1, 0, 0, 0x906ea, 0x05000800,
	    B(0) | B(9) | B(21) | B(26) | B(28) | B(5) | B(15), B(0) | B(9) | B(25));
	put(c, 4, 0, SIG, 0x1c004121, 0, 0, 0); /* L1d, 8 cores / 2 threads on host */
	put(c, 4, 1, SIG, 0x1c004122, 0, 0, 0);
	put(c, 4, 2, SIG, 0x1c004143, 0, 0, 0);
	put(c, 4, 3, SIG, 0x1c03c163, 0, 0, 0); /* L3 shared by 16 */
	put(c, 4, 4, SIG, 0, 0, 0, 0);
	/* leaf 7: avx2 erms avx512f avx512bw; ecx: pku */
	put(c, 7, 0, SIG, 0, B(5) | B(9) | B(16) | B(30), B(3), 0);
	put(c, 0xa, 0, 0, 0x07300404, 0, 0, 0x603);
	put(c, 0xb, 0, SIG, 1, 2, 0x100, 5);
	put(c, 0xb, 1, SIG, 4, 16, 0x201, 5);
	put(c, 0xd, 0, SIG, 0x7, 0x340, 0x340, 0);
	put(c, 0xd, 1, SIG, 0xf, 0, 0, 0);
	put(c, 0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
	put(c, 0x40000001, 0, 0, 0x1efb, 0, 0, 0);
	put(c, 0x80000000, 0, 0, 0x80000008, 0, 0, 0);
	put(c, 0x80000001, 0, 0, 0, 0, B(0), B(27) | B(29));
	put(c, 0x80000007, 0, 0, 0, 0, 0, B(8));
	put(c, 0x80000008, 0, 0, 0x3027, 0, 0, 0);
	return c;
}

static struct kvm_cpuid2 *norm(const struct kvm_cpuid2 *h, const char *mask, int idx, int n)
{
	struct cpuid_mask m;
	struct kvm_cpuid2 *out;
	struct err e;

	assert_int_equal(cpuid_parse_mask(mask, &m, &e), 0);
	if (cpuid_normalize(h, &m, idx, n, &out, &e) < 0)
		fail_msg("normalize: %s", e.msg);
	return out;
}

static void test_normalize_identity(void **state)
{
	struct kvm_cpuid2 *h = host_table();
	struct kvm_cpuid2 *g = norm(h, "", 2, 4);
	struct kvm_cpuid_entry2 *x;
	(void)state;

	x = cpuid_find(g, 1, 0);
	assert_int_equal(x->ebx >> 24, 2);
	assert_int_equal((x->ebx >> 16) & 0xff, 4);
	assert_int_equal(x->ebx & 0xffff, 0x0800);
	assert_true(x->ecx & B(31));           /* hypervisor */
	assert_true(x->ecx & B(24));           /* tsc deadline */
	assert_false(x->ecx & B(5));           /* vmx hidden */
	assert_false(x->ecx & B(15));          /* pdcm hidden */
	assert_true(x->edx & B(28));           /* HTT with >1 vCPU */

	/* x2APIC topology: SMT level of 1, core level of 4, then the end. */
	x = cpuid_find(g, 0xb, 0);
	assert_int_equal(x->eax, 0);
	assert_int_equal(x->ebx, 1);
	assert_int_equal(x->ecx, 0x100);
	assert_int_equal(x->edx, 2);
	x = cpuid_find(g, 0xb, 1);
	assert_int_equal(x->eax, 2);
	assert_int_equal(x->ebx, 4);
	assert_int_equal(x->ecx, 0x201);
	assert_int_equal(x->edx, 2);
	x = cpuid_find(g, 0xb, 2);
	assert_non_null(x);
	assert_int_equal(x->ebx, 0);
	assert_int_equal((x->ecx >> 8) & 0xff, 0);
	assert_int_equal(x->edx, 2);

	/* caches: 4 cores per package, L1/L2 private, L3 shared by all */
	x = cpuid_find(g, 4, 0);
	assert_int_equal(x->eax >> 26, 3);
	assert_int_equal((x->eax >> 14) & 0xfff, 0);
	assert_int_equal(x->eax & 0x3fff, 0x0121);
	x = cpuid_find(g, 4, 3);
	assert_int_equal(x->eax >> 26, 3);
	assert_int_equal((x->eax >> 14) & 0xfff, 3);
	x = cpuid_find(g, 4, 4);
	assert_int_equal(x->eax, 0);

	x = cpuid_find(g, 0xa, 0);
	assert_true(x->eax == 0 && x->edx == 0);      /* no PMU */
	x = cpuid_find(g, 0x80000007, 0);
	assert_false(x->edx & B(8));                  /* invtsc hidden */
	x = cpuid_find(g, 0x40000000, 0);
	assert_memory_equal(&x->ebx, "KVMK", 4);
	assert_memory_equal(&x->ecx, "VMKV", 4);
	assert_memory_equal(&x->edx, "M\0\0\0", 4);
	assert_non_null(cpuid_find(g, 0x40000001, 0));
	free(g);

	/* one vCPU: no HTT, core shift 0 */
	g = norm(h, "", 0, 1);
	assert_false(cpuid_find(g, 1, 0)->edx & B(28));
	assert_int_equal(cpuid_find(g, 0xb, 1)->eax, 0);
	assert_int_equal(cpuid_find(g, 1, 0)->ebx >> 24, 0);
	free(g);

	/* bad indexes */
	{
		struct kvm_cpuid2 *o;
		struct err e;
		assert_int_equal(cpuid_normalize(h, NULL, 4, 4, &o, &e), -1);
		assert_int_equal(cpuid_normalize(h, NULL, 0, 0, &o, &e), -1);
	}
	free(h);
}

static void test_masks(void **state)
{
	struct kvm_cpuid2 *h = host_table();
	struct kvm_cpuid2 *g;
	(void)state;

	g = norm(h, "-avx2,-avx512f", 0, 1);
	uint32_t ebx7 = cpuid_find(g, 7, 0)->ebx;
	assert_false(ebx7 & B(5));
	assert_false(ebx7 & B(16));
	assert_false(ebx7 & B(30));   /* avx512bw goes with avx512f */
	assert_true(ebx7 & B(9));     /* erms stays */
	assert_true(cpuid_find(g, 1, 0)->ecx & B(28));  /* avx stays */
	free(g);

	/* No XSAVE: AVX, AVX2, AVX-512, PKU and leaf 0xD all disappear. */
	g = norm(h, "-xsave", 0, 1);
	assert_false(cpuid_find(g, 1, 0)->ecx & B(26));
	assert_false(cpuid_find(g, 1, 0)->ecx & B(28));
	assert_false(cpuid_find(g, 7, 0)->ebx & B(5));
	assert_false(cpuid_find(g, 7, 0)->ecx & B(3));
	assert_int_equal(cpuid_find(g, 0xd, 0)->eax, 0);
	assert_int_equal(cpuid_find(g, 0xd, 1)->eax, 0);
	free(g);

	g = norm(h, "-tsc_deadline,-x2apic,+invtsc", 0, 1);
	assert_false(cpuid_find(g, 1, 0)->ecx & B(24));
	assert_false(cpuid_find(g, 1, 0)->ecx & B(21));
	assert_true(cpuid_find(g, 0x80000007, 0)->edx & B(8));
	free(g);

	/* '+' undoes an earlier '-' */
	g = norm(h, "-erms,+erms", 0, 1);
	assert_true(cpuid_find(g, 7, 0)->ebx & B(9));
	free(g);
	free(h);
}

static void test_mask_errors(void **state)
{
	struct cpuid_mask m;
	struct err e;
	(void)state;

	assert_int_equal(cpuid_parse_mask("-avx2,-frobnicate", &m, &e), -1);
	assert_non_null(strstr(e.msg, "unknown feature \"frobnicate\""));
	assert_int_equal(cpuid_parse_mask("avx2", &m, &e), -1);
	assert_non_null(strstr(e.msg, "-name or +name"));
	assert_int_equal(cpuid_parse_mask("-", &m, &e), -1);
	assert_int_equal(cpuid_parse_mask("-averyveryverylongfeaturenamethatoverflows", &m, &e), -1);
	assert_int_equal(cpuid_parse_mask(NULL, &m, &e), 0);
	assert_int_equal(cpuid_parse_mask(",,", &m, &e), 0);

	/* every name the brief promises exists */
	static const char *names[] = { "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2",
		"avx512f", "aes", "xsave", "x2apic", "tsc_deadline", "rdrand", "rdseed", "pcid",
		"invpcid", "smep", "smap", "erms", "fsgsbase", "bmi1", "bmi2", "adx", "pku", "la57" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_true(cpuid_feature_find(names[i]) >= 0);
}

static void test_host_check(void **state)
{
	struct kvm_cpuid2 *h = host_table();
	struct kvm_cpuid2 *g = norm(h, "", 1, 2);
	struct kvm_cpuid2 *small = host_table();
	char why[256];
	(void)state;

	/* the same host can take its own guest */
	assert_int_equal(cpuid_compare(h, g, true, why, sizeof(why)), 0);
	assert_string_equal(why, "");
	/* ... but only with a TSC-deadline timer */
	assert_int_equal(cpuid_compare(h, g, false, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "tsc_deadline"));

	/* a destination without AVX-512 and XSAVE component 2 (AVX) */
	cpuid_find(small, 7, 0)->ebx &= ~(B(16) | B(30));
	cpuid_find(small, 0xd, 0)->eax &= ~B(2);
	assert_int_equal(cpuid_compare(small, g, true, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "host CPU lacks:"));
	assert_non_null(strstr(why, "avx512f"));
	assert_non_null(strstr(why, "avx512bw"));
	assert_non_null(strstr(why, "xsave-component-2"));
	assert_null(strstr(why, "avx2"));

	/* masking the guest makes it fit */
	free(g);
	g = norm(h, "-avx512f", 1, 2);
	cpuid_find(small, 0xd, 0)->eax |= B(2);
	assert_int_equal(cpuid_compare(small, g, true, why, sizeof(why)), 0);

	/* MOVDIRI (7.0 ECX bit 27) is a feature like any other: a guest that
	 * sees it needs a host that has it; OSPKE (bit 4) mirrors CR4 and
	 * is not compared */
	{
		struct kvm_cpuid2 *h2 = host_table(), *g2;
		cpuid_find(h2, 7, 0)->ecx |= B(27) | B(4);
		g2 = norm(h2, "", 1, 2);
		cpuid_find(g2, 7, 0)->ecx |= B(27) | B(4);
		cpuid_find(h2, 7, 0)->ecx &= ~B(4);
		assert_int_equal(cpuid_compare(h2, g2, true, why, sizeof(why)), 0);
		cpuid_find(h2, 7, 0)->ecx &= ~B(27);
		assert_int_equal(cpuid_compare(h2, g2, true, why, sizeof(why)), -1);
		free(g2);
		free(h2);
	}

	/* a host whose KVM does not report leaf 7 at all has none of its
	 * features: the guest's leaf-7 bits are missing, not unknown */
	{
		struct kvm_cpuid2 *h3 = host_table();
		cpuid_find(h3, 7, 0)->function = 0x3ffffff0; /* a leaf nobody compares */
		assert_int_equal(cpuid_compare(h3, g, true, why, sizeof(why)), -1);
		assert_non_null(strstr(why, "avx2"));
		free(h3);
	}

	/* a short buffer truncates the message but still fails */
	cpuid_find(small, 7, 0)->ebx &= ~B(9);
	assert_int_equal(cpuid_compare(small, g, true, why, 8), -1);
	assert_true(strlen(why) < 8);

	/* vendor mismatch */
	memcpy(&cpuid_find(small, 0, 0)->ebx, "Auth", 4);
	assert_int_equal(cpuid_compare(small, g, true, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "vendor"));
	free(g);
	free(small);
	free(h);
}

static void test_stream_roundtrip(void **state)
{
	struct kvm_cpuid2 *h = host_table();
	struct kvm_cpuid2 *g = norm(h, "-avx2", 3, 4), *back;
	struct stream w, r;
	struct err e;
	(void)state;

	stream_init_mem_writer(&w);
	cpuid_encode(&w, g);
	assert_true(stream_ok(&w));
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(cpuid_decode(&r, (uint32_t)stream_mem_len(&w), &back, &e), 0);
	assert_int_equal(back->nent, g->nent);
	for (uint32_t i = 0; i < g->nent; i++) {
		assert_int_equal(back->entries[i].function, g->entries[i].function);
		assert_int_equal(back->entries[i].index, g->entries[i].index);
		assert_int_equal(back->entries[i].flags, g->entries[i].flags);
		assert_int_equal(back->entries[i].eax, g->entries[i].eax);
		assert_int_equal(back->entries[i].ebx, g->entries[i].ebx);
		assert_int_equal(back->entries[i].ecx, g->entries[i].ecx);
		assert_int_equal(back->entries[i].edx, g->entries[i].edx);
	}
	stream_destroy(&r);
	free(back);

	/* truncated */
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w) - 3);
	assert_int_equal(cpuid_decode(&r, (uint32_t)stream_mem_len(&w), &back, &e), -1);
	assert_null(back);
	stream_destroy(&r);
	/* a record length that does not fit the count: refused before the entries */
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(cpuid_decode(&r, 0, &back, &e), -1);
	assert_non_null(strstr(e.msg, "a record of 0 bytes"));
	stream_destroy(&r);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(cpuid_decode(&r, (uint32_t)stream_mem_len(&w) - 28, &back, &e), -1);
	assert_non_null(strstr(e.msg, "entries in a record of"));
	assert_null(back);
	stream_destroy(&r);
	stream_destroy(&w);
	free(g);
	free(h);
}

static void test_stream_hostile(void **state)
{
	struct kvm_cpuid2 *out;
	struct stream w, r;
	struct err e;
	(void)state;

	/* count above the limit: refused before any allocation */
	stream_init_mem_writer(&w);
	stream_put_u32(&w, 300);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(cpuid_decode(&r, (uint32_t)stream_mem_len(&w), &out, &e), -1);
	assert_non_null(strstr(e.msg, "300 entries"));
	stream_destroy(&r);
	stream_destroy(&w);

	/* duplicate (function, index) */
	stream_init_mem_writer(&w);
	stream_put_u32(&w, 2);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 7; j++)
			stream_put_u32(&w, j == 0 ? 7 : 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(cpuid_decode(&r, (uint32_t)stream_mem_len(&w), &out, &e), -1);
	assert_non_null(strstr(e.msg, "duplicate"));
	stream_destroy(&r);
	stream_destroy(&w);

	/* unknown flags */
	stream_init_mem_writer(&w);
	stream_put_u32(&w, 1);
	for (int j = 0; j < 7; j++)
		stream_put_u32(&w, j == 2 ? 0x100 : 0);
	stream_init_mem_reader(&r, stream_mem_data(&w), stream_mem_len(&w));
	assert_int_equal(cpuid_decode(&r, (uint32_t)stream_mem_len(&w), &out, &e), -1);
	assert_non_null(strstr(e.msg, "flags"));
	stream_destroy(&r);
	stream_destroy(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize_identity),
		cmocka_unit_test(test_masks),
		cmocka_unit_test(test_mask_errors),
		cmocka_unit_test(test_host_check),
		cmocka_unit_test(test_stream_roundtrip),
		cmocka_unit_test(test_stream_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
