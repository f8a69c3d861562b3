/*
 * Legacy virtio-pci transport (see virtio_pci.h). Queues are processed
 * whenever their ring address is set, not only after DRIVER_OK: legacy
 * Linux drivers (before virtio_device_ready existed) used queues during
 * probe, and QEMU accepts that too. The interrupt is a level INTx line that
 * stays high until the guest reads the ISR.
 */
#include "devices/virtio_pci.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "vmm/vm.h"

static void virtio_set_irq(struct virtio_dev *vd, bool level)
{
	if (vd->irq_level == level)
		return;
	vd->irq_level = level;
	/* Without KVM (unit tests) this fails; the ISR is the observable
	 * state then. With KVM vm_irq_line logs its own failure. */
	if (vd->vm)
		(void)vm_irq_line(vd->vm, vd->pci.gsi, level);
}

/* The line follows the ISR, unless the guest masked INTx in COMMAND;
 * STATUS bit 3 follows the ISR either way. */
static void virtio_update_irq(struct virtio_dev *vd)
{
	vd->pci.intx_pending = vd->isr != 0;
	virtio_set_irq(vd, vd->isr && !pci_intx_disabled(&vd->pci));
}

/* COMMAND written: INTx masked or unmasked; bus mastering switched. With
 * mastering off the device touches no guest memory (Linux clears it to
 * stop DMA across kexec): queues are not processed, the tap not read.
 * Switched back on, queues notified meanwhile are looked at again. */
static void virtio_command(struct pci_dev *d, uint16_t old_cmd)
{
	struct virtio_dev *vd = (struct virtio_dev *)d; /* pci is first */
	bool was = old_cmd & PCI_COMMAND_MASTER, now = pci_bus_master(d);

	virtio_update_irq(vd);
	if (was == now)
		return;
	if (now && !virtio_is_broken(vd))
		for (uint16_t q = 0; q < vd->nqueues; q++)
			if (vd->vq[q].ready)
				vd->ops->notify(vd, q);
	if (vd->ops->status_changed)
		vd->ops->status_changed(vd);
}

void virtio_init(struct virtio_dev *vd, struct vm *vm, struct guest_mem *gm,
		 const char *name, uint16_t device_id, uint32_t class_code,
		 uint16_t nqueues, const struct virtio_dev_ops *ops,
		 void *opaque)
{
	memset(vd, 0, sizeof(*vd));
	/* Legacy ids: device 0x1000 + n, subsystem id = virtio device type. */
	pci_dev_init(&vd->pci, VIRTIO_PCI_VENDOR, (uint16_t)(0x0fff + device_id),
		     class_code, VIRTIO_PCI_VENDOR, device_id);
	vd->vm = vm;
	vd->gm = gm;
	vd->name = name;
	vd->ops = ops;
	vd->opaque = opaque;
	if (nqueues > VIRTIO_MAX_QUEUES)
		nqueues = VIRTIO_MAX_QUEUES;
	vd->nqueues = nqueues;
	for (int i = 0; i < nqueues; i++)
		vd->vq[i].size = VIRTIO_QUEUE_SIZE;
	vd->pci.on_command = virtio_command;
}

int virtio_pci_attach(struct virtio_dev *vd, struct pci_bus *bus, int slot,
		      struct err *e)
{
	return pci_add_device(bus, slot, &vd->pci, VIRTIO_PCI_BAR_SIZE,
			      virtio_pci_io, vd, e);
}

bool virtio_is_broken(const struct virtio_dev *vd)
{
	return vd->status & VIRTIO_STATUS_NEEDS_RESET;
}

bool virtio_is_live(const struct virtio_dev *vd)
{
	return (vd->status & VIRTIO_STATUS_DRIVER_OK) && !virtio_is_broken(vd) &&
	       pci_bus_master(&vd->pci);
}

void virtio_notify_queue(struct virtio_dev *vd, uint16_t q)
{
	if (q >= vd->nqueues || !virtq_want_interrupt(&vd->vq[q], vd->gm))
		return;
	vd->isr |= VIRTIO_ISR_QUEUE;
	virtio_update_irq(vd);
}

void virtio_notify_config(struct virtio_dev *vd)
{
	vd->isr |= VIRTIO_ISR_CONFIG;
	virtio_update_irq(vd);
}

void virtio_set_broken(struct virtio_dev *vd, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (virtio_is_broken(vd))
		return;
	log_warn("%s: guest error, device needs reset: %s", vd->name, msg);
	vd->status |= VIRTIO_STATUS_NEEDS_RESET;
	/* A modern driver reacts to NEEDS_RESET on a config interrupt;
	 * legacy ones at least re-read config. Either way no more queue
	 * work happens until reset. */
	virtio_notify_config(vd);
}

void virtio_reset(struct virtio_dev *vd)
{
	vd->status = 0;
	vd->isr = 0;
	vd->guest_features = 0;
	vd->queue_sel = 0;
	for (int i = 0; i < vd->nqueues; i++)
		virtq_reset(&vd->vq[i]);
	virtio_update_irq(vd);
	if (vd->ops && vd->ops->reset)
		vd->ops->reset(vd);
}

/* The 20 bytes of common registers as the guest sees them now. */
static void virtio_regs(const struct virtio_dev *vd, uint8_t regs[VIRTIO_PCI_CONFIG])
{
	const struct virtq *vq = vd->queue_sel < vd->nqueues ?
				 &vd->vq[vd->queue_sel] : NULL;

	memset(regs, 0, VIRTIO_PCI_CONFIG);
	le_put_u32(regs + VIRTIO_PCI_HOST_FEATURES, vd->host_features);
	le_put_u32(regs + VIRTIO_PCI_GUEST_FEATURES, vd->guest_features);
	le_put_u32(regs + VIRTIO_PCI_QUEUE_PFN, vq ? vq->pfn : 0);
	le_put_u16(regs + VIRTIO_PCI_QUEUE_NUM, vq ? vq->size : 0);
	le_put_u16(regs + VIRTIO_PCI_QUEUE_SEL, vd->queue_sel);
	regs[VIRTIO_PCI_STATUS] = vd->status;
	regs[VIRTIO_PCI_ISR] = vd->isr;
}

static void virtio_io_read(struct virtio_dev *vd, uint16_t off, uint8_t *data,
			   uint32_t size)
{
	uint8_t regs[VIRTIO_PCI_CONFIG];

	virtio_regs(vd, regs);
	for (uint32_t i = 0; i < size; i++) {
		uint32_t o = (uint32_t)off + i;
		if (o < VIRTIO_PCI_CONFIG)
			data[i] = regs[o];
		else if (o - VIRTIO_PCI_CONFIG < vd->config_len)
			data[i] = vd->config[o - VIRTIO_PCI_CONFIG];
		else
			data[i] = 0;
	}
	/* Reading the ISR acknowledges it: clear and drop the line. */
	if (off <= VIRTIO_PCI_ISR && off + size > VIRTIO_PCI_ISR) {
		vd->isr = 0;
		virtio_update_irq(vd);
	}
}

static void virtio_io_write(struct virtio_dev *vd, uint16_t off,
			    const uint8_t *data, uint32_t size)
{
	struct err e;
	uint32_t v = 0;

	for (uint32_t i = size; i-- > 0;)
		v = (v << 8) | data[i];
	if (off >= VIRTIO_PCI_CONFIG) {
		uint32_t co = off - VIRTIO_PCI_CONFIG;
		if (vd->ops->config_write && co < vd->config_len &&
		    size <= vd->config_len - co)
			vd->ops->config_write(vd, co, data, size);
		return;
	}
	switch (off) {
	case VIRTIO_PCI_GUEST_FEATURES:
		if (size == 4)
			vd->guest_features = v & vd->host_features;
		break;
	case VIRTIO_PCI_QUEUE_PFN:
		if (size != 4 || vd->queue_sel >= vd->nqueues)
			break;
		if (virtq_set_pfn(&vd->vq[vd->queue_sel], vd->gm, v, &e) < 0)
			virtio_set_broken(vd, "queue %u: %s", vd->queue_sel, e.msg);
		break;
	case VIRTIO_PCI_QUEUE_SEL:
		if (size == 2)
			vd->queue_sel = (uint16_t)v;
		break;
	case VIRTIO_PCI_QUEUE_NOTIFY:
		if (size != 2 || virtio_is_broken(vd))
			break;
		if (v >= vd->nqueues) {
			virtio_set_broken(vd, "notify for queue %u of %u", v,
					  vd->nqueues);
			break;
		}
		/* without bus mastering, looked at when it is back on */
		if (vd->vq[v].ready && pci_bus_master(&vd->pci))
			vd->ops->notify(vd, (uint16_t)v);
		break;
	case VIRTIO_PCI_STATUS:
		if (size != 1)
			break;
		if (v == 0) {
			virtio_reset(vd);
			break;
		}
		/* NEEDS_RESET is ours; the guest cannot clear it but by reset. */
		vd->status = (uint8_t)((v & ~VIRTIO_STATUS_NEEDS_RESET) |
				       (vd->status & VIRTIO_STATUS_NEEDS_RESET));
		if (vd->ops->status_changed)
			vd->ops->status_changed(vd);
		break;
	default:
		/* Host features, queue size and ISR are read-only. */
		break;
	}
}

void virtio_pci_io(void *opaque, uint16_t off, bool is_write, uint8_t *data,
		   uint32_t size)
{
	struct virtio_dev *vd = opaque;

	if (is_write)
		virtio_io_write(vd, off, data, size);
	else
		virtio_io_read(vd, off, data, size);
}

void virtio_save(const struct virtio_dev *vd, struct virtio_state *st)
{
	memset(st, 0, sizeof(*st));
	st->host_features = vd->host_features;
	st->guest_features = vd->guest_features;
	st->status = vd->status;
	st->isr = vd->isr;
	st->queue_sel = vd->queue_sel;
	st->nqueues = vd->nqueues;
	for (int i = 0; i < vd->nqueues; i++) {
		st->q[i].size = vd->vq[i].size;
		st->q[i].pfn = vd->vq[i].pfn;
		st->q[i].last_avail_idx = vd->vq[i].last_avail_idx;
		st->q[i].used_idx = vd->vq[i].used_idx;
	}
}

int virtio_restore(struct virtio_dev *vd, const struct virtio_state *st,
		   struct err *e)
{
	struct virtq tmp[VIRTIO_MAX_QUEUES];

	if (st->host_features != vd->host_features)
		return err_set(e, "%s: saved device offered features 0x%x, this "
			       "one offers 0x%x", vd->name, st->host_features,
			       vd->host_features);
	if (st->guest_features & ~st->host_features)
		return err_set(e, "%s: acked features 0x%x were never offered",
			       vd->name, st->guest_features);
	if (st->isr & ~(VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG))
		return err_set(e, "%s: bad ISR 0x%x", vd->name, st->isr);
	if (st->nqueues != vd->nqueues)
		return err_set(e, "%s: saved %u queues, this device has %u",
			       vd->name, st->nqueues, vd->nqueues);
	for (int i = 0; i < vd->nqueues; i++) {
		uint16_t taken = (uint16_t)(st->q[i].last_avail_idx - st->q[i].used_idx);
		if (st->q[i].size != vd->vq[i].size)
			return err_set(e, "%s: queue %d size %u, here %u", vd->name,
				       i, st->q[i].size, vd->vq[i].size);
		/* Every chain is returned before the kick that took it ends,
		 * but for the one that broke the device. Other indices would
		 * let the guest's rings run the device on without end. */
		if (taken > 1 || (taken == 1 && !(st->status & VIRTIO_STATUS_NEEDS_RESET)))
			return err_set(e, "%s: queue %d used index %u does not follow "
				       "avail index %u", vd->name, i, st->q[i].used_idx,
				       st->q[i].last_avail_idx);
		tmp[i] = vd->vq[i];
		if (virtq_set_pfn(&tmp[i], vd->gm, st->q[i].pfn, e) < 0)
			return err_prefix(e, "%s: queue %d", vd->name, i);
		tmp[i].last_avail_idx = st->q[i].last_avail_idx;
		tmp[i].used_idx = st->q[i].used_idx;
	}
	vd->guest_features = st->guest_features;
	vd->status = st->status;
	vd->isr = st->isr;
	vd->queue_sel = st->queue_sel;
	memcpy(vd->vq, tmp, sizeof(tmp[0]) * vd->nqueues);
	return 0;
}

int virtio_post_load(struct virtio_dev *vd, struct err *e)
{
	/* The destination's line starts low; a pending ISR means the source
	 * had it high and the guest has not acknowledged yet. */
	vd->irq_level = false;
	virtio_update_irq(vd);
	return 0;
}

void virtio_state_encode(struct stream *w, const struct virtio_state *st)
{
	stream_put_u32(w, st->host_features);
	stream_put_u32(w, st->guest_features);
	stream_put_u8(w, st->status);
	stream_put_u8(w, st->isr);
	stream_put_u16(w, st->queue_sel);
	stream_put_u16(w, st->nqueues);
	for (int i = 0; i < st->nqueues && i < VIRTIO_MAX_QUEUES; i++) {
		stream_put_u16(w, st->q[i].size);
		stream_put_u32(w, st->q[i].pfn);
		stream_put_u16(w, st->q[i].last_avail_idx);
		stream_put_u16(w, st->q[i].used_idx);
	}
}

int virtio_state_decode(struct stream *r, uint32_t version,
			struct virtio_state *st, struct err *e)
{
	if (version != VIRTIO_STATE_VERSION)
		return err_set(e, "virtio state version %u not supported (want %u)",
			       version, VIRTIO_STATE_VERSION);
	memset(st, 0, sizeof(*st));
	st->host_features = stream_get_u32(r);
	st->guest_features = stream_get_u32(r);
	st->status = stream_get_u8(r);
	st->isr = stream_get_u8(r);
	st->queue_sel = stream_get_u16(r);
	st->nqueues = stream_get_u16(r);
	if (stream_check(r, e) < 0)
		return err_prefix(e, "virtio state");
	if (st->nqueues > VIRTIO_MAX_QUEUES)
		return err_set(e, "virtio state: %u queues (max %d)", st->nqueues,
			       VIRTIO_MAX_QUEUES);
	for (int i = 0; i < st->nqueues; i++) {
		st->q[i].size = stream_get_u16(r);
		st->q[i].pfn = stream_get_u32(r);
		st->q[i].last_avail_idx = stream_get_u16(r);
		st->q[i].used_idx = stream_get_u16(r);
	}
	if (stream_check(r, e) < 0)
		return err_prefix(e, "virtio state");
	return 0;
}
