/*
 * ferry-vm: one process per VM. Parses the command line into a vm_config
 * and worker options and hands over to the worker loop. Exit codes:
 * 0 stopped cleanly, 1 failure, 2 usage or configuration error,
 * 3 the guest reset or shut down, 4 the VM migrated away, 5 an incoming
 * migration failed, 6 the source called an incoming migration off
 * (cancelled or rolled back there); nothing was kept on 5 or 6.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/log.h"
#include "vmm/config.h"
#include "common/caplog.h"
#include "vmm/worker.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: ferry-vm --kernel PATH [--name NAME] [--memory SIZE] [options]\n"
"       ferry-vm --restore STATEFILE [--control PATH] [options]\n"
"\n"
"Runs one virtual machine on KVM. Usually started by ferryd; can run alone.\n"
"\n"
"Machine:\n"
"  --name NAME           VM name (letters, digits, . _ -)\n"
"  --kernel PATH         Linux bzImage, Linux vmlinux ELF, or multiboot ELF to boot\n"
"  --initrd PATH         initramfs (Linux only)\n"
"  --cmdline STR         kernel command line\n"
"  --memory SIZE         guest RAM, e.g. 512M or 2G (default 256M)\n"
"  --vcpus N             virtual CPUs, 1-8 (default 1)\n"
"  --cpu-mask LIST       hide CPUID features, e.g. -avx2,-avx512f\n"
"  --disk PATH           raw disk image for virtio-blk (locked while in use)\n"
"  --disk-readonly       attach the disk read-only\n"
"  --net                 add a virtio-net NIC (implied by --tap/--mac)\n"
"  --tap IFNAME          host tap device backing the NIC (one that exists, set up and bridged)\n"
"  --bridge BR           or: put the NIC on host bridge BR through a tap of its own (fyN,\n"
"                        made at start, gone at exit); with --incoming or --restore the\n"
"                        bridge (or tap) of this host, the same name by default\n"
"  --mac MAC             NIC address (aa:bb:cc:dd:ee:ff)\n"
"  --dirty-tracker KIND  how live migration finds dirty pages: bitmap (default:\n"
"                        KVM's dirty log, re-armed chunk by chunk; the faster on\n"
"                        our measurements) or ring (KVM's per-vCPU dirty rings);\n"
"                        fixed at start; a migration's destination uses the same one\n"
"\n"
"I/O and control:\n"
"  --serial PATH         append the serial console to this file\n"
"  --serial-max SIZE     past SIZE the file becomes PATH.1 (replacing the previous one)\n"
"                        and a new PATH starts (default 16M; 0: never)\n"
"  --console-socket PATH live console: connect to read/write the serial port\n"
"  --control PATH        control socket (JSON lines: status, pause, resume, stop, save, verify,\n"
"                        extents, migrate...; see docs/api.md)\n"
"  --restore PATH        start from a state file written by the 'save' command\n"
"  --paused              build the VM but do not run its vCPUs until 'resume'\n"
"  --incoming ADDR:PORT  receive a live migration: listen there; the VM's configuration\n"
"                        comes from the source (--name, --memory, --vcpus, if given, must match;\n"
"                        --tap or --bridge apply here)\n"
"  --host-cpu-mask LIST  incoming and --restore: refuse guests that see these CPU features\n"
"                        (a migration baseline for this host, e.g. -avx512f,-avx2); every\n"
"                        vCPU's CPUID is checked, against the host's KVM as well\n"
"  --migration-key-file F incoming: every migration connection must prove this key (64 hex\n"
"                        digits, mode 0600; ferryd writes one per move); the file is\n"
"                        removed once read. The source's 'migrate' command takes it as \"key\"\n"
"  --exit-file PATH      write the exit code there when the worker ends (ferryd reads it\n"
"                        for workers it re-adopted, which are not its children)\n"
"  --disk-copy PATH      incoming: the move copies the disk to PATH here (hosts that share\n"
"                        no storage; the source's 'migrate' takes \"disk_copy_path\"): a\n"
"                        source that does not is refused. Without it a copy is taken too\n"
"  --resumed-file PATH   incoming: create this file just before the VM first runs here\n"
"                        (synced before the source is told): from then on the VM is this\n"
"                        host's, even if this process dies (ferryd keeps it, crashed)\n"
"  --prealloc            incoming: fault in --memory SIZE of RAM before listening (fails at once\n"
"                        if the host cannot back it; the move never waits on a first touch;\n"
"                        the VM must have exactly that much memory)\n"
"  --prealloc-extents F  with --prealloc: fault in only these page ranges, the memory the\n"
"                        source uses (lines 'FIRST NPAGES'; the source worker's 'extents'\n"
"                        command lists them); the rest is faulted in as it arrives\n"
"  --log PATH            write this process's log (its stderr) to PATH, kept like the\n"
"                        console's: past --log-max SIZE (default 16M; 0: never) it\n"
"                        becomes PATH.1 and a new PATH starts (ferryd: NAME.log)\n"
"  -v, --verbose         debug logging\n"
"\n"
"Example:\n"
"  ferry-vm --name t1 --kernel build/guest/testguest.elf --cmdline 'ws=64M rate=64' \\\n"
"           --memory 256M --vcpus 2 --serial /tmp/t1.log --control /tmp/t1.sock\n");
}

/* The exit code for a supervisor that cannot wait for us (not our
 * parent): written whole under another name, then renamed into place. */
static void write_exit_file(const char *path, int rc)
{
	char tmp[4096], text[16];
	int fd, n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return;
	n = snprintf(text, sizeof(text), "%d\n", rc);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "ferry-vm: exit file %s: %s\n", tmp, strerror(errno));
		return;
	}
	if (write(fd, text, (size_t)n) != n || close(fd) < 0 || rename(tmp, path) < 0) {
		fprintf(stderr, "ferry-vm: exit file %s: %s\n", path, strerror(errno));
		unlink(tmp);
	}
}

/* A log size: 0 (never rotate) or a size with a unit. */
static int parse_log_max(const char *arg, uint64_t *out, const char *flag)
{
	struct err e = { .code = 0 };

	if (strcmp(arg, "0") == 0) {
		*out = 0;
		return 0;
	}
	if (config_parse_size(arg, out, &e) < 0) {
		fprintf(stderr, "ferry-vm: %s: %s\n", flag, e.msg);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_NAME = 256, O_KERNEL, O_INITRD, O_CMDLINE, O_MEMORY, O_VCPUS, O_CPUMASK, O_DISK,
	       O_DISKRO, O_NET, O_TAP, O_BRIDGE, O_MAC, O_SERIAL, O_SERIALMAX, O_CONSOLE, O_CONTROL, O_RESTORE, O_PAUSED, O_INCOMING, O_HOSTMASK,
	       O_TRACKER, O_PREALLOC, O_PREALLOC_EXT, O_EXITFILE, O_MIGKEY, O_RESUMED, O_LOG, O_LOGMAX, O_DISKCOPY };
	static const struct option opts[] = {
		{ "name", required_argument, NULL, O_NAME },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "cmdline", required_argument, NULL, O_CMDLINE },
		{ "memory", required_argument, NULL, O_MEMORY },
		{ "vcpus", required_argument, NULL, O_VCPUS },
		{ "cpu-mask", required_argument, NULL, O_CPUMASK },
		{ "disk", required_argument, NULL, O_DISK },
		{ "disk-readonly", no_argument, NULL, O_DISKRO },
		{ "net", no_argument, NULL, O_NET },
		{ "tap", required_argument, NULL, O_TAP },
		{ "bridge", required_argument, NULL, O_BRIDGE },
		{ "mac", required_argument, NULL, O_MAC },
		{ "serial", required_argument, NULL, O_SERIAL },
		{ "serial-max", required_argument, NULL, O_SERIALMAX },
		{ "console-socket", required_argument, NULL, O_CONSOLE },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "restore", required_argument, NULL, O_RESTORE },
		{ "paused", no_argument, NULL, O_PAUSED },
		{ "incoming", required_argument, NULL, O_INCOMING },
		{ "host-cpu-mask", required_argument, NULL, O_HOSTMASK },
		{ "prealloc", no_argument, NULL, O_PREALLOC },
		{ "prealloc-extents", required_argument, NULL, O_PREALLOC_EXT },
		{ "exit-file", required_argument, NULL, O_EXITFILE },
		{ "migration-key-file", required_argument, NULL, O_MIGKEY },
		{ "resumed-file", required_argument, NULL, O_RESUMED },
		{ "disk-copy", required_argument, NULL, O_DISKCOPY },
		{ "dirty-tracker", required_argument, NULL, O_TRACKER },
		{ "log", required_argument, NULL, O_LOG },
		{ "log-max", required_argument, NULL, O_LOGMAX },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct vm_config cfg;
	struct worker_opts o;
	struct err e = { .code = 0 };
	enum log_level lvl = LOG_INFO;
	int c, rc;
	const char *exit_file = NULL, *migkey = NULL;

	memset(&cfg, 0, sizeof(cfg));
	memset(&o, 0, sizeof(o));
	o.serial_max = CAPLOG_MAX_DEFAULT;
	o.log_max = CAPLOG_MAX_DEFAULT;
	cfg.mem_size = 256ULL << 20;
	cfg.vcpus = 1;
	cfg.dirty_tracker = CONFIG_TRACKER_DEFAULT;
#define COPY(dst, src) do { if (strlen(src) >= sizeof(dst)) { fprintf(stderr, "ferry-vm: argument too long: %s\n", src); return 2; } strcpy(dst, src); } while (0)
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case O_NAME: COPY(cfg.name, optarg); break;
		case O_KERNEL: COPY(cfg.kernel, optarg); break;
		case O_INITRD: COPY(cfg.initrd, optarg); break;
		case O_CMDLINE: COPY(cfg.cmdline, optarg); break;
		case O_MEMORY:
			o.memory_given = true;
			if (config_parse_size(optarg, &cfg.mem_size, &e) < 0) {
				fprintf(stderr, "ferry-vm: --memory: %s\n", e.msg);
				return 2;
			}
			break;
		case O_VCPUS: cfg.vcpus = atoi(optarg); o.vcpus_given = true; break;
		case O_CPUMASK: COPY(cfg.cpu_mask, optarg); break;
		case O_DISK: COPY(cfg.disk, optarg); break;
		case O_DISKRO: cfg.disk_readonly = true; break;
		case O_NET: cfg.net = true; break;
		case O_TAP: COPY(cfg.tap, optarg); cfg.net = true; break;
		case O_BRIDGE: COPY(cfg.bridge, optarg); cfg.net = true; break;
		case O_MAC: COPY(cfg.mac, optarg); cfg.net = true; break;
		case O_SERIAL: o.serial_path = optarg; break;
		case O_SERIALMAX:
		case O_LOGMAX:
			if (parse_log_max(optarg, c == O_LOGMAX ? &o.log_max : &o.serial_max,
					  c == O_LOGMAX ? "--log-max" : "--serial-max") < 0)
				return 2;
			break;
		case O_LOG: o.log_path = optarg; break;
		case O_CONSOLE: o.console_path = optarg; break;
		case O_CONTROL: o.control_path = optarg; break;
		case O_RESTORE: o.restore_path = optarg; break;
		case O_PAUSED: o.start_paused = true; break;
		case O_INCOMING: o.incoming = optarg; break;
		case O_HOSTMASK: o.host_cpu_mask = optarg; break;
		case O_DISKCOPY: o.disk_copy = optarg; break;
		case O_PREALLOC: o.prealloc = true; break;
		case O_PREALLOC_EXT: o.prealloc_extents = optarg; break;
		case O_EXITFILE: exit_file = optarg; break;
		case O_MIGKEY: migkey = optarg; break;
		case O_RESUMED: o.resumed_file = optarg; break;
		case O_TRACKER:
			if (config_parse_tracker(optarg, &cfg.dirty_tracker, &e) < 0) {
				fprintf(stderr, "ferry-vm: --dirty-tracker: %s\n", e.msg);
				return 2;
			}
			break;
		case 'v': lvl = LOG_DEBUG; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
#undef COPY
	if (optind < argc) {
		fprintf(stderr, "ferry-vm: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	log_init("ferry-vm", lvl);
	if (o.log_path && log_to_file(o.log_path, o.log_max, &e) < 0) {
		fprintf(stderr, "ferry-vm: --log: %s\n", e.msg);
		return 1;
	}
	if (!o.restore_path && !o.incoming) {
		if (!cfg.name[0])
			snprintf(cfg.name, sizeof(cfg.name), "vm");
		if (!cfg.kernel[0]) {
			fprintf(stderr, "ferry-vm: no kernel given: use --kernel PATH (or --restore STATEFILE)\n");
			return 2;
		}
		if (config_validate(&cfg, &e) < 0) {
			fprintf(stderr, "ferry-vm: %s\n", e.msg);
			return 2;
		}
	}
	if (cfg.tap[0] && cfg.bridge[0]) {
		fprintf(stderr, "ferry-vm: --tap and --bridge exclude each other: the NIC uses one or the other\n");
		return 2;
	}
	if (o.prealloc && (!o.incoming || !o.memory_given)) {
		fprintf(stderr, "ferry-vm: --prealloc needs --incoming and the VM's --memory SIZE\n");
		return 2;
	}
	if (o.prealloc_extents && !o.prealloc) {
		fprintf(stderr, "ferry-vm: --prealloc-extents goes with --prealloc\n");
		return 2;
	}
	if (o.resumed_file && !o.incoming) {
		fprintf(stderr, "ferry-vm: --resumed-file goes with --incoming\n");
		return 2;
	}
	if (migkey && !o.incoming) {
		fprintf(stderr, "ferry-vm: --migration-key-file goes with --incoming\n");
		return 2;
	}
	if (migkey) {
		/* Read once and removed: the key lives in this process only. */
		if (auth_key_load(&o.migration_key, migkey, &e) < 0) {
			fprintf(stderr, "ferry-vm: --migration-key-file: %s\n", e.msg);
			return 2;
		}
		if (unlink(migkey) < 0)
			fprintf(stderr, "ferry-vm: warning: cannot remove %s: %s\n", migkey, strerror(errno));
	}
	if (o.incoming && o.restore_path) {
		fprintf(stderr, "ferry-vm: --incoming and --restore exclude each other\n");
		return 2;
	}
	rc = worker_main(&cfg, &o, &e);
	if (rc == 1 || rc == 5 || (rc != 0 && rc != 3 && rc != 4 && e.msg[0]))
		fprintf(stderr, "ferry-vm: %s\n", e.msg[0] ? e.msg : "failed");
	if (exit_file)
		write_exit_file(exit_file, rc);
	return rc;
}
