/*
 * Declarations shared by the test guest's CPL3 parts: boot flow (main.c),
 * CPU discovery (mp.c), the stamping workload (work.c) and the virtio
 * drivers (virtio.c).
 */
#ifndef FERRY_GUEST_USER_H
#define FERRY_GUEST_USER_H

#include <stdint.h>

#include "guest.h"

struct params {
	uint64_t ws_bytes;	/* requested working set */
	uint32_t rate_mib;	/* 0 idle, FG_RATE_MAX for "max", FG_RATE_ONCE for "once" */
	uint32_t pattern;	/* FG_PATTERN_* */
	uint32_t data;		/* FG_DATA_*: page fill */
	uint32_t cpus;		/* 0: from the MP table */
	uint64_t tsc_khz;	/* 0: measure */
	int blk, net;
};

/* CPUID as the VMM configured it, whatever the host does with CPUID at
 * CPL3 (see cpuid() in guest.h). */
static inline void user_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	svc(SVC_CPUID, leaf, sub, (uint64_t)r);
}

extern struct params params;
extern uint64_t tsc_hz;
#define CTL ((volatile struct fg_ctl *)FG_CTL_GPA)

/* mp.c: APIC IDs of enabled processors from the MP table, BSP first.
 * Returns how many (0 if there is no valid table). */
unsigned mp_find_cpus(uint32_t *apic_ids, unsigned max, uint32_t base_mem_kib);

/* work.c */
void work_run(unsigned cpu) __attribute__((noreturn));

/* virtio.c: return 0 when the device was found and set up. */
int vblk_init(void);
void vblk_heartbeat(uint64_t n);
int vnet_init(void);
void vnet_heartbeat(uint64_t n);
void vnet_poll(void);

#endif
