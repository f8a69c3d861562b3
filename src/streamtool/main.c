/*
 * ferry-stream: check or dump a ferry stream (a state file, or a recorded
 * migration) without a VM. A thin front end to migration/check.c.
 * Exit codes: 0 valid, 1 invalid (the error and its byte offset are
 * printed), 2 usage error or the file cannot be opened.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/check.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: ferry-stream check [--strict] [--quiet] FILE\n"
"       ferry-stream dump [--strict] [--limit N] FILE\n"
"FILE may be '-' for standard input.\n"
"\n"
"A ferry stream is what one VM turns into when it leaves a host: a 16-byte\n"
"header (\"FERRYMIG\", version, flags) followed by typed, length-framed\n"
"records: the VM's configuration (JSON) first, then runs of guest pages\n"
"(raw, zero, zstd or lz4, each tagged with a generation so an older copy\n"
"never overwrites a newer one), one state section per vCPU and device\n"
"(cpu.N, kvm, uart, pci, virtio-blk.N, virtio-net.N), a state-end marker\n"
"and an end record. docs/stream.md is the full specification.\n"
"\n"
"Where streams come from:\n"
"  * a running worker saves one on request through its control socket:\n"
"      printf '{\"cmd\":\"save\",\"path\":\"/tmp/vm.state\"}\\n' | socat - UNIX-CONNECT:/tmp/vm.sock\n"
"    and 'ferry-vm --restore /tmp/vm.state' starts a VM from it;\n"
"  * a live migration sends the same format over its connections; a\n"
"    recorded copy of that traffic can be checked the same way.\n"
"\n"
"check  validates everything a receiver would, with no VM: framing and\n"
"       limits, the configuration, every page run's address against the\n"
"       RAM the configuration implies (compressed runs are decompressed),\n"
"       every section through the real decoder, and the record order.\n"
"       Prints a summary: records by type, pages by encoding and by\n"
"       generation, sections with versions and sizes.\n"
"dump   prints one line per record: byte offset, type, length, details\n"
"       (gpa/npages/gen/enc for memory, name/version/size for sections,\n"
"       the JSON for the configuration), then the same summary.\n"
"\n"
"Options:\n"
"  --strict     unknown section names and record types are errors\n"
"               (by default they are reported and skipped)\n"
"  --limit N    dump: print only the first N records (checking continues)\n"
"  --quiet      check: print only the verdict line or the error\n"
"  -h, --help   this text\n"
"\n"
"Examples:\n"
"  ferry-stream check /tmp/vm.state\n"
"  ferry-stream dump --limit 20 /tmp/vm.state\n"
"  cat /tmp/vm.state | ferry-stream check -\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	struct streamcheck_opts o = { 0 };
	struct streamcheck_report *rep;
	const char *cmd, *path = NULL;
	bool dump, quiet = false;
	struct stream r;
	struct err e = { 0 };
	int fd, rc;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "check") && strcmp(cmd, "dump")) {
		fprintf(stderr, "ferry-stream: unknown command '%s' (use check or dump; see --help)\n", cmd);
		return 2;
	}
	dump = !strcmp(cmd, "dump");
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--strict")) {
			o.strict = true;
		} else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
			quiet = true;
		} else if (!strcmp(a, "--limit")) {
			if (!dump || parse_u64(i + 1 < argc ? argv[i + 1] : NULL, &o.limit) < 0) {
				fprintf(stderr, "ferry-stream: --limit needs a number and only applies to dump\n");
				return 2;
			}
			i++;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "ferry-stream: unknown option '%s' (see --help)\n", a);
			return 2;
		} else if (path) {
			fprintf(stderr, "ferry-stream: one FILE only (got '%s' and '%s')\n", path, a);
			return 2;
		} else {
			path = a;
		}
	}
	if (!path) {
		fprintf(stderr, "ferry-stream: no FILE given (use '-' for standard input)\n");
		return 2;
	}
	if (!strcmp(path, "-")) {
		fd = 0;
	} else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "ferry-stream: %s: %s\n", path, strerror(errno));
		return 2;
	}
	/* The report holds a whole vm_config: keep it off the stack. */
	rep = calloc(1, sizeof(*rep));
	if (!rep) {
		fprintf(stderr, "ferry-stream: out of memory\n");
		return 2;
	}
	if (dump)
		o.dump = stdout;
	stream_init_fd(&r, fd, false);
	rc = streamcheck_run(&r, &o, rep, &e);
	stream_destroy(&r);
	if (fd != 0)
		close(fd);
	if (!quiet)
		streamcheck_print(stdout, rep);
	if (rc < 0) {
		fflush(stdout);
		fprintf(stderr, "ferry-stream: %s: INVALID: %s\n", path, e.msg);
	} else if (quiet) {
		printf("%s: valid\n", path);
	}
	free(rep);
	return rc < 0 ? 1 : 0;
}
