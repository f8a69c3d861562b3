/*
 * The test guest's CPL0 core: descriptor tables, the local APIC, COM1, and
 * the service trap through which CPL3 code asks for what it cannot do
 * itself. On our hosts CPL0 code runs in KVM's instruction emulator
 * (~1M instructions/s), so every path here is short, polled and plain:
 * no SSE, no cmpxchg16b, no int3. The real work happens at CPL3 (main.c).
 */
#include <stdarg.h>

#include "guest.h"
#include "lib.h"

_Static_assert(FG_MAX_CPUS == FG_MAX_CPUS_ASM, "boot.S sizes");
_Static_assert(FG_TRAMPOLINE_GPA == FG_TRAMP_ASM, "boot.S trampoline");

#define COM1 0x3f8
#define LAPIC_BASE 0xfee00000UL
#define LAPIC_ID 0x20
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define MSR_TSC_DEADLINE 0x6e0
/* KVM's in-kernel LAPIC timer counts at 1 GHz (APIC bus cycle 1 ns). */
#define LAPIC_TIMER_HZ 1000000000ULL

struct tframe {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vec, err;
	uint64_t rip, cs, rflags, rsp, ss;
};

struct tss {
	uint32_t rsvd0;
	uint64_t rsp0, rsp1, rsp2, rsvd1;
	uint64_t ist[7];
	uint64_t rsvd2;
	uint16_t rsvd3, iomap;
} __attribute__((packed));

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, rsvd;
};

extern uint64_t gdt[];
extern const uint64_t isr_table[32], isr_timer, isr_spurious;

static struct tss tss[FG_MAX_CPUS];
static struct idt_entry idt[256] __attribute__((aligned(16)));
uint8_t ustacks[USTACK_SIZE * FG_MAX_CPUS] __attribute__((aligned(4096)));
volatile uint32_t ap_started[FG_MAX_CPUS];
uint64_t kern_tsc_hz;
int kern_tsc_deadline;
static volatile uint32_t serial_lock;

static inline void outb(uint16_t p, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(p)); }
static inline void outw(uint16_t p, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(p)); }
static inline void outl(uint16_t p, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(p)); }
static inline uint8_t inb(uint16_t p) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint16_t inw(uint16_t p) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint32_t inl(uint16_t p) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline uint32_t lapic_read(uint32_t reg)
{
	return *(volatile uint32_t *)(LAPIC_BASE + reg);
}

static inline void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(LAPIC_BASE + reg) = v;
}

/* ---- COM1 ---- */

static void serial_init(void)
{
	outb(COM1 + 1, 0x00);	/* no UART interrupts: we poll */
	outb(COM1 + 3, 0x80);	/* DLAB */
	outb(COM1 + 0, 0x01);	/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8N1 */
	outb(COM1 + 2, 0xc7);	/* FIFO on, cleared, 14-byte threshold */
	outb(COM1 + 4, 0x03);	/* DTR | RTS */
}

/* One line out. Wait for THRE once per 16 bytes (the FIFO depth), not per
 * character: each port access is a VM exit. Returns whether the line
 * status said input is waiting (free: the same reads). */
static int serial_put(const char *s, uint64_t len)
{
	int rx = 0;
	for (uint64_t i = 0; i <= len; i++) {
		if (i % 16 == 0) {
			for (unsigned spin = 0; spin < 100000; spin++) {
				uint8_t lsr = inb(COM1 + 5);
				rx |= lsr & 1;
				if (lsr & 0x20)
					break;
			}
		}
		outb(COM1, i < len ? (uint8_t)s[i] : '\n');
	}
	return rx;
}

/* Console input, seen when a line goes out (no polling of its own): up
 * to a FIFO's worth echoed as "FERRY-GUEST rx n=N BYTES", non-printable
 * bytes as '.', so a test can count what the host's console delivered. */
static void serial_echo_rx(void)
{
	char line[96] = "FERRY-GUEST rx n=";
	uint64_t n = 0, at = 17;
	char bytes[64];
	while (n < sizeof(bytes) && (inb(COM1 + 5) & 1)) {
		uint8_t c = inb(COM1);
		bytes[n++] = c > 0x20 && c < 0x7f ? (char)c : '.';
	}
	if (n >= 10)
		line[at++] = (char)('0' + n / 10);
	line[at++] = (char)('0' + n % 10);
	line[at++] = ' ';
	for (uint64_t i = 0; i < n; i++)
		line[at++] = bytes[i];
	serial_put(line, at);
}

/* One line per call. */
static void serial_line(const char *s, uint64_t len)
{
	while (__atomic_exchange_n(&serial_lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	if (serial_put(s, len))
		serial_echo_rx();
	__atomic_store_n(&serial_lock, 0, __ATOMIC_RELEASE);
}

static void kprintf(const char *fmt, ...)
{
	char buf[160];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	serial_line(buf, n < (int)sizeof(buf) ? (uint64_t)n : sizeof(buf) - 1);
}

static void __attribute__((noreturn)) die(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* ---- descriptor tables ---- */

static void idt_set(int vec, uint64_t handler)
{
	idt[vec] = (struct idt_entry){
		.off0 = (uint16_t)handler,
		.sel = SEL_KCODE,
		.type = 0x8e, /* present, DPL0, interrupt gate: IF off in handlers */
		.off1 = (uint16_t)(handler >> 16),
		.off2 = (uint32_t)(handler >> 32),
	};
}

static void load_idt(void)
{
	struct { uint16_t limit; uint64_t base; } __attribute__((packed)) p = {
		sizeof(idt) - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" :: "m"(p));
}

/* TSS descriptor for this CPU, then ltr. RSP0 is the top of its kernel stack. */
static void load_tss(unsigned cpu)
{
	struct tss *t = &tss[cpu];
	t->rsp0 = (uint64_t)(kstacks + KSTACK_SIZE * (cpu + 1));
	t->iomap = sizeof(*t); /* no I/O bitmap: CPL3 gets no ports */
	uint64_t base = (uint64_t)t, limit = sizeof(*t) - 1;
	unsigned idx = SEL_TSS0 / 8 + 2 * cpu;
	gdt[idx] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ULL << 40 |
		   ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
	gdt[idx + 1] = base >> 32;
	uint16_t sel = (uint16_t)(idx * 8);
	__asm__ volatile("ltr %0" :: "r"(sel));
}

/* ---- LAPIC ---- */

static void lapic_init(void)
{
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_write(LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, VEC_TIMER | (kern_tsc_deadline ? 2u << 17 : 0));
}

static void arm_timer(uint64_t deadline)
{
	if (kern_tsc_deadline) {
		wrmsr(MSR_TSC_DEADLINE, deadline);
		return;
	}
	uint64_t now = rdtsc(), hz = kern_tsc_hz ? kern_tsc_hz : 1000000000ULL;
	uint64_t delta = deadline > now ? deadline - now : 1;
	if (delta > hz * 4)
		delta = hz * 4;
	uint64_t ticks = delta * (LAPIC_TIMER_HZ / 1000000) / (hz / 1000000 ? hz / 1000000 : 1);
	lapic_write(LAPIC_TIMER_INIT, (uint32_t)(ticks ? (ticks > 0xffffffffULL ? 0xffffffffULL : ticks) : 1));
}

static int lapic_ipi(uint32_t apic_id, uint32_t icr)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr);
	for (unsigned i = 0; i < 1000; i++)
		if (!(lapic_read(LAPIC_ICR_LO) & (1u << 12)))
			return 0;
	return -1;
}

/* ---- services ---- */

static uint64_t pio_in(uint64_t port, uint64_t size)
{
	switch (size) {
	case 1: return inb((uint16_t)port);
	case 2: return inw((uint16_t)port);
	default: return inl((uint16_t)port);
	}
}

static void pio_out(uint64_t port, uint64_t size, uint64_t v)
{
	switch (size) {
	case 1: outb((uint16_t)port, (uint8_t)v); break;
	case 2: outw((uint16_t)port, (uint16_t)v); break;
	default: outl((uint16_t)port, (uint32_t)v); break;
	}
}

/* Extend the identity map above 4 GiB with 2 MiB user pages. */
static uint64_t map_ram(uint64_t top)
{
	uint64_t max = (uint64_t)PD_POOL_PAGES << 30;
	if (top > max)
		top = max;
	for (uint64_t gib = 4; gib < (top + (1ULL << 30) - 1) >> 30; gib++) {
		uint64_t *pd = pd_pool + gib * 512;
		for (unsigned i = 0; i < 512; i++)
			pd[i] = ((gib << 30) + ((uint64_t)i << 21)) | 0x87;
		pdpt[gib] = (uint64_t)pd | 0x7;
	}
	__asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
	return top;
}

static uint64_t ap_init(uint64_t cpu, uint64_t apic_id)
{
	if (cpu == 0 || cpu >= FG_MAX_CPUS)
		return (uint64_t)-1;
	memcpy((void *)FG_TRAMPOLINE_GPA, tramp_start, (size_t)(tramp_end - tramp_start));
	ap_boot_cpu = (uint32_t)cpu;
	ap_boot_stack = (uint32_t)(uint64_t)(kstacks + KSTACK_SIZE * (cpu + 1));
	ap_started[cpu] = 0;
	return (uint64_t)lapic_ipi((uint32_t)apic_id, 0x4500); /* INIT, assert */
}

static uint64_t service(struct tframe *f)
{
	switch (f->rax) {
	case SVC_PUTS:
		serial_line((const char *)f->rdi, f->rsi > 256 ? 256 : f->rsi);
		return 0;
	case SVC_HALT:
		arm_timer(f->rdi);
		/* sti's one-instruction shadow makes "sti; hlt" race-free */
		__asm__ volatile("sti; hlt; cli" ::: "memory");
		return 0;
	case SVC_RDMSR:
		return rdmsr((uint32_t)f->rdi);
	case SVC_WRMSR:
		wrmsr((uint32_t)f->rdi, f->rsi);
		return 0;
	case SVC_PIO_IN:
		return pio_in(f->rdi, f->rsi);
	case SVC_PIO_OUT:
		pio_out(f->rdi, f->rsi, f->rdx);
		return 0;
	case SVC_PCI_READ:
		outl(0xcf8, (uint32_t)f->rdi);
		return inl(0xcfc);
	case SVC_PCI_WRITE:
		outl(0xcf8, (uint32_t)f->rdi);
		outl(0xcfc, (uint32_t)f->rsi);
		return 0;
	case SVC_AP_INIT:
		return ap_init(f->rdi, f->rsi);
	case SVC_AP_SIPI:
		return (uint64_t)lapic_ipi((uint32_t)f->rdi, 0x4600 | (FG_TRAMPOLINE_GPA >> 12));
	case SVC_MAP_RAM:
		return map_ram(f->rdi);
	case SVC_CPUID:
		cpuid((uint32_t)f->rdi, (uint32_t)f->rsi, (uint32_t *)f->rdx);
		return 0;
	}
	return (uint64_t)-1;
}

static unsigned this_cpu(void)
{
	uint32_t id = lapic_read(LAPIC_ID) >> 24;
	return id;
}

void trap_dispatch(struct tframe *f)
{
	if (f->vec == VEC_TIMER) {
		lapic_write(LAPIC_EOI, 0);
		return;
	}
	if (f->vec == VEC_SPURIOUS)
		return;
	if (f->vec == VEC_UD && (f->cs & 3) == 3) {
		const uint8_t *ip = (const uint8_t *)f->rip;
		if (ip[0] == 0x0f && ip[1] == 0x0b) {
			f->rax = service(f);
			f->rip += 2;
			return;
		}
	}
	kprintf("FERRY-GUEST error exception vec=%lu err=0x%lx rip=0x%lx cs=0x%lx rsp=0x%lx apic=%u",
		f->vec, f->err, f->rip, f->cs, f->rsp, this_cpu());
	if (f->vec == 14) {
		uint64_t cr2;
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
		kprintf("FERRY-GUEST error page fault cr2=0x%lx", cr2);
	}
	die();
}

static void cpu_setup(unsigned cpu)
{
	load_tss(cpu);
	load_idt();
	lapic_init();
}

/* BSP, straight from boot.S in long mode. */
void kmain(void)
{
	serial_init();
	for (int v = 0; v < 32; v++)
		idt_set(v, isr_table[v]);
	idt_set(VEC_TIMER, isr_timer);
	idt_set(VEC_SPURIOUS, isr_spurious);
	/* mask both 8259s: the only interrupt we want is the LAPIC timer */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	uint32_t r[4];
	cpuid(1, 0, r);
	kern_tsc_deadline = (r[2] >> 24) & 1;
	cpu_setup(0);
	enter_user(user_bsp_main, (uint64_t)(ustacks + USTACK_SIZE), 0);
}

/* APs, from the trampoline via boot.S. */
void ap_main(uint32_t cpu)
{
	cpu_setup(cpu);
	ap_started[cpu] = 1;
	enter_user(user_ap_main, (uint64_t)(ustacks + USTACK_SIZE * (cpu + 1)), cpu);
}
