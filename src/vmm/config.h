/*
 * A VM's configuration: what the worker was asked to run. It travels at the
 * head of every state file and migration stream (as JSON) so the receiving
 * side can build an identical machine before any state arrives.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define CONFIG_PATH_MAX 1024
#define CONFIG_CMDLINE_MAX 4096

/* How pre-copy finds dirty pages (migration/dirty.h). Fixed when the VM is
 * created; a migration's destination builds the same kind. */
enum config_tracker {
	CONFIG_TRACKER_BITMAP = 0,  /* KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG */
	CONFIG_TRACKER_RING = 1,    /* KVM's per-vCPU dirty rings */
};
/* The bitmap is the default: on the nested kvm_pvm machines we measure on
 * (1 GiB guest, 512 MiB working set, medians of 3, bench/results/
 * run-20261127e) it moves a guest dirtying 256 MiB/s faster (default
 * transport 918 vs 1066 ms, multichannel with prealloc 319 vs 366) and
 * the others as fast (full speed 1021 vs 1029 / 352 vs 344, idle 1 GiB
 * 18 vs 17), with the same downtimes (2-8 ms). */
#define CONFIG_TRACKER_DEFAULT CONFIG_TRACKER_BITMAP

struct vm_config {
	char name[65];
	uint64_t mem_size;
	int vcpus;
	char kernel[CONFIG_PATH_MAX];
	char initrd[CONFIG_PATH_MAX];
	char cmdline[CONFIG_CMDLINE_MAX];
	char disk[CONFIG_PATH_MAX];
	bool disk_readonly;
	bool net;                 /* a virtio-net NIC exists */
	char tap[16];             /* host tap device ("" = none) */
	char bridge[16];          /* or a host bridge to put a tap of our own on ("" = none) */
	char mac[18];             /* aa:bb:cc:dd:ee:ff */
	char cpu_mask[256];
	enum config_tracker dirty_tracker;
	/* A migration that copies the disk (migration/diskcopy.h): the
	 * destination creates `disk` of this many bytes (0: no copy; the disk
	 * is shared storage); the source has this many allocated. */
	uint64_t disk_copy_bytes;
	uint64_t disk_copy_allocated;
};

/* "512M", "1G", "1073741824" -> bytes. */
int config_parse_size(const char *s, uint64_t *out, struct err *e);
int config_parse_mac(const char *s, uint8_t mac[6], struct err *e);
int config_validate(const struct vm_config *c, struct err *e);
/* Where the NIC's backend is host-local (a restore, an incoming move):
 * a tap or bridge given on this host replaces the one the state names. */
void config_place_nic(struct vm_config *c, const struct vm_config *local);
/* "bitmap" or "ring". */
int config_parse_tracker(const char *s, enum config_tracker *out, struct err *e);
const char *config_tracker_name(enum config_tracker t);
/* Malloc'd JSON text. */
char *config_to_json(const struct vm_config *c);
int config_from_json(const char *text, size_t len, struct vm_config *c, struct err *e);

#endif
