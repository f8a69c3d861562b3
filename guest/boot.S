/*
 * Test-guest entry code: the multiboot header, the 32-bit entry that builds
 * identity page tables for the first 4 GiB and enters long mode, the
 * real-mode AP trampoline (copied to FG_TRAMPOLINE_GPA), interrupt stubs and
 * the drop to CPL3. Everything here runs at CPL0, i.e. in KVM's emulator on
 * our hosts, so it stays short and uses only plain instructions.
 */
#include "guest.h"

#define MB_MAGIC	0x1BADB002
#define MB_FLAGS	0x00010003	/* page-align mods, mem info, a.out kludge */

	.section .multiboot, "a"
	.align 4
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)
	/* a.out kludge: QEMU refuses ELF64 multiboot images without these */
	.long mb_header
	.long __load_start
	.long __load_end
	.long __bss_end
	.long _start32

/* ------------------------------------------------------------------ */
	.section .text.boot, "ax"
	.code32
	.globl _start32
_start32:
	cli
	cld
	movl %eax, boot_magic
	movl %ebx, boot_mbi
	movl $(kstacks + KSTACK_SIZE), %esp
	lgdt gdt_ptr
	ljmp $SEL_KCODE32, $1f
1:	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs

	/* PML4[0] -> PDPT, PDPT[0..3] -> PD0..PD3, PDs: 2048 x 2 MiB, user-accessible */
	movl $(pdpt + 0x7), pml4
	movl $pd_pool, %eax
	orl $0x7, %eax
	xorl %ecx, %ecx
2:	movl %eax, pdpt(,%ecx,8)
	addl $0x1000, %eax
	incl %ecx
	cmpl $4, %ecx
	jb 2b
	xorl %ecx, %ecx
	movl $0x87, %eax		/* P | RW | US | PS */
3:	movl %eax, pd_pool(,%ecx,8)
	addl $0x200000, %eax
	incl %ecx
	cmpl $2048, %ecx
	jb 3b

	call enable_long32
	ljmp $SEL_KCODE, $long64_bsp

/* PAE + CR3 + EFER.LME + CR0.PG; shared by the BSP and the APs. */
enable_long32:
	movl %cr4, %eax
	orl $0x20, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xC0000080, %ecx
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0
	ret

/* APs arrive here from the trampoline in 32-bit protected mode. */
	.globl ap_start32
ap_start32:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl ap_boot_stack, %esp
	call enable_long32
	ljmp $SEL_KCODE, $long64_ap

	.code64
long64_bsp:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs
	movq $(kstacks + KSTACK_SIZE), %rsp
	call kmain
4:	cli
	hlt
	jmp 4b

long64_ap:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs
	movl ap_boot_stack, %esp	/* zero-extends: stacks are below 4 GiB */
	movl ap_boot_cpu, %edi
	call ap_main
5:	cli
	hlt
	jmp 5b

/* enter_user(entry, user_rsp, arg): iretq to CPL3 with interrupts on. */
	.globl enter_user
enter_user:
	movw $SEL_UDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	pushq $SEL_UDATA
	pushq %rsi
	pushq $0x202
	pushq $SEL_UCODE
	pushq %rdi
	movq %rdx, %rdi
	iretq

/* ------------------------------------------------------------------ */
/* Interrupt stubs: push (error code, vector) so every frame looks alike. */
.macro ISR_NOERR n
	.globl isr\n
isr\n:
	pushq $0
	pushq $\n
	jmp isr_common
.endm
.macro ISR_ERR n
	.globl isr\n
isr\n:
	pushq $\n
	jmp isr_common
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR 8
ISR_NOERR 9
ISR_ERR 10
ISR_ERR 11
ISR_ERR 12
ISR_ERR 13
ISR_ERR 14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR 17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR 21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR 29
ISR_ERR 30
ISR_NOERR 31
ISR_NOERR 64
ISR_NOERR 255

isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

	.section .rodata
	.align 8
	.globl isr_table
isr_table:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad isr\n
	.endr
	.globl isr_timer, isr_spurious
isr_timer:
	.quad isr64
isr_spurious:
	.quad isr255

/* ------------------------------------------------------------------ */
/* Real-mode AP trampoline, copied to FG_TRAMPOLINE_GPA (SIPI vector 8).
 * Offsets are computed relative to tramp_start so the copy runs anywhere
 * in the first 64 KiB with DS = 0. */
#define TR(x) (FG_TRAMPOLINE_GPA + ((x) - tramp_start))
	.section .text
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl TR(tramp_gdtr)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_start32
	.align 8
tramp_gdtr:
	.word GDT_ENTRIES * 8 - 1
	.long gdt
tramp_end:
	.code64

/* ------------------------------------------------------------------ */
	.section .data
	.align 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00AF9A000000FFFF	/* 0x08 kernel code, 64-bit */
	.quad 0x00CF92000000FFFF	/* 0x10 kernel data */
	.quad 0x00CF9A000000FFFF	/* 0x18 kernel code, 32-bit (boot, APs) */
	.quad 0x00CFF2000000FFFF	/* 0x20 user data, DPL 3 */
	.quad 0x00AFFA000000FFFF	/* 0x28 user code, 64-bit, DPL 3 */
	.fill FG_MAX_CPUS * 2, 8, 0	/* 0x30.. one 16-byte TSS descriptor per CPU */
gdt_ptr:
	.word GDT_ENTRIES * 8 - 1
	.quad gdt

	.globl boot_magic, boot_mbi, ap_boot_stack, ap_boot_cpu
boot_magic:	.long 0
boot_mbi:	.long 0
ap_boot_stack:	.long 0
ap_boot_cpu:	.long 0

	.section .bss
	.align 4096
	.globl pml4, pdpt, pd_pool, kstacks
pml4:	.space 4096
pdpt:	.space 4096
pd_pool: .space 4096 * PD_POOL_PAGES
kstacks: .space KSTACK_SIZE * FG_MAX_CPUS
