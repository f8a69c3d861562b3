/*
 * CPUID tables in the migration stream. The decoder treats the stream as
 * hostile: the count is bounded before allocating, flags must be ones KVM
 * defines, and a (function, index) pair may appear once.
 */
#include "vmm/x86/cpuid.h"

#include <stdlib.h>

#define KNOWN_FLAGS (KVM_CPUID_FLAG_SIGNIFCANT_INDEX | KVM_CPUID_FLAG_STATEFUL_FUNC | \
		     KVM_CPUID_FLAG_STATE_READ_NEXT)

void cpuid_encode(struct stream *w, const struct kvm_cpuid2 *c)
{
	stream_put_u32(w, c->nent);
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *x = &c->entries[i];
		stream_put_u32(w, x->function);
		stream_put_u32(w, x->index);
		stream_put_u32(w, x->flags);
		stream_put_u32(w, x->eax);
		stream_put_u32(w, x->ebx);
		stream_put_u32(w, x->ecx);
		stream_put_u32(w, x->edx);
	}
}

int cpuid_decode(struct stream *r, uint32_t len, struct kvm_cpuid2 **out, struct err *e)
{
	struct kvm_cpuid2 *c;
	uint32_t n;

	*out = NULL;
	/* the record's length first: reading past it would take the next
	 * record's bytes for entries (or wait for bytes never sent) */
	if (len < 4)
		return err_set(e, "cpuid: a record of %u bytes", len);
	n = stream_get_u32(r);
	if (stream_check(r, e) < 0)
		return err_prefix(e, "cpuid");
	if (n == 0 || n > CPUID_MAX_ENTRIES)
		return err_set(e, "cpuid: %u entries (1..%d)", n, CPUID_MAX_ENTRIES);
	if (len != 4 + n * CPUID_ENTRY_WIRE)
		return err_set(e, "cpuid: %u entries in a record of %u bytes (expected %u)", n, len,
			       4 + n * CPUID_ENTRY_WIRE);
	c = cpuid_alloc(n);
	if (!c)
		return err_set(e, "cpuid: out of memory");
	for (uint32_t i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *x = &c->entries[i];
		x->function = stream_get_u32(r);
		x->index = stream_get_u32(r);
		x->flags = stream_get_u32(r);
		x->eax = stream_get_u32(r);
		x->ebx = stream_get_u32(r);
		x->ecx = stream_get_u32(r);
		x->edx = stream_get_u32(r);
		if (stream_check(r, e) < 0) {
			free(c);
			return err_prefix(e, "cpuid entry %u", i);
		}
		if (x->flags & ~KNOWN_FLAGS) {
			err_set(e, "cpuid entry %u: unknown flags 0x%x", i, x->flags);
			free(c);
			return -1;
		}
		for (uint32_t j = 0; j < i; j++) {
			if (c->entries[j].function == x->function && c->entries[j].index == x->index) {
				err_set(e, "cpuid entry %u: duplicate leaf 0x%x.%u", i,
					x->function, x->index);
				free(c);
				return -1;
			}
		}
	}
	c->nent = n;
	*out = c;
	return 0;
}
