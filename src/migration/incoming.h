/*
 * The destination side of a live migration, on its own thread: accept the
 * source's connections, check the VM can live here (CPU features, memory,
 * disk), have the worker build a skeleton machine, receive memory and state,
 * load it, and run the VM only when the source sends COMMIT. Anything that
 * goes wrong before COMMIT leaves nothing behind: the worker just exits.
 */
#ifndef FERRY_INCOMING_H
#define FERRY_INCOMING_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/auth.h"
#include "common/err.h"
#include "vmm/config.h"
#include "vmm/machine.h"

enum incoming_stage { IN_LISTENING, IN_SETUP, IN_RECEIVING, IN_LOADED, IN_RUNNING, IN_FAILED };

/* Events to the worker's main loop (written to notify_fd as a u64). */
enum incoming_event { IN_EV_BUILT = 1, IN_EV_RUNNING = 2, IN_EV_FAILED = 3 };

struct incoming_hooks {
	/* Build the machine from the stream's configuration (worker applies
	 * host-local overrides). Called on the migration thread. */
	int (*build)(void *opaque, struct vm_config *cfg, struct err *e);
	/* Start the vCPUs of the loaded machine. */
	int (*start)(void *opaque, struct err *e);
	/* Post-copy broke after the VM ran here: part of its memory is gone
	 * with the source. The VM must not run on, and anything waiting on a
	 * missing page (a vCPU, a device, the NIC's announce) waits forever:
	 * the worker ends the process here (why: the reason, for its log),
	 * and does not return. NULL: this host offers no post-copy. */
	void (*lost)(void *opaque, const char *why);
	void *opaque;
	/* Memory already set aside for the VM (--prealloc): it counts as
	 * available when the host's free memory is checked. */
	uint64_t reserved_bytes;
	/* The disk copy this host was prepared for (ferryd checked the path):
	 * a stream that does not copy the disk there is refused before any
	 * file is made. NULL: whatever the stream asks. */
	const char *disk_copy;
};

struct mig_incoming {
	char listen[300];
	int listen_fd;
	int notify_fd;               /* eventfd, read by the worker */
	struct machine *m;
	struct incoming_hooks hooks;
	const char *host_cpu_mask;   /* features this host refuses to offer */
	uint32_t accept_timeout_ms;
	uint32_t peer_timeout_ms;
	struct auth_key key;         /* connections must prove it (unset: none) */
	pthread_t thread;
	bool started;
	volatile bool cancel;
	pthread_mutex_t lock;
	enum incoming_stage stage;   /* guarded by lock */
	uint64_t bytes;
	uint64_t pages;
	uint64_t rx_bytes;           /* memory bytes received so far (atomic: every channel adds) */
	char error[512];
	bool abandoned;              /* failed because the source sent ABORT (called the move off) */
	uint64_t postcopy_left;      /* post-copy: owed pages not yet here (atomic) */
};

const char *incoming_stage_name(enum incoming_stage s);
/* Listen now (so the caller learns at once if the address is bad), then
 * serve the migration on a thread. */
int incoming_start(struct mig_incoming *in, const char *listen, const char *host_cpu_mask,
		   const struct auth_key *key, struct machine *m, const struct incoming_hooks *h,
		   struct err *e);
void incoming_join(struct mig_incoming *in);

#endif
