/*
 * The test guest's boot flow, at CPL3 on the BSP: read the multiboot info,
 * parse parameters, find the TSC frequency and the vCPUs, start the APs,
 * lay out the working set and publish the control block, then run the
 * workload. Doing this at CPL3 keeps it native-speed on hosts where CPL0
 * is emulated; CPL0 is asked (svc) only for ports, MSRs, LAPIC and hlt.
 */
#include <stdarg.h>

#include "lib.h"
#include "user.h"

struct mbi {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
	uint32_t mods_count, mods_addr, syms[4], mmap_length, mmap_addr;
};

struct mb_mmap {
	uint32_t size;
	uint64_t base, len;
	uint32_t type;
} __attribute__((packed));

struct mb_mod {
	uint32_t start, end, string, rsvd;
};

struct params params = { .ws_bytes = 64ULL << 20, .pattern = FG_PATTERN_SEQ, .data = FG_DATA_RANDOM };
uint64_t tsc_hz;

#define MAX_REGIONS 32
static struct { uint64_t base, end; } ram[MAX_REGIONS];
static unsigned nram;
static uint64_t boot_data_end; /* highest byte of loader-provided data */

void gprintf(const char *fmt, ...)
{
	char buf[200];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	svc(SVC_PUTS, (uint64_t)buf, n < (int)sizeof(buf) ? (uint64_t)n : sizeof(buf) - 1, 0);
}

void halt_until(uint64_t deadline)
{
	svc(SVC_HALT, deadline, 0, 0);
}

static void sleep_tsc(uint64_t ticks)
{
	uint64_t end = rdtsc() + ticks;
	while (rdtsc() < end)
		halt_until(end);
}

static void __attribute__((noreturn)) fatal(const char *msg)
{
	gprintf("FERRY-GUEST error %s", msg);
	for (;;)
		halt_until(rdtsc() + (1ULL << 40));
}

/* Launder a constant address so the compiler treats it as an object. */
static inline const void *phys(uint64_t a)
{
	__asm__("" : "+r"(a));
	return (const void *)a;
}

static void note_data(uint64_t addr, uint64_t len)
{
	if (addr + len > boot_data_end)
		boot_data_end = addr + len;
}

static void parse_param(const char *k, size_t kl, const char *v, size_t vl)
{
	uint64_t n;
	if (kl == 2 && !strncmp(k, "ws", 2) && !parse_size(v, vl, &n) && n >= FG_PAGE_SIZE)
		params.ws_bytes = n;
	else if (kl == 4 && !strncmp(k, "rate", 4) && vl == 3 && !strncmp(v, "max", 3))
		params.rate_mib = FG_RATE_MAX;
	else if (kl == 4 && !strncmp(k, "rate", 4) && vl == 4 && !strncmp(v, "once", 4))
		params.rate_mib = FG_RATE_ONCE;
	else if (kl == 4 && !strncmp(k, "rate", 4) && !parse_size(v, vl, &n) && n < FG_RATE_ONCE)
		params.rate_mib = (uint32_t)n;
	else if (kl == 7 && !strncmp(k, "pattern", 7) && vl == 3 && !strncmp(v, "seq", 3))
		params.pattern = FG_PATTERN_SEQ;
	else if (kl == 7 && !strncmp(k, "pattern", 7) && vl == 6 && !strncmp(v, "random", 6))
		params.pattern = FG_PATTERN_RANDOM;
	else if (kl == 4 && !strncmp(k, "data", 4) && vl == 6 && !strncmp(v, "random", 6))
		params.data = FG_DATA_RANDOM;
	else if (kl == 4 && !strncmp(k, "data", 4) && vl == 4 && !strncmp(v, "text", 4))
		params.data = FG_DATA_TEXT;
	else if (kl == 4 && !strncmp(k, "cpus", 4) && !parse_size(v, vl, &n) && n >= 1 && n <= 1024)
		params.cpus = (uint32_t)n;
	else if (kl == 7 && !strncmp(k, "tsc_khz", 7) && !parse_size(v, vl, &n) && n > 0)
		params.tsc_khz = n;
	else if (kl == 3 && !strncmp(k, "blk", 3) && vl == 1)
		params.blk = v[0] == '1';
	else if (kl == 3 && !strncmp(k, "net", 3) && vl == 1)
		params.net = v[0] == '1';
	else {
		char tmp[64]; /* key=value are contiguous in the command line */
		size_t n = kl + 1 + vl < sizeof(tmp) ? kl + 1 + vl : sizeof(tmp) - 1;
		memcpy(tmp, k, n);
		tmp[n] = '\0';
		gprintf("FERRY-GUEST error bad parameter %s", tmp);
	}
}

/* "key=value" tokens separated by spaces; tokens without '=' (QEMU passes
 * the kernel file name first) are ignored. */
static void parse_cmdline(const char *s)
{
	while (*s) {
		while (*s == ' ')
			s++;
		const char *t = s, *eq = 0;
		while (*s && *s != ' ') {
			if (*s == '=' && !eq)
				eq = s;
			s++;
		}
		if (eq)
			parse_param(t, (size_t)(eq - t), eq + 1, (size_t)(s - eq - 1));
	}
}

static void read_mbi(void)
{
	if (boot_magic != 0x2BADB002)
		fatal("not started by a multiboot loader");
	const struct mbi *m = phys(boot_mbi);
	note_data(boot_mbi, sizeof(*m));
	if (m->flags & (1u << 2)) {
		const char *cl = phys(m->cmdline);
		note_data(m->cmdline, strlen(cl) + 1);
		parse_cmdline(cl);
	}
	if (m->flags & (1u << 3)) {
		const struct mb_mod *mod = phys(m->mods_addr);
		note_data(m->mods_addr, m->mods_count * sizeof(*mod));
		for (uint32_t i = 0; i < m->mods_count; i++)
			note_data(mod[i].start, mod[i].end - mod[i].start);
	}
	if (m->flags & (1u << 6)) {
		note_data(m->mmap_addr, m->mmap_length);
		uint64_t a = m->mmap_addr, end = a + m->mmap_length;
		while (a + sizeof(struct mb_mmap) <= end && nram < MAX_REGIONS) {
			const struct mb_mmap *e = phys(a);
			if (e->type == 1 && e->len >= FG_PAGE_SIZE) {
				ram[nram].base = e->base;
				ram[nram].end = e->base + e->len;
				nram++;
			}
			a += e->size + 4;
		}
	}
	if (nram == 0 && (m->flags & 1)) {
		ram[0].base = 0x100000;
		ram[0].end = 0x100000 + (uint64_t)m->mem_upper * 1024;
		nram = 1;
	}
	if (nram == 0)
		fatal("no memory map");
}

struct pvclock {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t mul;
	int8_t shift;
	uint8_t flags, pad[2];
};
static volatile struct pvclock pvclock __attribute__((aligned(64)));

/* TSC Hz from kvmclock's scale factors (ns = (tsc << shift) * mul >> 32). */
static uint64_t kvmclock_hz(void)
{
	uint32_t r[4];
	user_cpuid(0x40000000, 0, r);
	if (r[1] != 0x4b4d564b || r[2] != 0x564b4d56 || r[3] != 0x4d)
		return 0;
	user_cpuid(0x40000001, 0, r);
	uint32_t msr = (r[0] & (1u << 3)) ? 0x4b564d01 : (r[0] & 1) ? 0x12 : 0;
	if (!msr)
		return 0;
	svc(SVC_WRMSR, msr, (uint64_t)&pvclock | 1, 0);
	uint64_t hz = 0;
	for (int tries = 0; tries < 1000 && !hz; tries++) {
		uint32_t v = pvclock.version;
		barrier();
		uint32_t mul = pvclock.mul;
		int shift = pvclock.shift;
		barrier();
		if (v == 0 || (v & 1) || v != pvclock.version || mul == 0)
			continue;
		hz = (1000000000ULL << 32) / mul;
		hz = shift < 0 ? hz << -shift : hz >> shift;
	}
	svc(SVC_WRMSR, msr, 0, 0); /* stop the host writing into our memory */
	return hz;
}

static uint64_t find_tsc_hz(const char **src)
{
	uint64_t hz;
	uint32_t r[4];
	if (params.tsc_khz) {
		*src = "param";
		return params.tsc_khz * 1000;
	}
	if ((hz = kvmclock_hz())) {
		*src = "kvmclock";
		return hz;
	}
	user_cpuid(0, 0, r);
	uint32_t max = r[0];
	if (max >= 0x15) {
		user_cpuid(0x15, 0, r);
		if (r[0] && r[1] && r[2]) {
			*src = "cpuid15";
			return (uint64_t)r[2] * r[1] / r[0];
		}
	}
	if (max >= 0x16) {
		user_cpuid(0x16, 0, r);
		if (r[0] & 0xffff) {
			*src = "cpuid16";
			return (uint64_t)(r[0] & 0xffff) * 1000000;
		}
	}
	*src = "guess";
	return 2000000000ULL;
}

static unsigned start_cpus(const uint32_t *ids, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		if (svc(SVC_AP_INIT, i, ids[i], 0)) {
			gprintf("FERRY-GUEST error INIT to apic %u not delivered", ids[i]);
			return i;
		}
		sleep_tsc(tsc_hz / 100);
		svc(SVC_AP_SIPI, ids[i], 0, 0);
		uint64_t t0 = rdtsc();
		int second = 0;
		while (!ap_started[i] && rdtsc() - t0 < tsc_hz) {
			sleep_tsc(tsc_hz / 1000);
			if (!second && !ap_started[i]) {
				svc(SVC_AP_SIPI, ids[i], 0, 0);
				second = 1;
			}
		}
		if (!ap_started[i]) {
			gprintf("FERRY-GUEST error cpu %u (apic %u) did not start", i, ids[i]);
			return i;
		}
	}
	return n;
}

/* Place the generation table right after the image and loader data, and
 * the working set 2 MiB aligned after it, in the first RAM region where it
 * fits (else the largest, clamped). */
static void layout(unsigned ncpus)
{
	uint64_t pages = params.ws_bytes / FG_PAGE_SIZE;
	if (pages < ncpus)
		pages = ncpus;
	uint64_t img_end = (uint64_t)__bss_end;
	if (boot_data_end > img_end)
		img_end = boot_data_end;
	uint64_t table = (img_end + 4095) & ~4095ULL;
	uint64_t after_table = (table + pages * 4 + 0x1fffff) & ~0x1fffffULL;
	uint64_t best_base = 0, best_pages = 0;
	for (unsigned i = 0; i < nram; i++) {
		uint64_t base = ram[i].base > after_table ? (ram[i].base + 0x1fffff) & ~0x1fffffULL : after_table;
		if (base >= ram[i].end)
			continue;
		uint64_t fit = (ram[i].end - base) / FG_PAGE_SIZE;
		if (fit > best_pages || (fit >= pages && best_pages < pages)) {
			best_base = base;
			best_pages = fit;
		}
		if (fit >= pages)
			break;
	}
	if (best_pages < pages) {
		if (best_pages < ncpus)
			fatal("no room for the working set");
		gprintf("FERRY-GUEST error ws clamped from %luK to %luK", pages * 4, best_pages * 4);
		pages = best_pages;
	}
	memset((void *)table, 0, pages * 4);
	volatile struct fg_ctl *c = CTL;
	c->ws_base = best_base;
	c->ws_pages = pages;
	c->gen_table = table;
	for (unsigned i = 0; i < ncpus; i++) {
		uint64_t first = pages * i / ncpus, next = pages * (i + 1) / ncpus;
		c->vcpu[i].first_page = first;
		c->vcpu[i].npages = next - first;
		c->vcpu[i].inflight = FG_INFLIGHT_NONE;
	}
}

static uint64_t ram_top(void)
{
	uint64_t top = 0;
	for (unsigned i = 0; i < nram; i++)
		if (ram[i].end > top)
			top = ram[i].end;
	return top;
}

void user_bsp_main(uint64_t arg)
{
	(void)arg;
	volatile struct fg_ctl *c = CTL;
	memset((void *)c, 0, sizeof(*c));
	read_mbi();

	const char *tsc_src;
	tsc_hz = find_tsc_hz(&tsc_src);
	kern_tsc_hz = tsc_hz;

	if (ram_top() > (4ULL << 30)) {
		uint64_t top = svc(SVC_MAP_RAM, ram_top(), 0, 0);
		if (top < ram_top()) {
			gprintf("FERRY-GUEST error RAM above %luM not mapped", top >> 20);
			for (unsigned i = 0; i < nram; i++)
				if (ram[i].end > top)
					ram[i].end = ram[i].base < top ? top : ram[i].base;
		}
	}

	uint32_t ids[FG_MAX_CPUS], r[4];
	user_cpuid(1, 0, r);
	uint32_t bsp_id = r[1] >> 24;
	const struct mbi *m = phys(boot_mbi);
	unsigned found = mp_find_cpus(ids, FG_MAX_CPUS, (m->flags & 1) ? m->mem_lower : 0);
	unsigned ncpus = found ? found : 1;
	if (!found)
		ids[0] = bsp_id;
	for (unsigned i = 0; i < found; i++) /* make sure the BSP is index 0 */
		if (ids[i] == bsp_id) {
			ids[i] = ids[0];
			ids[0] = bsp_id;
		}
	if (params.cpus) {
		if (params.cpus > FG_MAX_CPUS)
			params.cpus = FG_MAX_CPUS;
		/* More than the table lists (SeaBIOS under PVM lists only the
		 * CPUs it woke itself): add the lowest unused APIC IDs. */
		for (uint32_t id = 0; ncpus < params.cpus && id < 255; id++) {
			int used = 0;
			for (unsigned i = 0; i < ncpus; i++)
				used |= ids[i] == id;
			if (!used)
				ids[ncpus++] = id;
		}
		ncpus = params.cpus;
	}

	const char *rate = params.rate_mib == FG_RATE_MAX ? "max"
			 : params.rate_mib == FG_RATE_ONCE ? "once" : 0;
	char ratebuf[16];
	if (!rate) {
		snprintf(ratebuf, sizeof(ratebuf), "%u", params.rate_mib);
		rate = ratebuf;
	}
	char wsbuf[24];
	if (params.ws_bytes % (1 << 20) == 0)
		snprintf(wsbuf, sizeof(wsbuf), "%luM", params.ws_bytes >> 20);
	else
		snprintf(wsbuf, sizeof(wsbuf), "%luK", params.ws_bytes >> 10);
	gprintf("FERRY-GUEST boot cpus=%u ws=%s rate=%s pattern=%s data=%s", ncpus, wsbuf, rate,
		params.pattern == FG_PATTERN_RANDOM ? "random" : "seq",
		params.data == FG_DATA_TEXT ? "text" : "random");

	ncpus = start_cpus(ids, ncpus);
	layout(ncpus);
	c->version = FG_VERSION;
	c->ncpus = ncpus;
	c->tsc_hz = tsc_hz;
	c->rate_mib = params.rate_mib;
	c->pattern = params.pattern;
	c->data = params.data;
	for (unsigned i = 0; i < ncpus; i++)
		c->vcpu[i].apic_id = ids[i];
	gprintf("FERRY-GUEST info ctl=0x%lx ws_base=0x%lx pages=%lu gen_table=0x%lx tsc_hz=%lu (%s) timer=%s",
		(uint64_t)FG_CTL_GPA, c->ws_base, c->ws_pages, c->gen_table, tsc_hz, tsc_src,
		kern_tsc_deadline ? "tsc-deadline" : "oneshot");

	if (params.blk && vblk_init())
		params.blk = 0;
	if (params.net && vnet_init())
		params.net = 0;

	barrier();
	c->magic = FG_CTL_MAGIC;
	barrier();
	c->state = FG_STATE_RUNNING;
	gprintf("FERRY-GUEST ready");
	work_run(0);
}

void user_ap_main(uint64_t cpu)
{
	/* wait for the BSP to publish the layout; hlt, don't spin */
	while (CTL->state != FG_STATE_RUNNING)
		sleep_tsc(kern_tsc_hz ? kern_tsc_hz / 1000 : 1000000);
	work_run((unsigned)cpu);
}
