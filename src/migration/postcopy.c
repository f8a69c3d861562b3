/* Post-copy's destination side and its stream records (see postcopy.h). */
#include "migration/postcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/failpoint.h"
#include "common/log.h"
#include "migration/ram.h"

static uint64_t popcount_words(const uint64_t *w, size_t n)
{
	uint64_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += (uint64_t)__builtin_popcountll(w[i]);
	return c;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool bit_get(const uint64_t *bm, uint64_t p)
{
	return bm[p / 64] >> (p % 64) & 1;
}

static void bit_set(uint64_t *bm, uint64_t p)
{
	bm[p / 64] |= 1ULL << (p % 64);
}

void postcopy_put_owed(struct stream *w, const uint64_t *bitmap, uint64_t npages)
{
	uint64_t words = (npages + 63) / 64;
	for (uint64_t w0 = 0; w0 < words; w0 += POSTCOPY_REC_WORDS) {
		uint64_t n = words - w0 < POSTCOPY_REC_WORDS ? words - w0 : POSTCOPY_REC_WORDS;
		if (!popcount_words(bitmap + w0, (size_t)n))
			continue;
		mig_put_rec(w, MIG_REC_POSTCOPY, (uint32_t)(8 + n * 8));
		stream_put_u64(w, w0 * 64);
		for (uint64_t i = 0; i < n; i++)
			stream_put_u64(w, bitmap[w0 + i]);
	}
}

/* A userfaultfd that reports missing pages of shared memory, faults the
 * kernel takes on the guest's behalf included (KVM's), or -1. */
static int uffd_open_with(uint64_t features, struct err *e)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return err_sys(e, "userfaultfd (post-copy needs a kernel with it, and root)");
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		err_sys(e, "userfaultfd: UFFDIO_API with missing-page faults on shared memory");
		close(fd);
		return -1;
	}
	return fd;
}

/* With minor faults on shared memory too where the kernel has them (5.13
 * on), *minor then true: see postcopy_in_arm. The failpoint: a kernel
 * without (tests/e2e/worker_postcopy.sh). */
static int uffd_open(bool *minor, bool no_minor, struct err *e)
{
	int fd = -1;
	*minor = false;
	if (!no_minor && failpoint("dst.postcopy_no_minor") == 0)
		fd = uffd_open_with(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM, e);
	if (fd >= 0) {
		*minor = true;
		return fd;
	}
	return uffd_open_with(UFFD_FEATURE_MISSING_SHMEM, e);
}

bool postcopy_supported(void)
{
	struct err e;
	int fd = uffd_open_with(UFFD_FEATURE_MISSING_SHMEM, &e);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int postcopy_in_init(struct postcopy_in *pc, struct guest_mem *gm, struct err *e)
{
	size_t words;
	memset(pc, 0, sizeof(*pc));
	pc->gm = gm;
	pc->npages = gmem_npages(gm);
	pc->uffd = pc->wake_fd = -1;
	words = (size_t)((pc->npages + 63) / 64);
	pc->owed = calloc(words ? words : 1, 8);
	pc->arrived = calloc(words ? words : 1, 8);
	pc->asked = calloc(words ? words : 1, 8);
	pc->buf = aligned_alloc(4096, (size_t)MIG_MAX_RUN_PAGES * 4096);
	pthread_mutex_init(&pc->lock, NULL);
	if (!pc->owed || !pc->arrived || !pc->asked || !pc->buf) {
		postcopy_in_destroy(pc);
		return err_set(e, "out of memory for post-copy's page tables");
	}
	return 0;
}

int postcopy_in_read_owed(struct postcopy_in *pc, struct stream *r, uint32_t rec_len, struct err *e)
{
	uint64_t words = (pc->npages + 63) / 64, first, n, added = 0;
	if (rec_len < 16 || (rec_len - 8) % 8 || (rec_len - 8) / 8 > POSTCOPY_REC_WORDS)
		return err_set(e, "corrupt stream: a post-copy record of %u bytes", rec_len);
	first = stream_get_u64(r);
	if (stream_check(r, e) < 0)
		return -1;
	n = (rec_len - 8) / 8;
	if (first % 64 || first / 64 > words || n > words - first / 64)
		return err_set(e, "corrupt stream: post-copy pages from %llu (%llu words) lie outside guest RAM",
			       (unsigned long long)first, (unsigned long long)n);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t v = stream_get_u64(r), wi = first / 64 + i;
		if (wi == words - 1 && pc->npages % 64 && v >> (pc->npages % 64))
			return err_set(e, "corrupt stream: post-copy pages beyond guest RAM");
		added += (uint64_t)__builtin_popcountll(v & ~pc->owed[wi]);
		pc->owed[wi] |= v;
	}
	pc->owed_count += added;
	return stream_check(r, e);
}

static void send_request(struct postcopy_in *pc, uint64_t p)
{
	struct err e;
	pthread_mutex_lock(pc->wlock);
	mig_put_rec(pc->w, MIG_REPLY_PAGE_REQ, 8);
	stream_put_u64(pc->w, p);
	if (stream_flush(pc->w) < 0 && !pc->error[0]) {
		stream_check(pc->w, &e);
		snprintf(pc->error, sizeof(pc->error), "asking the source for a page: %.200s", e.msg);
	}
	pthread_mutex_unlock(pc->wlock);
}

/* Resolve a fault on a page nobody sends now: one the guest never wrote
 * (missing) is filled with zeros; one in the page cache but not mapped
 * here (minor: a page not owed, or placed already) is mapped as it is.
 * Either way, one placed meanwhile has its waiters woken. */
static void fill_or_wake(struct postcopy_in *pc, uint64_t p, bool minor)
{
	uint64_t addr = (uint64_t)(uintptr_t)pc->gm->host + (p << GMEM_PAGE_SHIFT);
	for (;;) {
		struct uffdio_zeropage z = { .range = { addr, 4096 }, .mode = 0 };
		struct uffdio_continue c = { .range = { addr, 4096 }, .mode = 0 };
		if (ioctl(pc->uffd, minor ? UFFDIO_CONTINUE : UFFDIO_ZEROPAGE, minor ? (void *)&c : (void *)&z) == 0)
			return;
		if (errno == EAGAIN)
			continue;
		if (errno == EEXIST) {
			struct uffdio_range w = { addr, 4096 };
			if (ioctl(pc->uffd, UFFDIO_WAKE, &w) < 0)
				log_warn("post-copy: waking page %llu: %s", (unsigned long long)p, strerror(errno));
			return;
		}
		log_warn("post-copy: %s page %llu: %s", minor ? "mapping" : "zero-filling",
			 (unsigned long long)p, strerror(errno));
		return;
	}
}

static void on_fault(struct postcopy_in *pc, uint64_t addr, bool minor)
{
	uint64_t base = (uint64_t)(uintptr_t)pc->gm->host, p;
	bool ask = false;
	if (addr < base || (addr - base) >> GMEM_PAGE_SHIFT >= pc->npages) {
		log_warn("post-copy: a fault at 0x%llx outside guest memory", (unsigned long long)addr);
		return;
	}
	p = (addr - base) >> GMEM_PAGE_SHIFT;
	pthread_mutex_lock(&pc->lock);
	if (bit_get(pc->owed, p) && !bit_get(pc->arrived, p)) {
		/* UFFDIO_COPY wakes it when the page comes */
		if (!bit_get(pc->asked, p)) {
			bit_set(pc->asked, p);
			pc->faults++;
			ask = pc->may_ask;
		}
		pthread_mutex_unlock(&pc->lock);
		if (ask)
			send_request(pc, p);
		return;
	}
	if (!bit_get(pc->owed, p) && !minor)
		pc->zero_fills++;
	pthread_mutex_unlock(&pc->lock);
	fill_or_wake(pc, p, minor);
}

/* The pages faulted on before the source could be asked. */
static void ask_held(struct postcopy_in *pc)
{
	uint64_t words = (pc->npages + 63) / 64;
	for (uint64_t w = 0; w < words; w++) {
		uint64_t v;
		pthread_mutex_lock(&pc->lock);
		v = pc->asked[w] & ~pc->arrived[w];
		pthread_mutex_unlock(&pc->lock);
		while (v) {
			int b = __builtin_ctzll(v);
			v &= v - 1;
			send_request(pc, w * 64 + (uint64_t)b);
		}
	}
}

static void *fault_thread(void *arg)
{
	struct postcopy_in *pc = arg;
	bool held_asked = false;
	while (!pc->stop) {
		struct pollfd p[2] = { { pc->uffd, POLLIN, 0 }, { pc->wake_fd, POLLIN, 0 } };
		struct uffd_msg msgs[32];
		ssize_t n;
		bool may;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(pc->error, sizeof(pc->error), "poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents) {
			uint64_t v;
			if (read(pc->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_warn("post-copy wake: %s", strerror(errno));
		}
		if (pc->stop)
			break;
		pthread_mutex_lock(&pc->lock);
		may = pc->may_ask;
		pthread_mutex_unlock(&pc->lock);
		if (may && !held_asked) {
			held_asked = true;
			ask_held(pc);
		}
		n = read(pc->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			snprintf(pc->error, sizeof(pc->error), "reading the userfaultfd: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				on_fault(pc, msgs[i].arg.pagefault.address & ~4095ULL,
					 msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR);
	}
	return NULL;
}

int postcopy_in_arm(struct postcopy_in *pc, struct stream *w, pthread_mutex_t *wlock, struct err *e)
{
	struct guest_mem *gm = pc->gm;
	struct uffdio_register reg = {
		.range = { (uint64_t)(uintptr_t)gm->host, gm->ram_size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	uint64_t need = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE) | (1ULL << _UFFDIO_WAKE);
	uint64_t t0;
	pc->w = w;
	pc->wlock = wlock;
	pc->uffd = uffd_open(&pc->minor, pc->no_minor, e);
	if (pc->uffd < 0)
		return -1;
	if (pc->minor) {
		reg.mode |= UFFDIO_REGISTER_MODE_MINOR;
		need |= 1ULL << _UFFDIO_CONTINUE;
		/* where pages are written before they are mapped in whole */
		pc->alias = mmap(NULL, gm->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
				 gm->memfd, 0);
		if (pc->alias == MAP_FAILED) {
			pc->alias = NULL;
			return err_sys(e, "post-copy: mapping guest memory a second time");
		}
	}
	if (ioctl(pc->uffd, UFFDIO_REGISTER, &reg) < 0)
		return err_sys(e, "userfaultfd: registering guest memory");
	if ((reg.ioctls & need) != need)
		return err_set(e, "userfaultfd: this kernel cannot place pages in guest memory (ioctls 0x%llx)",
			       (unsigned long long)reg.ioctls);
	pc->armed = true;
	t0 = now_ns();
	/* The stale copies of owed pages must not be seen. Registered first:
	 * a touch of one from now on faults into us. This is downtime. With
	 * minor faults they are only mapped out (the page cache keeps them,
	 * to be overwritten through the alias); else they are freed, the
	 * host's cost of ~0.2 ms per MiB here (bench/HISTORY.md). */
	for (uint64_t p = 0; p < pc->npages;) {
		uint64_t q;
		if (!bit_get(pc->owed, p)) {
			p++;
			continue;
		}
		for (q = p; q < pc->npages && bit_get(pc->owed, q); q++)
			;
		if (pc->minor && madvise(gm->host + (p << GMEM_PAGE_SHIFT), (q - p) << GMEM_PAGE_SHIFT,
					 MADV_DONTNEED) < 0)
			return err_sys(e, "post-copy: mapping stale pages out");
		if (!pc->minor && gmem_punch(gm, p, q - p, e) < 0)
			return err_prefix(e, "post-copy: dropping stale pages");
		p = q;
	}
	log_info("post-copy: %llu MiB owed; their stale copies %s in %.1f ms",
		 (unsigned long long)(pc->owed_count >> 8), pc->minor ? "mapped out" : "dropped",
		 (double)(now_ns() - t0) / 1e6);
	pc->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (pc->wake_fd < 0)
		return err_sys(e, "eventfd");
	if (pthread_create(&pc->thread, NULL, fault_thread, pc) != 0)
		return err_set(e, "cannot start the post-copy fault thread");
	pc->thread_on = true;
	return 0;
}

static void kick(struct postcopy_in *pc)
{
	uint64_t one = 1;
	if (pc->wake_fd >= 0 && write(pc->wake_fd, &one, sizeof(one)) < 0)
		log_warn("post-copy kick: %s", strerror(errno));
}

void postcopy_in_may_ask(struct postcopy_in *pc)
{
	pthread_mutex_lock(&pc->lock);
	pc->may_ask = true;
	pthread_mutex_unlock(&pc->lock);
	kick(pc);
}

/* Map pages [first, first+n), written through the alias, in whole. */
static int map_in(struct postcopy_in *pc, uint64_t first, uint64_t n, struct err *e)
{
	uint64_t base = (uint64_t)(uintptr_t)pc->gm->host + (first << GMEM_PAGE_SHIFT);
	uint64_t len = n << GMEM_PAGE_SHIFT, done = 0;
	while (done < len) {
		struct uffdio_continue c = { .range = { base + done, len - done }, .mode = 0 };
		if (ioctl(pc->uffd, UFFDIO_CONTINUE, &c) == 0)
			done = len;
		else if (c.mapped > 0)
			done += (uint64_t)c.mapped; /* part of it, then EAGAIN: the rest again */
		else if (errno != EAGAIN)
			return err_sys(e, "post-copy: mapping pages %llu+%llu",
				       (unsigned long long)(first + (done >> GMEM_PAGE_SHIFT)),
				       (unsigned long long)((len - done) >> GMEM_PAGE_SHIFT));
	}
	return 0;
}

/* Place pages [first, first+n) whole, from buf: with minor faults written
 * through the alias (no one can see them there: their mapping here is
 * gone or was never made) and then mapped in; else copied in. */
static int place(struct postcopy_in *pc, uint64_t first, uint64_t n, const uint8_t *buf, struct err *e)
{
	if (pc->minor) {
		memcpy(pc->alias + (first << GMEM_PAGE_SHIFT), buf, n << GMEM_PAGE_SHIFT);
		return map_in(pc, first, n, e);
	}
	uint64_t base = (uint64_t)(uintptr_t)pc->gm->host + (first << GMEM_PAGE_SHIFT);
	uint64_t len = n << GMEM_PAGE_SHIFT, done = 0;
	while (done < len) {
		struct uffdio_copy c = { .dst = base + done, .src = (uint64_t)(uintptr_t)(buf + done),
					 .len = len - done, .mode = 0 };
		int rc = ioctl(pc->uffd, UFFDIO_COPY, &c);
		int64_t got = c.copy;
		if (rc == 0) {
			done = len;
		} else if (got > 0) {
			done += (uint64_t)got; /* part of it, then EAGAIN: the rest again */
		} else if (errno != EAGAIN) {
			return err_sys(e, "post-copy: placing pages %llu+%llu",
				       (unsigned long long)(first + (done >> GMEM_PAGE_SHIFT)),
				       (unsigned long long)((len - done) >> GMEM_PAGE_SHIFT));
		}
	}
	return 0;
}

int postcopy_in_recv(struct postcopy_in *pc, struct stream *r, uint32_t rec_len, struct err *e)
{
	struct mig_mem_hdr h;
	int64_t off;
	uint64_t first;
	size_t len;
	int rc = 0;

	if (mig_get_mem_hdr(r, rec_len, &h, e) < 0)
		return -1;
	off = gmem_offset(pc->gm, h.gpa);
	if (off < 0 || !gmem_ptr(pc->gm, h.gpa, (uint64_t)h.npages * 4096))
		return err_set(e, "corrupt stream: post-copy pages at 0x%llx+%u are outside guest RAM",
			       (unsigned long long)h.gpa, h.npages);
	if (h.enc != MIG_ENC_RAW && h.enc != MIG_ENC_ZERO)
		return err_set(e, "corrupt stream: post-copy pages at 0x%llx come in encoding %u, not raw or zero",
			       (unsigned long long)h.gpa, h.enc);
	first = (uint64_t)off >> GMEM_PAGE_SHIFT;
	len = (size_t)h.npages * 4096;
	if (h.enc == MIG_ENC_RAW) {
		stream_get(r, pc->buf, len);
		if (stream_check(r, e) < 0)
			return -1;
		if (mig_sum(pc->buf, len) != h.sum)
			return err_set(e, "corrupt stream: checksum mismatch in post-copy pages at 0x%llx+%u",
				       (unsigned long long)h.gpa, h.npages);
	}
	pthread_mutex_lock(&pc->lock);
	for (uint32_t i = 0; i < h.npages && rc == 0; i++)
		if (!bit_get(pc->owed, first + i) || bit_get(pc->arrived, first + i))
			rc = err_set(e, "corrupt stream: post-copy page 0x%llx %s",
				     (unsigned long long)ram_page_gpa(pc->gm, first + i),
				     bit_get(pc->owed, first + i) ? "came twice" : "was not owed");
	/* Placed and marked under the lock: the fault thread, seeing a page
	 * arrived, may wake its waiters, and it is there. Zero pages are not
	 * placed: a touch fills one then (fill_or_wake), and the ones never
	 * touched cost no memory. Their waiters are woken to fault again. */
	if (rc == 0 && h.enc == MIG_ENC_RAW) {
		rc = place(pc, first, h.npages, pc->buf, e);
	} else if (rc == 0 && pc->minor) {
		/* the stale copies still in the page cache become zeros; holes stay */
		unsigned char in[MIG_MAX_RUN_PAGES];
		if (mincore(pc->alias + (first << GMEM_PAGE_SHIFT), (size_t)h.npages << GMEM_PAGE_SHIFT, in) < 0)
			rc = err_sys(e, "post-copy: mincore");
		for (uint32_t i = 0; i < h.npages && rc == 0; i++)
			if (in[i] & 1) {
				memset(pc->alias + ((first + i) << GMEM_PAGE_SHIFT), 0, 4096);
				rc = map_in(pc, first + i, 1, e);
			}
	}
	if (rc == 0 && h.enc != MIG_ENC_RAW) {
		struct uffdio_range wr = { (uint64_t)(uintptr_t)pc->gm->host + (first << GMEM_PAGE_SHIFT),
					   (uint64_t)h.npages << GMEM_PAGE_SHIFT };
		if (ioctl(pc->uffd, UFFDIO_WAKE, &wr) < 0)
			rc = err_sys(e, "post-copy: waking the waiters of zero pages");
	}
	if (rc == 0) {
		for (uint32_t i = 0; i < h.npages; i++)
			bit_set(pc->arrived, first + i);
		pc->arrived_count += h.npages;
	}
	pthread_mutex_unlock(&pc->lock);
	return rc;
}

static void stop_thread(struct postcopy_in *pc)
{
	if (!pc->thread_on)
		return;
	pc->stop = true;
	kick(pc);
	pthread_join(pc->thread, NULL);
	pc->thread_on = false;
}

static void unmap_alias(struct postcopy_in *pc)
{
	if (pc->alias && munmap(pc->alias, pc->gm->ram_size) < 0)
		log_warn("post-copy: unmapping the alias: %s", strerror(errno));
	pc->alias = NULL;
}

int postcopy_in_finish(struct postcopy_in *pc, struct err *e)
{
	struct uffdio_range all = { (uint64_t)(uintptr_t)pc->gm->host, pc->gm->ram_size };
	if (pc->arrived_count != pc->owed_count)
		return err_set(e, "post-copy ended with %llu of %llu owed pages never sent",
			       (unsigned long long)(pc->owed_count - pc->arrived_count),
			       (unsigned long long)pc->owed_count);
	stop_thread(pc);
	/* Faults still queued are woken by the unregister and retried: on a
	 * page nobody sends now, so the kernel's own zero fill is right. */
	if (ioctl(pc->uffd, UFFDIO_UNREGISTER, &all) < 0)
		return err_sys(e, "userfaultfd: unregistering guest memory");
	close(pc->uffd);
	pc->uffd = -1;
	pc->armed = false;
	unmap_alias(pc);
	return 0;
}

void postcopy_in_destroy(struct postcopy_in *pc)
{
	stop_thread(pc);
	if (pc->uffd >= 0)
		close(pc->uffd);
	if (pc->wake_fd >= 0)
		close(pc->wake_fd);
	pc->uffd = pc->wake_fd = -1;
	unmap_alias(pc);
	free(pc->owed);
	free(pc->arrived);
	free(pc->asked);
	free(pc->buf);
	pc->owed = pc->arrived = pc->asked = NULL;
	pc->buf = NULL;
	pthread_mutex_destroy(&pc->lock);
}
