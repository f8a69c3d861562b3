/*
 * Booting an uncompressed Linux kernel (the ELF "vmlinux", as Firecracker
 * does) instead of a bzImage: the PT_LOAD segments go to their physical
 * addresses and the CPU enters startup_64 directly, so the kernel's own
 * decompressor never runs. On a host whose guest kernel mode is emulated
 * (PVM) that decompressor alone takes minutes. There is no setup header in
 * an ELF, so the loader writes one into the zero page itself; the rest of
 * the zero page (e820, command line, initrd) is bzimage.c's shared code.
 */
#ifndef FERRY_X86_VMLINUX_H
#define FERRY_X86_VMLINUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"
#include "vmm/x86/boot.h"

/* Values of the setup header the loader writes for a vmlinux. */
#define VMLINUX_BOOT_VERSION     0x020f     /* protocol 2.15 */
#define VMLINUX_KERNEL_ALIGN     0x200000u  /* x86-64's smallest PHYSICAL_ALIGN */
#define VMLINUX_INITRD_ADDR_MAX  0x7fffffffu /* what bzImages state since 2.03 */
#define VMLINUX_CMDLINE_SIZE     2047u      /* x86 COMMAND_LINE_SIZE minus the NUL */

/* True if img (untrusted, len bytes) is an ELF64 x86-64 executable with a
 * PT_NOTE whose owner is "Linux": what the kernel's build puts in every
 * vmlinux, and no multiboot kernel has. */
bool vmlinux_is_linux(const uint8_t *img, size_t len);

/* The same test on a file, reading only its headers and notes. False on
 * any error (the caller then tries the other formats). */
bool vmlinux_probe_file(const char *path);

/* Load a vmlinux from buffers; initrd may be NULL with initrd_len 0. */
int vmlinux_load_image(struct guest_mem *gm, const uint8_t *kernel, size_t kernel_len,
		       const uint8_t *initrd, size_t initrd_len, const char *cmdline,
		       struct boot_entry *out, struct err *e);

/* Load kernel (and initrd, may be NULL) files. */
int vmlinux_load(struct guest_mem *gm, const char *kernel, const char *initrd,
		 const char *cmdline, struct boot_entry *out, struct err *e);

#endif
