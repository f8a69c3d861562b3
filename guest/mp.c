/*
 * vCPU discovery from the Intel MultiProcessor Specification table (both
 * ferry and SeaBIOS provide one): find the "_MP_" floating pointer in the
 * EBDA, the last KiB of base memory or the BIOS ROM area, then list the
 * enabled processor entries of its "PCMP" configuration table. Runs at
 * CPL3; every length and address read from the table is checked.
 */
#include "lib.h"
#include "user.h"

static const uint8_t *at(uint64_t a)
{
	__asm__("" : "+r"(a)); /* a constant address, not a null-based array */
	return (const uint8_t *)a;
}

static int sum_ok(const uint8_t *p, uint64_t len)
{
	uint8_t s = 0;
	for (uint64_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return s == 0;
}

static const uint8_t *scan(uint64_t base, uint64_t len)
{
	for (uint64_t a = base & ~15ULL; a + 16 <= base + len; a += 16) {
		const uint8_t *p = at(a);
		if (p[0] == '_' && p[1] == 'M' && p[2] == 'P' && p[3] == '_' && p[8] == 1 &&
		    sum_ok(p, 16))
			return p;
	}
	return 0;
}

unsigned mp_find_cpus(uint32_t *apic_ids, unsigned max, uint32_t base_mem_kib)
{
	const uint8_t *fp = 0;
	uint64_t ebda = (uint64_t)*(const uint16_t *)at(0x40e) << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		fp = scan(ebda, 1024);
	if (!fp) {
		uint64_t top = base_mem_kib >= 64 && base_mem_kib <= 640 ? base_mem_kib : 640;
		fp = scan(top * 1024 - 1024, 1024);
	}
	if (!fp)
		fp = scan(0xf0000, 0x10000);
	if (!fp)
		return 0;
	uint32_t cfg = *(const uint32_t *)(fp + 4);
	if (cfg == 0) /* one of the spec's default configurations: no list */
		return 0;
	const uint8_t *t = at(cfg);
	uint16_t len = *(const uint16_t *)(t + 4);
	uint16_t count = *(const uint16_t *)(t + 34);
	if (t[0] != 'P' || t[1] != 'C' || t[2] != 'M' || t[3] != 'P' || len < 44 ||
	    (uint64_t)cfg + len > 0x100000000ULL || !sum_ok(t, len))
		return 0;
	unsigned n = 0;
	uint32_t off = 44;
	for (uint16_t i = 0; i < count && off < len; i++) {
		const uint8_t *e = t + off;
		if (e[0] == 0) { /* processor: id at 1, flags at 3 (enabled, BSP) */
			if (off + 20 > len)
				break;
			if ((e[3] & 1) && n < max) {
				if ((e[3] & 2) && n > 0) { /* keep the BSP first */
					apic_ids[n++] = apic_ids[0];
					apic_ids[0] = e[1];
				} else {
					apic_ids[n++] = e[1];
				}
			}
			off += 20;
		} else if (e[0] <= 4) {
			off += 8;
		} else {
			break;
		}
	}
	return n;
}
