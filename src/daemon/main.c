/*
 * ferryd: the per-host service. Parses its options, prepares the state
 * directory (vms/, run/, logs/), takes the directory's lock, re-adopts
 * workers left running by an earlier ferryd, and runs the event loop.
 * SIGTERM/SIGINT end ferryd only; VM workers keep running.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/log.h"
#include "common/sock.h"
#include "daemon/ferryd.h"
#include "daemon/migrate.h"
#include "daemon/peer.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferryd [--listen ADDR:PORT|none] [--state-dir DIR] [--socket PATH]\n"
		"              [--vmm PATH] [--key-file FILE [--previous-key-file FILE] | --no-auth]\n"
		"              [--verbose]\n"
		"\n"
		"The ferry host service: keeps this host's VM definitions, starts and\n"
		"supervises ferry-vm workers, and serves the control API (JSON lines).\n"
		"\n"
		"  --listen ADDR:PORT  TCP address for remote ferry clients\n"
		"                      (default 127.0.0.1:7450; 'none' disables TCP)\n"
		"  --state-dir DIR     definitions, runtime files and logs (default /var/lib/ferry)\n"
		"  --socket PATH       local UNIX socket (default DIR/ferryd.sock)\n"
		"  --vmm PATH          the ferry-vm binary (default: $FERRY_VM if set, else the\n"
		"                      one next to ferryd)\n"
		"  --key-file FILE     the cluster key (default DIR/cluster.key, created with\n"
		"                      mode 0600 at first start). Every host that moves VMs\n"
		"                      with this one needs a copy of the same file; remote\n"
		"                      clients (ferry -c) prove they hold it, and each\n"
		"                      move's connections use a key derived from it\n"
		"  --previous-key-file FILE\n"
		"                      while the cluster changes its key: the old key, still\n"
		"                      accepted from clients and hosts that hold only it,\n"
		"                      and proved to hosts that hold only it (see below)\n"
		"  --no-auth           accept TCP clients and migrations without a key\n"
		"                      (a trusted, isolated network only)\n"
		"  --verbose           debug logging\n"
		"\n"
		"Example (then copy /var/lib/ferry/cluster.key to the other hosts):\n"
		"  ferryd --state-dir /var/lib/ferry --listen 0.0.0.0:7450\n"
		"\n"
		"Changing the cluster key without stopping moves: make a new key (ferry host\n"
		"new-key new.key) and copy it to every host; restart each ferryd with\n"
		"--key-file new.key --previous-key-file OLD (VMs keep running across a ferryd\n"
		"restart); once every host runs so, restart them with the new key alone.\n");
}

static int copy_path(char *dst, size_t cap, const char *a, const char *b)
{
	int n = b ? snprintf(dst, cap, "%s/%s", a, b) : snprintf(dst, cap, "%s", a);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "ferryd: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void default_vmm(struct ferryd *d)
{
	char self[PATH_MAX];
	const char *env = getenv("FERRY_VM");
	ssize_t n;

	if (env && *env) {
		snprintf(d->vmm_path, sizeof(d->vmm_path), "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		snprintf(d->vmm_path, sizeof(d->vmm_path), "ferry-vm");
		return;
	}
	self[n] = '\0';
	if (copy_path(d->vmm_path, sizeof(d->vmm_path), dirname(self), "ferry-vm") < 0)
		snprintf(d->vmm_path, sizeof(d->vmm_path), "ferry-vm");
}

/* The cluster key: the named file, or DIR/cluster.key made at first start
 * (a fresh host can then be joined by copying one file). */
static int load_key(struct ferryd *d, const char *keyfile, const char *prevfile)
{
	struct err e = { 0 };
	bool created = false;
	if (keyfile)
		snprintf(d->key_path, sizeof(d->key_path), "%s", keyfile);
	else if (copy_path(d->key_path, sizeof(d->key_path), d->state_dir, "cluster.key") < 0) {
		fprintf(stderr, "ferryd: state directory path too long\n");
		return -1;
	}
	if (!keyfile && auth_key_create(d->key_path, &created, &e) < 0) {
		fprintf(stderr, "ferryd: %s\n", e.msg);
		return -1;
	}
	if (auth_key_load(&d->key, d->key_path, &e) < 0) {
		fprintf(stderr, "ferryd: %s%s\n", e.msg,
			e.code == ENOENT ? " (make one with: ferry host new-key FILE)" : "");
		return -1;
	}
	if (created)
		log_info("created the cluster key %s: copy it to every host that moves VMs with "
			 "this one (and give remote ferry clients --key-file)", d->key_path);
	if (prevfile) {
		char a[AUTH_FINGERPRINT_HEX], b[AUTH_FINGERPRINT_HEX];
		snprintf(d->prev_key_path, sizeof(d->prev_key_path), "%s", prevfile);
		if (auth_key_load(&d->prev_key, prevfile, &e) < 0) {
			fprintf(stderr, "ferryd: previous key: %s\n", e.msg);
			return -1;
		}
		auth_fingerprint(&d->key, a);
		auth_fingerprint(&d->prev_key, b);
		if (strcmp(a, b) == 0) {
			fprintf(stderr, "ferryd: --previous-key-file %s holds the same key as %s\n",
				prevfile, d->key_path);
			return -1;
		}
		log_info("also accepting the previous cluster key %s (fingerprint %s) until ferryd "
			 "is restarted without it", prevfile, b);
	}
	return 0;
}

/* The default soft limit of 1024 descriptors is reached by a busy host's
 * clients, consoles, workers' pidfds and calls to other hosts; the hard
 * limit is what the administrator allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur >= FERRYD_NOFILE_WANT || rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max < FERRYD_NOFILE_WANT ? rl.rlim_max : FERRYD_NOFILE_WANT;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_warn("raising the open file limit to %llu: %s",
			 (unsigned long long)rl.rlim_cur, strerror(errno));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "vmm", required_argument, NULL, 'm' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "previous-key-file", required_argument, NULL, 'P' },
		{ "no-auth", no_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct ferryd d;
	const char *listen_addr = "127.0.0.1:7450", *state = "/var/lib/ferry";
	const char *sockpath = NULL, *vmm = NULL, *keyfile = NULL, *prevfile = NULL;
	bool no_auth = false;
	enum log_level level = LOG_INFO;
	char lockpath[PATH_MAX];
	struct err e = { 0 };
	sigset_t set;
	int opt, defined = 0, adopted = 0, departed = 0, running = 0, ending = 0;

	while ((opt = getopt_long(argc, argv, "l:d:s:m:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen_addr = optarg; break;
		case 'd': state = optarg; break;
		case 's': sockpath = optarg; break;
		case 'm': vmm = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'P': prevfile = optarg; break;
		case 'N': no_auth = true; break;
		case 'v': level = LOG_DEBUG; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if ((keyfile || prevfile) && no_auth) {
		fprintf(stderr, "ferryd: --key-file or --previous-key-file and --no-auth contradict each other\n");
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "ferryd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	log_init("ferryd", level);
	raise_fd_limit();

	/* Paths handed to workers must not depend on ferryd's cwd. */
	if (!realpath(state, d.state_dir)) {
		if (make_dir(state) < 0)
			return 1;
		if (!realpath(state, d.state_dir)) {
			fprintf(stderr, "ferryd: %s: %s\n", state, strerror(errno));
			return 1;
		}
	}
	if (copy_path(d.vms_dir, sizeof(d.vms_dir), d.state_dir, "vms") < 0 ||
	    copy_path(d.run_dir, sizeof(d.run_dir), d.state_dir, "run") < 0 ||
	    copy_path(d.logs_dir, sizeof(d.logs_dir), d.state_dir, "logs") < 0 ||
	    copy_path(lockpath, sizeof(lockpath), d.state_dir, "ferryd.lock") < 0 ||
	    copy_path(d.settings_path, sizeof(d.settings_path), d.state_dir, "settings.json") < 0 ||
	    (sockpath ? copy_path(d.socket_path, sizeof(d.socket_path), sockpath, NULL)
		      : copy_path(d.socket_path, sizeof(d.socket_path), d.state_dir,
				  "ferryd.sock")) < 0) {
		fprintf(stderr, "ferryd: state directory path too long\n");
		return 2;
	}
	if (make_dir(d.vms_dir) < 0 || make_dir(d.run_dir) < 0 ||
	    make_dir(d.logs_dir) < 0)
		return 1;
	if (vmm)
		snprintf(d.vmm_path, sizeof(d.vmm_path), "%s", vmm);
	else
		default_vmm(&d);

	/* One ferryd per state directory: two would fight over the workers. */
	d.lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (d.lock_fd < 0) {
		fprintf(stderr, "ferryd: cannot open %s: %s\n", lockpath, strerror(errno));
		return 1;
	}
	if (flock(d.lock_fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "ferryd: another ferryd is already using %s (%s)\n",
			d.state_dir, strerror(errno));
		return 1;
	}

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	/* their default action would end ferryd unlogged (a closed terminal,
	 * a stray kill): read and logged instead; workers get a clear mask */
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
		perror("ferryd: sigprocmask");
		return 1;
	}
	d.sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d.sig_fd < 0) {
		perror("ferryd: signalfd");
		return 1;
	}
	/* Writes to vanished clients must fail with EPIPE, not kill ferryd. */
	signal(SIGPIPE, SIG_IGN);

	d.unix_fd = sock_unix_listen(d.socket_path, &e);
	if (d.unix_fd < 0) {
		fprintf(stderr, "ferryd: %s\n", e.msg);
		return 1;
	}
	d.tcp_fd = -1;
	if (strcmp(listen_addr, "none") != 0) {
		snprintf(d.listen_addr, sizeof(d.listen_addr), "%s", listen_addr);
		d.tcp_fd = sock_tcp_listen(listen_addr, &e);
		if (d.tcp_fd < 0) {
			fprintf(stderr, "ferryd: %s\n", e.msg);
			/* the usual cause on a host with two ferryd (or another
			 * service on 7450): say what to do */
			if (e.code == EADDRINUSE)
				fprintf(stderr, "ferryd: another program (another ferryd?) listens on %s: "
					"stop it, or give this ferryd another --listen ADDR:PORT "
					"(or --listen none: local clients only)\n", listen_addr);
			unlink(d.socket_path);
			return 1;
		}
	}
	/* After the lock and the listeners: a ferryd that cannot start must
	 * not leave a newly made cluster key behind, which a later start
	 * would take for the cluster's. */
	if (!no_auth && load_key(&d, keyfile, prevfile) < 0) {
		unlink(d.socket_path);
		return 1;
	}

	if (settings_load(d.settings_path, &d.settings, &e) < 0) {
		fprintf(stderr, "ferryd: %s\n", e.msg);
		unlink(d.socket_path);
		return 1;
	}
	if (peer_init(&d, &e) < 0) {
		fprintf(stderr, "ferryd: %s\n", e.msg);
		unlink(d.socket_path);
		return 1;
	}
	if (registry_load(&d, &e) < 0) {
		fprintf(stderr, "ferryd: %s\n", e.msg);
		unlink(d.socket_path);
		return 1;
	}
	for (struct vm *vm = d.vms; vm; vm = vm->next)
		worker_adopt(&d, vm);
	worker_adopt_departed(&d);
	/* counted after: a definition a crash left beside a departed worker
	 * is gone by now, and that worker is no VM of this host's */
	for (struct vm *vm = d.vms; vm; vm = vm->next) {
		if (vm->departed) {
			departed++;
			continue;
		}
		adopted += vm->pid != 0;
		defined++;
	}
	/* Adopted workers first: moves in flight and arriving VMs are
	 * judged by what their workers say now. */
	migrate_recover_incoming(&d);
	/* Like settings.json: a queue it cannot read would be overwritten by
	 * the next save, and with it any move past its commit point. */
	if (migrate_store_load(&d, &e) < 0) {
		fprintf(stderr, "ferryd: %s\n", e.msg);
		unlink(d.socket_path);
		return 1;
	}
	{
		char gone[96] = "";
		if (departed)
			snprintf(gone, sizeof(gone), "; %d worker(s) of VMs that moved away, still ending",
				 departed);
		log_info("ferryd %s: state %s, socket %s, tcp %s, worker %s; %d VM(s) defined, %d re-adopted%s",
			 FERRY_VERSION, d.state_dir, d.socket_path,
			 d.listen_addr[0] ? d.listen_addr : "off", d.vmm_path, defined, adopted, gone);
	}
	if (no_auth)
		log_warn("--no-auth: anyone who reaches %s may run every command and send VMs here",
			 d.listen_addr[0] ? d.listen_addr : "this host's migration ports");

	if (loop_run(&d, &e) < 0) {
		log_error("%s", e.msg);
		unlink(d.socket_path);
		return 1;
	}
	for (struct vm *vm = d.vms; vm; vm = vm->next) {
		running += vm->pid != 0 && !vm->departed;
		ending += vm->pid != 0 && vm->departed;
	}
	unlink(d.socket_path);
	if (ending) /* the next ferryd takes them back (run/NAME.departed) */
		log_info("stopped; %d VM worker(s) left running, %d of VMs that moved away still ending",
			 running, ending);
	else
		log_info("stopped; %d VM worker(s) left running", running);
	return 0;
}
