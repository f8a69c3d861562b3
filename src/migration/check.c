/*
 * Stream checker (see check.h). Two tables drive it: record rules (one
 * line per record type: its checker and whether it may follow STATE_END)
 * and section rules (one line per section name: its decoder). A new record
 * type from the live protocol is one line in rec_rules; a new device is one
 * line in sec_rules. Buffers are allocated once, sized by the format limits
 * in format.h, so a hostile length can never make us allocate more.
 */
#include "migration/check.h"

#include <inttypes.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "devices/pci.h"
#include "devices/uart.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "migration/digest.h"
#include "migration/diskcopy.h"
#include "vmm/vmstate.h"
#include "vmm/x86/cpustate.h"
#include "vmm/x86/layout.h"

#define RUN_BYTES ((size_t)MIG_MAX_RUN_PAGES * 4096)

/* Decoded section state lands here; only one decoder runs at a time. */
union section_state {
	struct vcpu_state vcpu;
	struct kvm_vm_state kvm;
	struct uart_state uart;
	struct pci_state pci;
	struct virtio_blk_state blk;
	struct virtio_net_state net;
};

struct walker {
	struct stream *r;
	const struct streamcheck_opts *o;
	struct streamcheck_report *rep;
	uint64_t base;              /* r->bytes when the walk began */
	uint64_t rec_off;           /* offset of the record being checked */
	uint64_t low_ram, high_ram; /* RAM bytes below the hole / from 4 GiB */
	bool state_end, eos;
	uint8_t *buf;               /* one record payload (compressed run, config, section) */
	uint8_t *out;               /* one decompressed run */
	ZSTD_DCtx *zd;
	union section_state *st;
	uint8_t *torn;              /* per RAM page: last copy arrived mid-write */
	uint16_t *gen;              /* per RAM page: generation held (the receiver's rule) */
	uint8_t stale[MIG_MAX_RUN_PAGES]; /* the run's pages a newer copy already holds */
	uint8_t *digest_seen;       /* per digest block: sent (each at most once) */
	uint64_t digest_blocks, digest_got;
	char detail[256];           /* dump: what this record holds */
	uint64_t printed;
};

typedef int (*rec_check_fn)(struct walker *w, const struct mig_rec *rec, struct err *e);

static int check_config(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_mem(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_section(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_sync(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_state_end(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_eos(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_opaque(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_digest(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_cpu_model(struct walker *w, const struct mig_rec *rec, struct err *e);
static int check_disk(struct walker *w, const struct mig_rec *rec, struct err *e);

/* One line per record type. after_end: may appear between STATE_END and EOS. */
static const struct rec_rule {
	uint32_t type;
	rec_check_fn check;
	bool after_end;
} rec_rules[] = {
	{ MIG_REC_CONFIG, check_config, false },
	{ MIG_REC_MEM, check_mem, false },
	{ MIG_REC_SECTION, check_section, false },
	{ MIG_REC_SYNC, check_sync, false },
	{ MIG_REC_STATE_END, check_state_end, false },
	{ MIG_REC_EOS, check_eos, true },
	{ MIG_REC_DIGEST, check_digest, false },
	/* Live protocol records (precopy.c / incoming.c): framed and skipped here;
	 * their handshake meaning is checked by the live receiver. */
	{ MIG_REC_CPUID, check_opaque, false },
	{ MIG_REC_EXTENTS, check_opaque, false },
	{ MIG_REC_HELLO, check_opaque, false },
	{ MIG_REC_COMMIT, check_opaque, true },
	{ MIG_REC_ABORT, check_opaque, true },
	/* ...but the vCPU model, decoded as the destination does at setup */
	{ MIG_REC_CPU_MODEL, check_cpu_model, false },
	/* a disk copy's runs: inside the disk CONFIG describes, each sum right */
	{ MIG_REC_DISK, check_disk, false },
	/* Types mig_get_rec accepts but this table lacks (new live-protocol
	 * records) are framing-checked and skipped anywhere; --strict rejects them. */
};

typedef int (*sec_decode_fn)(struct walker *w, struct stream *p, uint32_t version, struct err *e);

static int dec_cpu(struct walker *w, struct stream *p, uint32_t version, struct err *e)
{
	return vcpu_state_get(p, version, &w->st->vcpu, e);
}

static int dec_kvm(struct walker *w, struct stream *p, uint32_t version, struct err *e)
{
	if (version != VMSTATE_KVM_VERSION)
		return err_set(e, "kvm state version %u unsupported (this build reads %u)", version,
			       VMSTATE_KVM_VERSION);
	return kvm_vm_state_get(p, &w->st->kvm, e);
}

static int dec_uart(struct walker *w, struct stream *p, uint32_t version, struct err *e)
{
	if (version != UART_STATE_VERSION)
		return err_set(e, "uart state version %u unsupported (this build reads %u)", version,
			       UART_STATE_VERSION);
	return uart_state_get(p, &w->st->uart, e);
}

static int dec_pci(struct walker *w, struct stream *p, uint32_t version, struct err *e)
{
	return pci_state_decode(p, version, &w->st->pci, e);
}

static int dec_blk(struct walker *w, struct stream *p, uint32_t version, struct err *e)
{
	return virtio_blk_state_decode(p, version, &w->st->blk, e);
}

static int dec_net(struct walker *w, struct stream *p, uint32_t version, struct err *e)
{
	return virtio_net_state_decode(p, version, &w->st->net, e);
}

/* How many instances of an indexed section the configuration allows. */
static int count_vcpus(const struct vm_config *c) { return c->vcpus; }
static int count_one(const struct vm_config *c) { (void)c; return 1; }
static int count_disks(const struct vm_config *c) { return c->disk[0] ? 1 : 0; }
static int count_nics(const struct vm_config *c) { return c->net ? 1 : 0; }

/* One line per section kind. Indexed kinds are "<prefix>N", N in [0, count). */
static const struct sec_rule {
	const char *name;
	bool indexed;
	int (*count)(const struct vm_config *c);
	sec_decode_fn decode;
} sec_rules[] = {
	{ "cpu.", true, count_vcpus, dec_cpu },
	{ "kvm", false, count_one, dec_kvm },
	{ "uart", false, count_one, dec_uart },
	{ "pci", false, count_one, dec_pci },
	{ "virtio-blk.", true, count_disks, dec_blk },
	{ "virtio-net.", true, count_nics, dec_net },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *streamcheck_enc_name(uint8_t enc)
{
	static const char *names[] = { "raw", "zero", "zstd", "lz4", "raw-sums" };
	return enc <= MIG_ENC_MAX ? names[enc] : "?";
}

static uint64_t offset_now(const struct walker *w)
{
	return w->r->bytes - w->base;
}

/* Match name against a rule; *index gets N for indexed rules (-1 if malformed). */
static const struct sec_rule *sec_lookup(const char *name, long *index)
{
	for (size_t i = 0; i < NELEM(sec_rules); i++) {
		const struct sec_rule *s = &sec_rules[i];
		size_t n = strlen(s->name);
		if (!s->indexed) {
			if (strcmp(name, s->name) == 0) {
				*index = 0;
				return s;
			}
			continue;
		}
		if (strncmp(name, s->name, n) != 0)
			continue;
		/* Decimal, no sign, no leading zero, small: exactly what the writers produce. */
		const char *d = name + n;
		long v = 0;
		size_t len = strlen(d);
		*index = -1;
		if (len == 0 || len > 3 || (len > 1 && d[0] == '0'))
			return s;
		for (; *d; d++) {
			if (*d < '0' || *d > '9')
				return s;
			v = v * 10 + (*d - '0');
		}
		*index = v;
		return s;
	}
	return NULL;
}

static int read_payload(struct walker *w, uint32_t len, struct err *e)
{
	stream_get(w->r, w->buf, len);
	return stream_check(w->r, e);
}

/* Printable copy of untrusted text for the dump: no control bytes reach the terminal. */
static void print_escaped(FILE *f, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f)
			fputc(p[i], f);
		else
			fprintf(f, "\\x%02x", p[i]);
	}
}

static int check_config(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	struct streamcheck_report *rep = w->rep;
	const char *json;
	uint32_t jlen;
	uint64_t size;

	if (rep->have_config)
		return err_set(e, "a second configuration record");
	/* mig_get_rec already capped rec->len at MIG_MAX_CONFIG, below the buffer size. */
	if (read_payload(w, rec->len, e) < 0 ||
	    mig_config_text(rep->version, w->buf, rec->len, &json, &jlen, e) < 0)
		return -1;
	w->buf[rec->len] = 0;
	if (config_from_json(json, jlen, &rep->cfg, e) < 0)
		return err_prefix(e, "configuration");
	rep->have_config = true;
	size = rep->cfg.mem_size;
	w->low_ram = size < LAYOUT_MMIO_HOLE_START ? size : LAYOUT_MMIO_HOLE_START;
	w->high_ram = size - w->low_ram;
	free(w->torn);
	free(w->gen);
	w->torn = calloc(size >> 12 ? size >> 12 : 1, 1);
	w->gen = calloc(size >> 12 ? size >> 12 : 1, sizeof(*w->gen));
	if (!w->torn || !w->gen)
		return err_set(e, "out of memory for %" PRIu64 " MiB of pages", size >> 20);
	snprintf(w->detail, sizeof(w->detail), "name=%s memory=%" PRIu64 " vcpus=%d", rep->cfg.name,
		 size, rep->cfg.vcpus);
	return 0;
}

/* The whole run [gpa, gpa+len) must be RAM inside one region (gmem's layout). */
static bool in_ram(const struct walker *w, uint64_t gpa, uint64_t len)
{
	if (gpa < w->low_ram && len <= w->low_ram - gpa)
		return true;
	if (w->high_ram && gpa >= LAYOUT_HIGH_RAM_START) {
		uint64_t off = gpa - LAYOUT_HIGH_RAM_START;
		return off < w->high_ram && len <= w->high_ram - off;
	}
	return false;
}

static void count_gen(struct streamcheck_report *rep, uint16_t gen, uint32_t npages)
{
	for (int i = 0; i < rep->ngens; i++) {
		if (rep->gens[i].gen == gen) {
			rep->gens[i].pages += npages;
			return;
		}
	}
	if (rep->ngens < STREAMCHECK_MAX_GENS) {
		rep->gens[rep->ngens].gen = gen;
		rep->gens[rep->ngens].pages = npages;
		rep->ngens++;
		return;
	}
	rep->pages_other_gens += npages;
}

static int check_mem(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	struct streamcheck_report *rep = w->rep;
	struct mig_mem_hdr h;
	uint32_t clen;
	uint64_t first;
	size_t raw, got;

	if (mig_get_mem_hdr(w->r, rec->len, &h, e) < 0)
		return -1;
	snprintf(w->detail, sizeof(w->detail), "gpa=0x%" PRIx64 " npages=%u gen=%u enc=%s", h.gpa,
		 h.npages, h.gen, streamcheck_enc_name(h.enc));
	raw = (size_t)h.npages * 4096;
	if (!in_ram(w, h.gpa, raw))
		return err_set(e, "pages at 0x%" PRIx64 "+%u are outside guest RAM (%" PRIu64
			       " MiB: 0x0-0x%" PRIx64 "%s)", h.gpa, h.npages, rep->cfg.mem_size >> 20,
			       w->low_ram, w->high_ram ? " and from 4 GiB" : "");
	clen = rec->len - MIG_MEM_HDR;
	/* index of the run's first page in RAM (in_ram held: one region) */
	first = (h.gpa < w->low_ram ? h.gpa : w->low_ram + (h.gpa - LAYOUT_HIGH_RAM_START)) >> 12;
	/* As a receiver keeps them: an older copy of a page changes nothing,
	 * its torn mark included */
	for (uint32_t i = 0; i < h.npages; i++) {
		if (w->gen[first + i] > mig_gen_eff(h.gen)) {
			w->stale[i] = 1;
			continue;
		}
		w->stale[i] = 0;
		w->gen[first + i] = mig_gen_eff(h.gen);
		w->torn[first + i] = 0;
	}
	switch (h.enc) {
	case MIG_ENC_ZERO:
		break;
	case MIG_ENC_RAW_SUMS:
		if (read_payload(w, clen, e) < 0)
			return -1;
		if (mig_sum(w->buf, (size_t)h.npages * 8) != h.sum)
			return err_set(e, "page sums of the run at 0x%" PRIx64 "+%u do not match", h.gpa,
				       h.npages);
		for (uint32_t i = 0; i < h.npages; i++)
			if (mig_sum(w->buf + (size_t)h.npages * 8 + (size_t)i * 4096, 4096) !=
			    le_get_u64(w->buf + (size_t)i * 8) && !w->stale[i]) {
				w->torn[first + i] = 1;
				rep->pages_torn++;
			}
		break;
	case MIG_ENC_RAW:
		if (read_payload(w, clen, e) < 0)
			return -1;
		if (mig_sum(w->buf, raw) != h.sum)
			return err_set(e, "checksum mismatch in pages at 0x%" PRIx64 "+%u", h.gpa, h.npages);
		break;
	default:
		/* mig_get_mem_hdr bounded clen by npages * 4096 + 4096: it fits buf. */
		if (read_payload(w, clen, e) < 0)
			return -1;
		if (h.enc == MIG_ENC_ZSTD) {
			if (!w->zd && !(w->zd = ZSTD_createDCtx()))
				return err_set(e, "zstd: cannot create a decompression context");
			got = ZSTD_decompressDCtx(w->zd, w->out, raw, w->buf, clen);
			if (ZSTD_isError(got))
				return err_set(e, "zstd run at 0x%" PRIx64 " does not decode: %s", h.gpa,
					       ZSTD_getErrorName(got));
		} else {
			int n = LZ4_decompress_safe((const char *)w->buf, (char *)w->out, (int)clen, (int)raw);
			if (n < 0)
				return err_set(e, "lz4 run at 0x%" PRIx64 " does not decode", h.gpa);
			got = (size_t)n;
		}
		if (got != raw)
			return err_set(e, "compressed run at 0x%" PRIx64 " decodes to %zu bytes, expected %zu",
				       h.gpa, got, raw);
		if (mig_sum(w->out, raw) != h.sum)
			return err_set(e, "checksum mismatch in compressed pages at 0x%" PRIx64 "+%u",
				       h.gpa, h.npages);
		rep->compressed_bytes += clen;
		break;
	}
	rep->pages[h.enc] += h.npages;
	count_gen(rep, h.gen, h.npages);
	return 0;
}

static struct streamcheck_section *find_section(struct streamcheck_report *rep, const char *name)
{
	for (int i = 0; i < rep->nsections; i++)
		if (strcmp(rep->sections[i].name, name) == 0)
			return &rep->sections[i];
	return NULL;
}

static int check_section(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	struct streamcheck_report *rep = w->rep;
	struct streamcheck_section *s;
	const struct sec_rule *rule;
	char name[MIG_MAX_NAME + 1];
	uint32_t version, len;
	uint64_t sum;
	struct stream p;
	long index;

	if (mig_get_section_hdr(w->r, rec->len, name, &version, &len, &sum, e) < 0)
		return -1;
	snprintf(w->detail, sizeof(w->detail), "name=%s version=%u size=%u", name, version, len);
	if (find_section(rep, name))
		return err_set(e, "section %s appears twice", name);
	/* The receiver keeps at most VMSTATE_MAX_SECTIONS; so do we. */
	if (rep->nsections >= VMSTATE_MAX_SECTIONS || rep->nsections >= STREAMCHECK_MAX_SECTIONS)
		return err_set(e, "more than %d state sections", rep->nsections);
	if (read_payload(w, len, e) < 0)
		return err_prefix(e, "section %s", name);
	if (mig_sum(w->buf, len) != sum)
		return err_set(e, "checksum mismatch in section %s", name);
	s = &rep->sections[rep->nsections++];
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->version = version;
	s->size = len;
	s->offset = w->rec_off;
	rule = sec_lookup(name, &index);
	if (!rule) {
		rep->unknown_sections++;
		if (w->o->strict)
			return err_set(e, "unknown section %s (strict mode)", name);
		return 0;
	}
	if (index < 0 || index >= rule->count(&rep->cfg))
		return err_set(e, "section %s does not fit the configuration (%d allowed)", name,
			       rule->count(&rep->cfg));
	stream_init_mem_reader(&p, w->buf, len);
	if (rule->decode(w, &p, version, e) < 0)
		return err_prefix(e, "section %s", name);
	/* The receiver rejects trailing bytes (vmstate.c check_consumed): so must we. */
	if (stream_remaining(&p) != 0)
		return err_set(e, "section %s: decoder left %zu of %u bytes unread", name,
			       stream_remaining(&p), len);
	s->known = true;
	return 0;
}

static int check_sync(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	struct mig_sync sy;
	if (mig_get_sync(w->r, rec, &sy, e) < 0)
		return -1;
	snprintf(w->detail, sizeof(w->detail), "pass=%u", sy.pass);
	w->rep->syncs++;
	return 0;
}

/* Every section the configuration implies must be present (vmstate_apply needs all). */
static int check_complete(struct walker *w, struct err *e)
{
	char name[MIG_MAX_NAME + 1];
	for (size_t i = 0; i < NELEM(sec_rules); i++) {
		const struct sec_rule *s = &sec_rules[i];
		int n = s->count(&w->rep->cfg);
		for (int k = 0; k < n; k++) {
			if (s->indexed)
				snprintf(name, sizeof(name), "%s%d", s->name, k);
			else
				snprintf(name, sizeof(name), "%s", s->name);
			if (!find_section(w->rep, name))
				return err_set(e, "state lacks section %s", name);
		}
	}
	return 0;
}

static int check_state_end(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	uint64_t npages = w->rep->cfg.mem_size >> 12, bad = 0;
	if (rec->len != 0)
		return err_set(e, "state-end record with a %u-byte payload", rec->len);
	for (uint64_t p = 0; w->torn && p < npages; p++)
		bad += w->torn[p];
	if (bad)
		return err_set(e, "%" PRIu64 " page(s) arrived torn and were never sent again", bad);
	if (w->digest_seen && w->digest_got != w->digest_blocks)
		return err_set(e, "digest is incomplete: %" PRIu64 " of %" PRIu64 " blocks", w->digest_got,
			       w->digest_blocks);
	w->state_end = true;
	return check_complete(w, e);
}

static int check_eos(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	if (rec->len != 0)
		return err_set(e, "end record with a %u-byte payload", rec->len);
	if (!w->state_end)
		return err_set(e, "end record before the state-end record");
	w->eos = true;
	return 0;
}

/* Records whose payload this build does not interpret: framing only. */
static int check_opaque(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	stream_skip(w->r, rec->len);
	return stream_check(w->r, e);
}

/* Its fields and bounds; whether a host can run that model needs the host. */
static int check_cpu_model(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	struct cpu_model cm;
	int n;

	if (cpu_model_get(w->r, rec->len, &cm, e) < 0)
		return -1;
	n = snprintf(w->detail, sizeof(w->detail), "tsc_khz=%u mcg_cap=0x%" PRIx64 " msrs=%u",
		     cm.tsc_khz, cm.mcg_cap, cm.nmsrs);
	for (uint32_t i = 0; i < cm.nmsrs && n > 0 && (size_t)n < sizeof(w->detail); i++)
		n += snprintf(w->detail + n, sizeof(w->detail) - (size_t)n, " 0x%x=0x%" PRIx64,
			      cm.msrs[i].index, cm.msrs[i].data);
	return 0;
}

/* The digest's own checksum and bounds; whether RAM matches it needs the
 * source's memory, which only a live destination has. */
static int check_digest(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	struct digest_rec h;
	if (digest_get_hdr(w->r, rec->len, w->rep->cfg.mem_size >> 12, &h, e) < 0)
		return -1;
	snprintf(w->detail, sizeof(w->detail), "blocks %" PRIu64 "+%u of %u pages", h.first, h.count,
		 DIGEST_BLOCK_PAGES);
	/* at most 512 KiB, within buf (digest.h asserts it); buf is malloc'd, so aligned */
	if (digest_get_sums(w->r, &h, (uint64_t *)(void *)w->buf, e) < 0)
		return -1;
	/* A receiver takes each block once and needs them all (at STATE_END) */
	if (!w->digest_seen) {
		w->digest_blocks = ((w->rep->cfg.mem_size >> 12) + DIGEST_BLOCK_PAGES - 1) / DIGEST_BLOCK_PAGES;
		w->digest_seen = calloc(w->digest_blocks ? w->digest_blocks : 1, 1);
		if (!w->digest_seen)
			return err_set(e, "out of memory for the digest's blocks");
	}
	for (uint64_t b = h.first; b < h.first + h.count; b++) {
		if (w->digest_seen[b])
			return err_set(e, "digest block %" PRIu64 " sent twice", b);
		w->digest_seen[b] = 1;
		w->digest_got++;
	}
	return 0;
}

static int check_disk(struct walker *w, const struct mig_rec *rec, struct err *e)
{
	struct diskcopy_hdr h;
	if (!w->rep->cfg.disk_copy_bytes)
		return err_set(e, "a disk record, but the configuration asks for no copy of the disk");
	if (diskcopy_get_hdr(w->r, rec->len, w->rep->cfg.disk_copy_bytes, &h, e) < 0 ||
	    read_payload(w, h.length, e) < 0)
		return -1;
	if (mig_sum(w->buf, h.length) != h.sum)
		return err_set(e, "disk run at %" PRIu64 " (%u bytes) fails its checksum", h.offset, h.length);
	snprintf(w->detail, sizeof(w->detail), "disk bytes %" PRIu64 "+%u", h.offset, h.length);
	return 0;
}

static const struct rec_rule *rec_lookup(uint32_t type)
{
	for (size_t i = 0; i < NELEM(rec_rules); i++)
		if (rec_rules[i].type == type)
			return &rec_rules[i];
	return NULL;
}

static void dump_line(struct walker *w, const struct mig_rec *rec, bool config)
{
	FILE *f = w->o->dump;
	if (!f || (w->o->limit && w->printed >= w->o->limit))
		return;
	w->printed++;
	fprintf(f, "%10" PRIu64 "  %-9s %8u  ", w->rec_off, mig_rec_name(rec->type), rec->len);
	if (config && w->rep->have_config) {
		/* the JSON, after the checksum that leads it from version 3
		 * on (printed as such, not as escaped bytes of the text) */
		const char *json;
		uint32_t jlen;
		struct err e2;
		if (mig_config_text(w->rep->version, w->buf, rec->len, &json, &jlen, &e2) < 0) {
			json = (const char *)w->buf;
			jlen = rec->len;
		}
		if (jlen < rec->len)
			fprintf(f, "sum=%016" PRIx64 " ", le_get_u64(w->buf));
		print_escaped(f, (const uint8_t *)json, jlen);
	} else
		fputs(w->detail, f);
	fputc('\n', f);
}

static int one_record(struct walker *w, struct err *e)
{
	struct streamcheck_report *rep = w->rep;
	const struct rec_rule *rule;
	struct mig_rec rec;
	int rc;

	w->rec_off = offset_now(w);
	w->detail[0] = 0;
	if (mig_get_rec(w->r, &rec, e) < 0) {
		if (w->r->eof && offset_now(w) == w->rec_off)
			return err_set(e, "stream ends at offset %" PRIu64 " without an end record", w->rec_off);
		return err_prefix(e, "record header at offset %" PRIu64, w->rec_off);
	}
	rep->records++;
	if (rec.type < STREAMCHECK_MAX_TYPES) {
		rep->by_type[rec.type]++;
		rep->bytes_by_type[rec.type] += rec.len;
	}
	rule = rec_lookup(rec.type);
	if (!rep->have_config && rec.type != MIG_REC_CONFIG)
		rc = err_set(e, "expected the configuration first, found a %s record", mig_rec_name(rec.type));
	else if (w->state_end && rule && !rule->after_end)
		rc = err_set(e, "%s record after the state-end record", mig_rec_name(rec.type));
	else if (!rule && w->o->strict)
		rc = err_set(e, "record type %u has no checker rule (strict mode)", rec.type);
	else
		rc = (rule ? rule->check : check_opaque)(w, &rec, e);
	dump_line(w, &rec, rec.type == MIG_REC_CONFIG && rc == 0);
	if (rc < 0)
		return err_prefix(e, "%s record at offset %" PRIu64, mig_rec_name(rec.type), w->rec_off);
	return 0;
}

/* After EOS the input must end: trailing bytes mean a writer or framing bug. */
static int check_trailing(struct walker *w, struct err *e)
{
	uint64_t off = offset_now(w);
	if (w->r->fd < 0) {
		if (stream_remaining(w->r) != 0)
			return err_set(e, "%zu bytes of trailing data after the end record at offset %" PRIu64,
				       stream_remaining(w->r), off);
		return 0;
	}
	(void)stream_get_u8(w->r);
	if (stream_ok(w->r))
		return err_set(e, "trailing data after the end record at offset %" PRIu64, off);
	return 0;
}

int streamcheck_run(struct stream *r, const struct streamcheck_opts *o,
		    struct streamcheck_report *rep, struct err *e)
{
	struct walker w = { .r = r, .o = o, .rep = rep, .base = r->bytes };
	int rc = -1;

	memset(rep, 0, sizeof(*rep));
	/* +1: the configuration is NUL-terminated in place. */
	w.buf = malloc(MIG_MAX_RECORD + 1);
	w.out = malloc(RUN_BYTES);
	w.st = malloc(sizeof(*w.st));
	if (!w.buf || !w.out || !w.st) {
		err_set(e, "out of memory for the checker");
		goto out;
	}
	if (mig_get_header(r, &rep->version, e) < 0) {
		w.rec_off = 0;
		err_prefix(e, "header at offset 0");
		goto out;
	}
	if (o->dump && (!o->limit || w.printed < o->limit)) {
		fprintf(o->dump, "%10d  %-9s %8d  %s version %u\n", 0, "header", 16, MIG_MAGIC, rep->version);
		w.printed++;
	}
	while (!w.eos)
		if (one_record(&w, e) < 0)
			goto out;
	w.rec_off = offset_now(&w);
	if (check_trailing(&w, e) < 0)
		goto out;
	rc = 0;
out:
	rep->bytes = offset_now(&w);
	rep->valid = rc == 0;
	if (rc < 0) {
		rep->err_offset = w.rec_off;
		snprintf(rep->error, sizeof(rep->error), "%s", e->msg);
	}
	ZSTD_freeDCtx(w.zd);
	free(w.buf);
	free(w.out);
	free(w.st);
	free(w.torn);
	free(w.gen);
	free(w.digest_seen);
	return rc;
}

void streamcheck_print(FILE *f, const struct streamcheck_report *rep)
{
	uint64_t pages = 0;
	fprintf(f, "stream: %s, version %u, %" PRIu64 " bytes read, %" PRIu64 " records\n",
		rep->valid ? "valid" : "INVALID", rep->version, rep->bytes, rep->records);
	if (rep->have_config)
		fprintf(f, "config: name=%s memory=%" PRIu64 " MiB vcpus=%d disk=%s net=%s\n", rep->cfg.name,
			rep->cfg.mem_size >> 20, rep->cfg.vcpus, rep->cfg.disk[0] ? rep->cfg.disk : "none",
			rep->cfg.net ? "yes" : "no");
	fprintf(f, "records:");
	for (uint32_t t = 1; t < STREAMCHECK_MAX_TYPES; t++)
		if (rep->by_type[t])
			fprintf(f, " %s=%" PRIu64 " (%" PRIu64 " bytes)", mig_rec_name(t), rep->by_type[t],
				rep->bytes_by_type[t]);
	fputc('\n', f);
	fprintf(f, "pages:");
	for (int i = 0; i <= MIG_ENC_MAX; i++) {
		fprintf(f, " %s=%" PRIu64, streamcheck_enc_name((uint8_t)i), rep->pages[i]);
		pages += rep->pages[i];
	}
	fprintf(f, " total=%" PRIu64 " (%" PRIu64 " MiB); compressed payload %" PRIu64 " bytes; %" PRIu64
		" memory pass(es) ended\n", pages, pages >> 8, rep->compressed_bytes, rep->syncs);
	if (rep->pages_torn)
		fprintf(f, "torn: %" PRIu64 " page(s) arrived mid-write and were sent again later\n",
			rep->pages_torn);
	fprintf(f, "generations:");
	for (int i = 0; i < rep->ngens; i++)
		fprintf(f, " gen %u=%" PRIu64, rep->gens[i].gen, rep->gens[i].pages);
	if (rep->pages_other_gens)
		fprintf(f, " others=%" PRIu64, rep->pages_other_gens);
	fputc('\n', f);
	fprintf(f, "sections (%d, %d unknown):\n", rep->nsections, rep->unknown_sections);
	for (int i = 0; i < rep->nsections; i++) {
		const struct streamcheck_section *s = &rep->sections[i];
		fprintf(f, "  %-16s version %u  %7u bytes  at offset %" PRIu64 "%s\n", s->name, s->version,
			s->size, s->offset, s->known ? "" : "  (unknown: not decoded)");
	}
	if (!rep->valid)
		fprintf(f, "error at offset %" PRIu64 ": %s\n", rep->err_offset, rep->error);
}
