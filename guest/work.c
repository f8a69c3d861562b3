/*
 * The workload, one instance per vCPU at CPL3: stamp pages of this vCPU's
 * share of the working set at the requested rate, paced by the TSC in 10 ms
 * slices, sleeping in hlt (via the CPL0 service) between slices so an idle
 * or throttled guest costs the 2-core host nothing. vCPU 0 also prints the
 * once-a-second heartbeat and drives the virtio devices.
 */
#include "lib.h"
#include "user.h"

#define SLICES_PER_SEC 100

struct wstate {
	volatile struct fg_vcpu *v;
	volatile uint32_t *gen;
	uint64_t ws_base;
	uint64_t cursor;	/* seq: next page, relative to first_page */
	uint64_t rng;		/* random: xorshift state */
	uint32_t data;		/* FG_DATA_*, read once from the control block */
};

/* The write protocol the checker relies on: announce the page as in
 * flight, write the whole new version, commit its generation, clear. x86
 * keeps stores in program order; the barriers keep the compiler from
 * reordering them. */
static void write_page(struct wstate *w)
{
	volatile struct fg_vcpu *v = w->v;
	uint64_t rel;
	if (CTL->pattern == FG_PATTERN_RANDOM)
		rel = fg_xorshift64(&w->rng) % v->npages;
	else {
		rel = w->cursor;
		w->cursor = rel + 1 == v->npages ? 0 : rel + 1;
	}
	uint64_t p = v->first_page + rel;
	uint64_t gpa = w->ws_base + p * FG_PAGE_SIZE;
	uint32_t g = w->gen[p] + 1;
	if (g == 0) /* 2^32 writes of one page: skip the "never written" value */
		g = 1;
	v->inflight = p;
	barrier();
	fg_page_fill((uint64_t *)gpa, gpa, g, w->data);
	barrier();
	w->gen[p] = g;
	barrier();
	v->inflight = FG_INFLIGHT_NONE;
	uint64_t n = v->pages_written + 1;
	v->pages_written = n;
	v->mib_dirtied = n >> 8;
	if (g > v->max_gen)
		v->max_gen = g;
}

static void bsp_heartbeat(void)
{
	volatile struct fg_ctl *c = CTL;
	uint64_t n = c->hb + 1, pages = 0;
	uint32_t gen = 0;
	c->hb = n;
	for (unsigned i = 0; i < c->ncpus; i++) {
		pages += c->vcpu[i].pages_written;
		if (c->vcpu[i].max_gen > gen)
			gen = c->vcpu[i].max_gen;
	}
	gprintf("FERRY-GUEST hb n=%lu mib=%lu gen=%u tsc=%lu", n, pages >> 8, gen, rdtsc());
	if (params.blk)
		vblk_heartbeat(n);
	if (params.net)
		vnet_heartbeat(n);
}

void work_run(unsigned cpu)
{
	volatile struct fg_ctl *c = CTL;
	struct wstate w = {
		.v = &c->vcpu[cpu],
		.gen = (volatile uint32_t *)c->gen_table,
		.ws_base = c->ws_base,
		.rng = fg_seed(cpu, 0x5eed),
		.data = c->data,
	};
	uint64_t hz = c->tsc_hz, slice = hz / SLICES_PER_SEC;
	uint32_t rate = c->rate_mib;
	int max = rate == FG_RATE_MAX;
	/* rate=once: a full-speed sweep that ends where it began */
	uint64_t once_left = rate == FG_RATE_ONCE ? w.v->npages : 0;
	/* pages per second for this vCPU: the total split evenly, remainder
	 * to the lowest-numbered vCPUs */
	uint64_t pps = 0;
	if (rate && !max && !once_left) {
		uint64_t total = (uint64_t)rate * 256;
		pps = total / c->ncpus + (cpu < total % c->ncpus);
	}
	if (!w.v->npages)
		pps = 0, max = 0;
	int poll_net = cpu == 0 && params.net;
	uint64_t credit = 0, now = rdtsc();
	uint64_t next_hb = now + hz, next_slice = now + slice;

	for (;;) {
		if (max) {
			for (int i = 0; i < 64; i++)
				write_page(&w);
		}
		for (int i = 0; i < 64 && once_left; i++, once_left--)
			write_page(&w);
		now = rdtsc();
		if (now >= next_slice) {
			/* credit is in pages * SLICES_PER_SEC so odd rates stay exact */
			credit += pps;
			for (uint64_t n = credit / SLICES_PER_SEC; n; n--)
				write_page(&w);
			credit %= SLICES_PER_SEC;
			next_slice += slice;
			now = rdtsc();
			/* a late wake-up is caught up on the next slices; more than
			 * ~10 slices behind means we cannot keep up: drop the debt
			 * rather than burst */
			if (next_slice + 10 * slice <= now)
				next_slice = now + slice;
		}
		if (now >= next_hb) {
			w.v->heartbeat = w.v->heartbeat + 1;
			if (cpu == 0)
				bsp_heartbeat();
			next_hb += hz;
			now = rdtsc();
			if (next_hb <= now)
				next_hb = now + hz;
		}
		/* the TSC may step backwards across a migration: re-anchor */
		if (next_hb > now + 2 * hz)
			next_hb = now + hz;
		if (next_slice > now + 2 * slice)
			next_slice = now + slice;
		if (poll_net)
			vnet_poll();
		if (max || once_left)
			continue;
		uint64_t wake = next_hb;
		if ((pps || poll_net) && next_slice < wake)
			wake = next_slice;
		if (rdtsc() < wake)
			halt_until(wake);
	}
}
