/*
 * e820 map construction (see e820.h). Pure: reads only gm->regions, so it
 * is unit-tested with hand-made region tables of any size.
 */
#include "vmm/x86/e820.h"

#include "vmm/x86/layout.h"

static void add(struct e820_map *m, uint64_t addr, uint64_t size, uint32_t type)
{
	m->e[m->n].addr = addr;
	m->e[m->n].size = size;
	m->e[m->n].type = type;
	m->n++;
}

int e820_build(const struct guest_mem *gm, struct e820_map *out, struct err *e)
{
	const struct gmem_region *r0 = &gm->regions[0];

	out->n = 0;
	if (gm->nregions < 1 || gm->nregions > GMEM_MAX_REGIONS)
		return err_set(e, "e820: guest memory has %d regions", gm->nregions);
	if (r0->gpa != 0 || r0->size <= LAYOUT_HIMEM_START)
		return err_set(e, "e820: region 0 must start at 0 and exceed 1 MiB "
			       "(gpa 0x%llx size 0x%llx)",
			       (unsigned long long)r0->gpa, (unsigned long long)r0->size);
	if (r0->size > LAYOUT_MMIO_HOLE_START)
		return err_set(e, "e820: region 0 runs into the MMIO hole");

	add(out, 0, LAYOUT_LOWMEM_END, E820_RAM);
	/* The EBDA page holds the MP table; the rest up to 1 MiB is where a
	 * PC has VGA memory and ROMs, which Linux expects not to be RAM. */
	add(out, LAYOUT_EBDA_START, LAYOUT_HIMEM_START - LAYOUT_EBDA_START, E820_RESERVED);
	add(out, LAYOUT_HIMEM_START, r0->size - LAYOUT_HIMEM_START, E820_RAM);
	if (gm->nregions == 2) {
		const struct gmem_region *r1 = &gm->regions[1];
		if (r1->gpa < LAYOUT_HIGH_RAM_START || r1->size == 0)
			return err_set(e, "e820: region 1 at 0x%llx is not high RAM",
				       (unsigned long long)r1->gpa);
		add(out, r1->gpa, r1->size, E820_RAM);
	}
	return 0;
}

int e820_is_ram(const struct e820_map *m, uint64_t addr, uint64_t len)
{
	if (addr + len < addr)
		return 0;
	for (int i = 0; i < m->n; i++) {
		const struct e820_entry *x = &m->e[i];
		if (x->type == E820_RAM && addr >= x->addr &&
		    addr + len <= x->addr + x->size)
			return 1;
	}
	return 0;
}

uint64_t e820_low_ram_end(const struct e820_map *m)
{
	for (int i = 0; i < m->n; i++)
		if (m->e[i].type == E820_RAM && m->e[i].addr == LAYOUT_HIMEM_START)
			return m->e[i].addr + m->e[i].size;
	return 0;
}
