/*
 * Boot structures in guest memory: a 4-entry GDT at LAYOUT_BOOT_GDT (null,
 * code, data, TSS), an 8-byte null IDT at LAYOUT_BOOT_IDT (any interrupt
 * before the guest installs its own IDT is fatal, which is what we want:
 * the guest enters with interrupts off), and for long mode a PML4 -> PDPT
 * -> 4 PDs identity map of the first 4 GiB with 2 MiB pages, enough for a
 * kernel, its zero page and an initrd anywhere below the MMIO hole.
 */
#include "vmm/x86/boot.h"

#include <string.h>

#include "common/stream.h"
#include "vmm/x86/layout.h"

#define PTE_P   0x1ULL
#define PTE_RW  0x2ULL
#define PTE_PS  0x80ULL

/* GDT entry from access byte + flags nibble, in the packed form
 * Firecracker's gdt_entry() takes (0xa09b etc.). */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) |
	       ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) |
	       ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

static int write_gdt_idt(struct guest_mem *gm, struct boot_entry *be, struct err *e)
{
	uint8_t buf[4 * 8];
	uint64_t g[4];

	g[0] = 0;
	/* 0xa09b: present ring-0 code, L=1; 0xc09b: same with D=1 (32-bit). */
	g[1] = gdt_entry(be->mode == BOOT_MODE_LONG64 ? 0xa09b : 0xc09b, 0, 0xfffff);
	g[2] = gdt_entry(0xc093, 0, 0xfffff);           /* flat data, 4 KiB granular */
	g[3] = gdt_entry(0x008b, 0, 0x67);              /* busy 32/64-bit TSS, base 0 */
	for (int i = 0; i < 4; i++)
		le_put_u64(buf + 8 * i, g[i]);
	if (gmem_write(gm, LAYOUT_BOOT_GDT, buf, sizeof(buf)) < 0)
		return err_set(e, "boot GDT at 0x%llx is outside guest RAM",
			       (unsigned long long)LAYOUT_BOOT_GDT);
	memset(buf, 0, 8);
	if (gmem_write(gm, LAYOUT_BOOT_IDT, buf, 8) < 0)
		return err_set(e, "boot IDT is outside guest RAM");
	be->gdt_base = LAYOUT_BOOT_GDT;
	be->gdt_limit = sizeof(buf) - 1;
	be->idt_base = LAYOUT_BOOT_IDT;
	be->idt_limit = 7;
	return 0;
}

static int write_page_tables(struct guest_mem *gm, struct boot_entry *be, struct err *e)
{
	uint8_t page[GMEM_PAGE_SIZE];

	memset(page, 0, sizeof(page));
	le_put_u64(page, LAYOUT_PDPT | PTE_P | PTE_RW);
	if (gmem_write(gm, LAYOUT_PML4, page, sizeof(page)) < 0)
		return err_set(e, "boot PML4 is outside guest RAM");

	memset(page, 0, sizeof(page));
	for (int i = 0; i < 4; i++)
		le_put_u64(page + 8 * i, (LAYOUT_PD + (uint64_t)i * GMEM_PAGE_SIZE) | PTE_P | PTE_RW);
	if (gmem_write(gm, LAYOUT_PDPT, page, sizeof(page)) < 0)
		return err_set(e, "boot PDPT is outside guest RAM");

	for (int pd = 0; pd < 4; pd++) {
		for (int i = 0; i < 512; i++) {
			uint64_t addr = ((uint64_t)pd * 512 + (uint64_t)i) << 21;
			le_put_u64(page + 8 * i, addr | PTE_P | PTE_RW | PTE_PS);
		}
		if (gmem_write(gm, LAYOUT_PD + (uint64_t)pd * GMEM_PAGE_SIZE, page, sizeof(page)) < 0)
			return err_set(e, "boot page directory %d is outside guest RAM", pd);
	}
	be->cr3 = LAYOUT_PML4;
	return 0;
}

int boot_prepare_memory(struct guest_mem *gm, struct boot_entry *be, struct err *e)
{
	if (be->mode != BOOT_MODE_PROT32 && be->mode != BOOT_MODE_LONG64)
		return err_set(e, "boot: unknown mode %d", (int)be->mode);
	if (write_gdt_idt(gm, be, e) < 0)
		return -1;
	if (be->mode == BOOT_MODE_LONG64)
		return write_page_tables(gm, be, e);
	be->cr3 = 0;
	return 0;
}
