/*
 * Multiboot (v1) kernel loading, the way QEMU's -kernel does it: find the
 * header, load the ELF (or a.out-kludge) image, write the multiboot info
 * with a memory map equal to the machine's e820 map, and describe a 32-bit
 * flat protected-mode entry with paging off, EAX = 0x2BADB002, EBX = info.
 */
#ifndef FERRY_X86_MULTIBOOT_H
#define FERRY_X86_MULTIBOOT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/guestmem.h"
#include "vmm/x86/boot.h"

#define MULTIBOOT_HEADER_MAGIC     0x1BADB002u
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
#define MULTIBOOT_SEARCH           8192

/* Multiboot info fields we fill (offsets into the info structure). */
#define MBI_FLAGS        0
#define MBI_MEM_LOWER    4
#define MBI_MEM_UPPER    8
#define MBI_CMDLINE      16
#define MBI_MMAP_LENGTH  44
#define MBI_MMAP_ADDR    48
#define MBI_LOADER_NAME  64

#define MBI_FLAG_MEM     (1u << 0)
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MMAP    (1u << 6)
#define MBI_FLAG_LOADER  (1u << 9)

/* Load the image at path. cmdline may be NULL (empty). */
int multiboot_load(struct guest_mem *gm, const char *path, const char *cmdline,
		   struct boot_entry *out, struct err *e);
/* Same from a buffer (untrusted). */
int multiboot_load_image(struct guest_mem *gm, const uint8_t *img, size_t len,
			 const char *cmdline, struct boot_entry *out, struct err *e);

#endif
