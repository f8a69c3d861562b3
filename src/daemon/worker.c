/*
 * Worker supervision: spawning ferry-vm, the start and stop state machines,
 * noticing exits (a pidfd per worker, so adopted workers that are not our
 * children are watched the same way), and re-adopting workers left running
 * by a previous ferryd. Workers run in their own session so they outlive
 * ferryd; a worker's death is recorded, never fatal to ferryd.
 */
#include "daemon/ferryd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/failpoint.h"
#include "common/jsonl.h"
#include "common/log.h"
#include "daemon/hostinfo.h"
#include "daemon/migrate.h"
#include "daemon/peer.h"
#include "daemon/vmctl.h"

/* How often a starting worker's control socket is probed. */
#define WORKER_PROBE_MS 10 /* a worker answers within ~20 ms of exec: look often */
#define WORKER_ARGV_MAX 40

static int worker_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int worker_signal(struct vm *vm, int sig)
{
	/* Through the pidfd: a recycled pid can never be hit by mistake. */
	if (vm->pidfd >= 0)
		return (int)syscall(SYS_pidfd_send_signal, vm->pidfd, sig, NULL, 0);
	errno = ESRCH;
	return -1;
}

void worker_kill(struct vm *vm)
{
	vm->expect_exit = true;
	if (worker_signal(vm, SIGKILL) < 0 && errno != ESRCH)
		log_warn("VM %s: SIGKILL: %s", vm->def.name, strerror(errno));
}

void worker_log_tail(struct ferryd *d, struct vm *vm, int lines, char *buf,
		     size_t cap)
{
	char path[PATH_MAX], tail[4096];
	struct err e;
	ssize_t n;
	off_t size;
	char *p;
	int fd;

	buf[0] = '\0';
	if (cap == 0 || registry_path(d, vm, "log", path, sizeof(path), &e) < 0)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size < 0 ||
	    lseek(fd, size > (off_t)sizeof(tail) - 1 ? size - (off_t)sizeof(tail) + 1 : 0,
		  SEEK_SET) < 0) {
		close(fd);
		return;
	}
	n = read(fd, tail, sizeof(tail) - 1);
	close(fd);
	if (n <= 0)
		return;
	while (n > 0 && tail[n - 1] == '\n')
		n--;
	tail[n] = '\0';
	/* Walk back over `lines` newlines. */
	p = tail + n;
	while (p > tail) {
		if (p[-1] == '\n' && --lines == 0)
			break;
		p--;
	}
	snprintf(buf, cap, "%s", p);
}

static void worker_unlink_runtime(struct ferryd *d, struct vm *vm)
{
	/* "departed": the pid file of a VM that moved away, its worker ending */
	static const char *const kinds[] = { "pid", "sock", "console", "exit", "departed" };
	char path[PATH_MAX];
	struct err e;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (registry_path(d, vm, kinds[i], path, sizeof(path), &e) == 0 &&
		    unlink(path) < 0 && errno != ENOENT)
			log_warn("removing %s: %s", path, strerror(errno));
}

static int worker_write_pidfile(struct ferryd *d, struct vm *vm, struct err *e)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8], text[32];
	int fd, len;

	if (registry_path(d, vm, "pid", path, sizeof(path), e) < 0)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	len = snprintf(text, sizeof(text), "%d\n", (int)vm->pid);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_sys(e, "creating %s", tmp);
	if (write(fd, text, (size_t)len) != len) {
		err_sys(e, "writing %s", tmp);
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		err_sys(e, "installing %s", path);
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* argv for ferry-vm from the definition; strings point into vm/bufs. */
struct worker_cmd {
	char *argv[WORKER_ARGV_MAX];
	int argc;
	char mem[32], vcpus[16];
	char sock[PATH_MAX], console[PATH_MAX], serial[PATH_MAX], log[PATH_MAX], exitf[PATH_MAX];
	char extf[PATH_MAX], mkey[PATH_MAX], resumed[PATH_MAX];
};

static void worker_arg(struct worker_cmd *c, const char *flag, const char *val)
{
	/* The table is sized for every flag; argc can never overflow. */
	if (c->argc + 2 >= WORKER_ARGV_MAX)
		return;
	c->argv[c->argc++] = (char *)flag;
	c->argv[c->argc++] = (char *)val;
}

/* The NIC's backend is this host's to give, started or arriving alike. */
static void worker_nic_args(struct worker_cmd *c, const struct vm_def *def)
{
	if (def->tap[0])
		worker_arg(c, "--tap", def->tap);
	if (def->bridge[0])
		worker_arg(c, "--bridge", def->bridge);
}

static int worker_build_cmd(struct ferryd *d, struct vm *vm,
			    struct worker_cmd *c, struct err *e)
{
	const struct vm_def *def = &vm->def;

	if (registry_path(d, vm, "sock", c->sock, sizeof(c->sock), e) < 0 ||
	    registry_path(d, vm, "console", c->console, sizeof(c->console), e) < 0 ||
	    registry_path(d, vm, "serial", c->serial, sizeof(c->serial), e) < 0 ||
	    registry_path(d, vm, "log", c->log, sizeof(c->log), e) < 0 ||
	    registry_path(d, vm, "exit", c->exitf, sizeof(c->exitf), e) < 0 ||
	    registry_path(d, vm, "extents", c->extf, sizeof(c->extf), e) < 0 ||
	    registry_path(d, vm, "mkey", c->mkey, sizeof(c->mkey), e) < 0 ||
	    registry_path(d, vm, "resumed", c->resumed, sizeof(c->resumed), e) < 0)
		return -1;
	snprintf(c->mem, sizeof(c->mem), "%uM", def->memory_mib);
	snprintf(c->vcpus, sizeof(c->vcpus), "%u", def->vcpus);
	c->argc = 0;
	c->argv[c->argc++] = d->vmm_path;
	if (vm->incoming) {
		/* The machine's configuration comes from the source in the
		 * stream; only this host's paths, the name and size it must
		 * carry (what this host admitted) and the host-local tap are
		 * ours to give. */
		worker_arg(c, "--incoming", vm->incoming_addr);
		worker_arg(c, "--name", def->name);
		worker_arg(c, "--memory", c->mem);
		worker_arg(c, "--vcpus", c->vcpus);
		worker_arg(c, "--serial", c->serial);
		worker_arg(c, "--log", c->log);
		worker_arg(c, "--console-socket", c->console);
		worker_nic_args(c, def);
		/* the copy of the disk this move makes, where prepare checked */
		if (vm->disk_copy)
			worker_arg(c, "--disk-copy", def->disk);
		/* the host's migration baseline (host set --cpu-baseline) */
		if (d->settings.cpu_baseline[0])
			worker_arg(c, "--host-cpu-mask", d->settings.cpu_baseline);
		worker_arg(c, "--control", c->sock);
		worker_arg(c, "--exit-file", c->exitf);
		/* the worker's word that the VM ran here (migrate_in.c) */
		worker_arg(c, "--resumed-file", c->resumed);
		if (vm->migration_key)
			worker_arg(c, "--migration-key-file", c->mkey);
		if (d->settings.prealloc) {
			/* The host's choice: memory reserved before the move starts
			 * (fails here, not mid-move, if the host cannot back it). */
			c->argv[c->argc++] = (char *)"--prealloc";
			/* Only what the source uses, when it said (an idle 16 GiB
			 * guest then reserves next to nothing). */
			if (vm->prealloc_extents)
				worker_arg(c, "--prealloc-extents", c->extf);
		}
		c->argv[c->argc] = NULL;
		return 0;
	}
	worker_arg(c, "--name", def->name);
	worker_arg(c, "--kernel", def->kernel);
	if (def->initrd[0])
		worker_arg(c, "--initrd", def->initrd);
	if (def->cmdline[0])
		worker_arg(c, "--cmdline", def->cmdline);
	worker_arg(c, "--memory", c->mem);
	worker_arg(c, "--vcpus", c->vcpus);
	worker_arg(c, "--serial", c->serial);
	/* the worker keeps its own log under a size limit (it holds the
	 * file for months; we only open it for the exec) */
	worker_arg(c, "--log", c->log);
	worker_arg(c, "--console-socket", c->console);
	if (def->disk[0])
		worker_arg(c, "--disk", def->disk);
	worker_nic_args(c, def);
	if (def->mac[0])
		worker_arg(c, "--mac", def->mac);
	if (def->cpu_mask[0])
		worker_arg(c, "--cpu-mask", def->cpu_mask);
	if (def->dirty_tracker[0])
		worker_arg(c, "--dirty-tracker", def->dirty_tracker);
	worker_arg(c, "--control", c->sock);
	worker_arg(c, "--exit-file", c->exitf);
	c->argv[c->argc] = NULL;
	return 0;
}

/* In the child between fork and exec: only async-signal-safe calls. */
static void __attribute__((noreturn))
worker_exec(struct worker_cmd *c, int logfd, int nullfd)
{
	static const char msg[] = "ferryd: exec of ferry-vm failed\n";
	sigset_t none;

	/* ferryd blocks signals for its signalfd and ignores SIGPIPE; both
	 * survive exec and would cripple the worker. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	/* Own session and process group: a ferryd restart or a Ctrl-C in
	 * ferryd's terminal never reaches the VM. */
	setsid();
	if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
		_exit(127);
	execv(c->argv[0], c->argv);
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(127);
	_exit(127);
}

static int worker_spawn(struct ferryd *d, struct vm *vm, uint64_t waiter,
			const char **code, struct err *e);

int worker_start(struct ferryd *d, struct vm *vm, uint64_t waiter,
		 const char **code, struct err *e)
{
	struct host_mem mem;

	if (vm->op != OP_NONE || vm->state == VM_STARTING ||
	    vm->state == VM_STOPPING) {
		*code = "E_BUSY";
		return err_set(e, "VM %s is %s; wait for that to finish",
			       vm->def.name, registry_state_name(vm->state));
	}
	if (vm->pid) {
		*code = "E_VM_RUNNING";
		return err_set(e, "VM %s is already running (pid %d)",
			       vm->def.name, (int)vm->pid);
	}
	*code = "E_NO_KVM";
	if (hostinfo_kvm_usable(e) < 0)
		return -1;
	if (vmdef_check_files(&vm->def, code, e) < 0 || vmdef_check_nic(&vm->def, code, e) < 0)
		return -1;
	*code = "E_INTERNAL";
	if (hostinfo_memory(&mem, e) < 0)
		return -1;
	if ((uint64_t)vm->def.memory_mib + (uint64_t)d->settings.memory_reserve_mib > mem.free_mib) {
		char free_text[512];
		*code = "E_NO_MEMORY";
		return err_set(e, "not enough memory: VM needs %u MiB, host has %s, %d MiB of it reserved for the host",
			       vm->def.memory_mib, hostinfo_free_text(&mem, free_text, sizeof(free_text)),
			       d->settings.memory_reserve_mib);
	}
	return worker_spawn(d, vm, waiter, code, e);
}

int worker_start_incoming(struct ferryd *d, struct vm *vm, uint64_t waiter,
			  const char **code, struct err *e)
{
	*code = "E_NO_KVM";
	if (hostinfo_kvm_usable(e) < 0)
		return -1;
	return worker_spawn(d, vm, waiter, code, e);
}

/* Up to cap-1 bytes of a small file, NUL-terminated; its length, or -1. */
static ssize_t read_small_file(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* Does /proc/PID/cmdline say this is ferry-vm with our control socket? */
static bool worker_is_ours(pid_t pid, const char *sock)
{
	char path[64], buf[8192];
	const char *arg, *base, *prev = NULL;
	bool name_ok, sock_ok = false;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	n = read_small_file(path, buf, sizeof(buf));
	if (n <= 0)
		return false;
	base = strrchr(buf, '/');
	base = base ? base + 1 : buf;
	name_ok = strcmp(base, "ferry-vm") == 0;
	for (arg = buf; arg < buf + n; arg += strlen(arg) + 1) {
		if (prev && strcmp(prev, "--control") == 0 && strcmp(arg, sock) == 0)
			sock_ok = true;
		prev = arg;
	}
	return name_ok && sock_ok;
}

/* The pid vm's pid file (kind "pid", or "departed") names: 0 when there
 * is none (never started, or stopped cleanly), -1 when it holds no pid.
 * sock gets the control socket's path, which tells that process apart
 * (worker_is_ours). */
static int worker_pidfile_read(struct ferryd *d, struct vm *vm, const char *kind, char *sock,
			       size_t cap)
{
	char pidpath[PATH_MAX], text[32];
	struct err e = { 0 };
	long pid;

	if (registry_path(d, vm, kind, pidpath, sizeof(pidpath), &e) < 0 ||
	    registry_path(d, vm, "sock", sock, cap, &e) < 0)
		return 0;
	if (read_small_file(pidpath, text, sizeof(text)) < 0)
		return 0;
	pid = strtol(text, NULL, 10);
	return pid <= 1 || pid > 4194304 ? -1 : (int)pid; /* the kernel's pid_max limit */
}

/* Fork and exec ferry-vm for vm; the start state machine takes over. */
static int worker_spawn(struct ferryd *d, struct vm *vm, uint64_t waiter,
			const char **code, struct err *e)
{
	struct worker_cmd *c;
	char header[256];
	int logfd, nullfd, n;
	pid_t pid;

	if (access(d->vmm_path, X_OK) < 0) {
		*code = "E_NO_VMM";
		return err_sys(e, "cannot run the VM worker %s (build it, or pass ferryd --vmm PATH)",
			       d->vmm_path);
	}
	{
		/* A worker ferryd does not track (its definition was unreadable
		 * at the last start, say) still runs this VM: a second one would
		 * run the guest twice, and removing its files would orphan it. */
		char sock[PATH_MAX];
		int old = worker_pidfile_read(d, vm, "pid", sock, sizeof(sock));
		if (old > 0 && worker_is_ours((pid_t)old, sock)) {
			*code = "E_VM_RUNNING";
			return err_set(e, "a worker (pid %d) already runs VM %s, though ferryd does not "
				       "track it; stop it first (kill %d), then start the VM again",
				       old, vm->def.name, old);
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(e, "out of memory");
	if (worker_build_cmd(d, vm, c, e) < 0)
		goto fail;
	/* A stale socket file would make the readiness probe talk to nothing
	 * (or, worse, to a worker we no longer track). */
	worker_unlink_runtime(d, vm);
	logfd = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		err_sys(e, "opening %s", c->log);
		goto fail;
	}
	n = snprintf(header, sizeof(header), "--- ferryd: starting %s for VM %s\n",
		     d->vmm_path, vm->def.name);
	if (n > 0 && write(logfd, header, strnlen(header, sizeof(header))) < 0)
		log_warn("writing %s: %s", c->log, strerror(errno));
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nullfd < 0) {
		err_sys(e, "opening /dev/null");
		close(logfd);
		goto fail;
	}
	pid = fork();
	if (pid < 0) {
		err_sys(e, "fork");
		close(logfd);
		close(nullfd);
		goto fail;
	}
	if (pid == 0)
		worker_exec(c, logfd, nullfd);
	close(logfd);
	close(nullfd);
	free(c);

	vm->pid = pid;
	vm->child = true;
	vm->pidfd = worker_pidfd_open(pid);
	if (vm->pidfd < 0)
		log_warn("pidfd_open(%d): %s; relying on SIGCHLD", (int)pid,
			 strerror(errno));
	if (worker_write_pidfile(d, vm, e) < 0)
		log_warn("VM %s: %s (re-adoption after a restart will not work)",
			 vm->def.name, e->msg);
	vm->started_ms = ferryd_wall_ms();
	vm->state = vm->incoming ? VM_INCOMING : VM_STARTING;
	vm->op = OP_START;
	vm->deadline = ferryd_now_ms() + FERRYD_START_TIMEOUT_MS;
	if (vm->incoming && d->settings.prealloc)
		vm->deadline += (long long)vm->def.memory_mib * FERRYD_PREALLOC_MS_PER_MIB;
	vm->waiter = waiter;
	vm->expect_exit = false;
	log_info("VM %s: started worker pid %d", vm->def.name, (int)pid);
	return 0;
fail:
	free(c);
	*code = "E_INTERNAL";
	return -1;
}

static void worker_ctl_silent(struct vm *vm, const char *why)
{
	if (vm->ctl_silent_ms || !vm->pid)
		return;
	vm->ctl_silent_ms = ferryd_now_ms();
	vm->ctl_probe_ms = vm->ctl_silent_ms + FERRYD_CTL_PROBE_MS;
	log_warn("VM %s: worker pid %d does not answer on its control socket (%s); "
		 "ferryd asks again every %d s, and fails calls to it meanwhile",
		 vm->def.name, (int)vm->pid, why, FERRYD_CTL_PROBE_MS / 1000);
}

struct json_object *worker_request(struct ferryd *d, struct vm *vm, struct json_object *req,
				   struct err *e)
{
	char sock[PATH_MAX];
	struct json_object *rep;

	if (vm->ctl_silent_ms) {
		err_set(e, "its worker (pid %d) has not answered on its control socket for %lld s "
			"(hung, or stopped with SIGSTOP?); ferryd asks again every %d s",
			(int)vm->pid, (ferryd_now_ms() - vm->ctl_silent_ms) / 1000,
			FERRYD_CTL_PROBE_MS / 1000);
		e->code = ETIMEDOUT;
		return NULL;
	}
	if (registry_path(d, vm, "sock", sock, sizeof(sock), e) < 0)
		return NULL;
	rep = vmctl_request(sock, req, FERRYD_CTL_TIMEOUT_MS, e);
	if (!rep && e->code == ETIMEDOUT)
		worker_ctl_silent(vm, e->msg);
	return rep;
}

/* {"cmd":cmd} through worker_request */
static struct json_object *worker_call(struct ferryd *d, struct vm *vm, const char *cmd,
				       struct err *e)
{
	struct json_object *req = migrate_worker_cmd(cmd), *rep;

	rep = worker_request(d, vm, req, e);
	json_object_put(req);
	return rep;
}

void worker_call_done(struct ferryd *d, const struct peer_result *res)
{
	struct vm *vm = registry_find(d, res->vm);

	if (!vm)
		return;
	if (res->purpose == PEER_CTL_PROBE) {
		vm->ctl_probing = false;
		vm->ctl_probe_ms = ferryd_now_ms() + FERRYD_CTL_PROBE_MS;
	}
	/* Any reply means it answers. A call off the loop that timed out
	 * does not make it silent: those include long ones (extents, verify)
	 * a busy worker is merely slow at, and they hold up nobody. */
	if (res->reply && vm->ctl_silent_ms) {
		log_info("VM %s: its worker answers again, after %lld s", vm->def.name,
			 (ferryd_now_ms() - vm->ctl_silent_ms) / 1000);
		vm->ctl_silent_ms = 0;
	}
}

/* A silent worker is asked again off the loop (peer.h), one call at a time. */
static void worker_ctl_probe(struct ferryd *d, struct vm *vm, long long now)
{
	char sock[PATH_MAX];
	struct err e = { 0 };

	if (!vm->ctl_silent_ms || vm->ctl_probing || now < vm->ctl_probe_ms)
		return;
	vm->ctl_probe_ms = now + FERRYD_CTL_PROBE_MS;
	if (registry_path(d, vm, "sock", sock, sizeof(sock), &e) < 0 ||
	    peer_worker_call(d, sock, migrate_worker_cmd("status"), FERRYD_CTL_TIMEOUT_MS, 0,
			     vm->def.name, NULL, PEER_CTL_PROBE, &e) < 0) {
		log_warn("VM %s: cannot ask its worker again: %s", vm->def.name, e.msg);
		return;
	}
	vm->ctl_probing = true;
}

int worker_stop(struct ferryd *d, struct vm *vm, uint64_t waiter,
		int grace_ms, const char **code, struct err *e)
{
	struct json_object *rep;
	struct err ce = { 0 };

	if (!vm->pid) {
		*code = "E_VM_NOT_RUNNING";
		return err_set(e, "VM %s is not running (nothing to stop)", vm->def.name);
	}
	if (vm->op != OP_NONE) {
		*code = "E_BUSY";
		return err_set(e, "VM %s is %s; wait for that to finish",
			       vm->def.name, registry_state_name(vm->state));
	}
	vm->state = VM_STOPPING;
	vm->waiter = waiter;
	rep = worker_call(d, vm, "stop", &ce);
	if (rep) {
		json_object_put(rep);
		vm->op = OP_STOP_CTL;
		vm->deadline = ferryd_now_ms() + grace_ms;
		log_info("VM %s: asked worker to stop", vm->def.name);
		return 0;
	}
	/* The control socket is gone or wedged: go straight to signals. */
	log_warn("VM %s: graceful stop failed (%s); sending SIGTERM",
		 vm->def.name, ce.msg);
	if (worker_signal(vm, SIGTERM) < 0 && errno != ESRCH)
		log_warn("VM %s: SIGTERM: %s", vm->def.name, strerror(errno));
	vm->op = OP_STOP_TERM;
	vm->deadline = ferryd_now_ms() + FERRYD_STOP_TERM_MS;
	return 0;
}

static void worker_describe_exit(struct vm *vm, bool known, int status)
{
	if (!known) {
		vm->last_exit_code = -1;
		snprintf(vm->last_exit, sizeof(vm->last_exit),
			 "exited (exit code not visible: worker was re-adopted after a ferryd restart)");
	} else if (WIFEXITED(status)) {
		static const char *const why[] = { "clean stop", "failure",
			"configuration error", "guest shut down or reset",
			"migrated away", "incoming migration failed",
			"incoming migration called off by the source" };
		int code = WEXITSTATUS(status);
		vm->last_exit_code = code;
		snprintf(vm->last_exit, sizeof(vm->last_exit),
			 "exited with code %d (%s)", code,
			 code < (int)(sizeof(why) / sizeof(why[0])) ? why[code] : "failure");
	} else if (WIFSIGNALED(status)) {
		vm->last_exit_code = 128 + WTERMSIG(status);
		snprintf(vm->last_exit, sizeof(vm->last_exit),
			 "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	}
}

/* Whether an exit nobody asked for counts as a crash. */
static bool worker_exit_is_crash(bool known, int status)
{
	if (!known)
		return true;
	if (WIFEXITED(status)) {
		int code = WEXITSTATUS(status);
		return code != 0 && code != 3 && code != 2 && code != 4;
	}
	return true;
}

/* A worker that is not our child (re-adopted after a ferryd restart)
 * leaves its exit code in run/NAME.exit (--exit-file); a status word as
 * waitpid would give, or false if there is none (e.g. it was killed). */
static bool worker_read_exit_file(struct ferryd *d, struct vm *vm, int *status)
{
	char path[PATH_MAX], text[16];
	struct err e;
	int code;
	if (registry_path(d, vm, "exit", path, sizeof(path), &e) < 0 ||
	    read_small_file(path, text, sizeof(text)) <= 0)
		return false;
	if (sscanf(text, "%d", &code) != 1 || code < 0 || code > 255)
		return false;
	*status = code << 8; /* what WEXITSTATUS reads back */
	return true;
}

void worker_reap(struct ferryd *d, struct vm *vm)
{
	struct json_object *rep;
	char tail[1024], msg[2048];
	struct err e;
	bool known = false;
	int status = 0;
	enum vm_op op = vm->op;
	uint64_t waiter = vm->waiter;

	if (!vm->pid)
		return;
	if (vm->child) {
		pid_t r = waitpid(vm->pid, &status, WNOHANG);
		if (r == 0)
			return; /* still running: spurious wake-up */
		if (r < 0 && errno != ECHILD) {
			log_warn("waitpid(%d): %s", (int)vm->pid, strerror(errno));
			return;
		}
		known = r == vm->pid;
	} else {
		known = worker_read_exit_file(d, vm, &status);
	}
	worker_describe_exit(vm, known, status);
	log_info("VM %s: worker pid %d %s", vm->def.name, (int)vm->pid,
		 vm->last_exit);
	if (vm->pidfd >= 0)
		close(vm->pidfd);
	vm->pidfd = -1;
	vm->pid = 0;
	vm->started_ms = 0;
	vm->op = OP_NONE;
	vm->waiter = 0;
	vm->ctl_silent_ms = 0; /* the next worker starts with a clean slate */
	worker_unlink_runtime(d, vm);

	if (vm->departed) {
		/* The copy of a VM whose move completed meanwhile: its files
		 * went then, but for what the exit wrote (logs stay). */
		log_info("VM %s: the copy it left here has ended", vm->def.name);
		registry_forget(d, vm);
		return;
	}
	/* Live migration decides first: a source worker that handed its VM
	 * over, or an incoming worker that never got one. */
	if (migrate_worker_exited(d, vm, vm->last_exit_code,
				  op == OP_START ? waiter : 0))
		return;
	if (op == OP_START) {
		worker_log_tail(d, vm, 8, tail, sizeof(tail));
		/* A failed start is the caller's error to read, not a crash
		 * of a running VM: the VM simply is not running. */
		vm->state = VM_STOPPED;
		snprintf(msg, sizeof(msg), "VM %s failed to start: ferry-vm %s\n%s",
			 vm->def.name, vm->last_exit, tail);
		loop_send_to(d, waiter, reply_error("E_START_FAILED", msg));
	} else if (op == OP_STOP_CTL || op == OP_STOP_TERM || op == OP_STOP_KILL) {
		vm->state = VM_STOPPED;
		rep = reply_ok();
		jsonl_add_str(rep, "name", vm->def.name);
		jsonl_add_str(rep, "state", "stopped");
		jsonl_add_str(rep, "exit", vm->last_exit);
		if (vm->delete_after_stop) {
			if (registry_delete_files(d, vm, false, &e) < 0) {
				json_object_put(rep);
				rep = reply_error("E_INTERNAL", e.msg);
			} else {
				jsonl_add_bool(rep, "deleted", true);
				log_info("VM %s: deleted", vm->def.name);
				registry_remove(d, vm);
				vm = NULL;
			}
		}
		loop_send_to(d, waiter, rep);
	} else if (vm->expect_exit || !worker_exit_is_crash(known, status)) {
		vm->state = VM_STOPPED;
	} else {
		vm->state = VM_CRASHED;
		log_warn("VM %s crashed: %s", vm->def.name, vm->last_exit);
	}
	if (vm) {
		vm->expect_exit = false;
		vm->delete_after_stop = false;
	}
}

static void worker_tick_start(struct ferryd *d, struct vm *vm, long long now)
{
	struct json_object *st, *rep;
	char tail[1024], msg[2048];
	struct err e = { 0 };

	if ((st = worker_call(d, vm, "status", &e))) {
		json_object_put(st);
		vm->op = OP_NONE;
		if (vm->incoming) {
			/* The skeleton listens: tell the source where. */
			vm->state = VM_INCOMING;
			log_info("VM %s: incoming worker pid %d listens on %s", vm->def.name,
				 (int)vm->pid, vm->incoming_addr);
			/* a test's window to kill this ferryd before the source
			 * hears where (tests/e2e/move_errors.sh) */
			failpoint("ferryd.prepare_reply");
			rep = reply_ok();
			jsonl_add_str(rep, "name", vm->def.name);
			jsonl_add_str(rep, "id", vm->move_id);
			jsonl_add_str(rep, "address", vm->incoming_addr);
			loop_send_to(d, vm->waiter, rep);
			vm->waiter = 0;
			return;
		}
		vm->state = VM_RUNNING;
		log_info("VM %s: running (pid %d)", vm->def.name, (int)vm->pid);
		rep = worker_status_json(d, vm, false);
		loop_send_to(d, vm->waiter, rep);
		vm->waiter = 0;
		return;
	}
	if (now < vm->deadline)
		return;
	/* It never answered: kill it so no half-started VM lingers. */
	worker_log_tail(d, vm, 8, tail, sizeof(tail));
	snprintf(msg, sizeof(msg),
		 "VM %s did not become ready within %d s (control socket: %s); worker killed. Last log lines:\n%s",
		 vm->def.name, FERRYD_START_TIMEOUT_MS / 1000, e.msg, tail);
	log_warn("VM %s: start timed out", vm->def.name);
	if (worker_signal(vm, SIGKILL) < 0)
		log_warn("VM %s: SIGKILL: %s", vm->def.name, strerror(errno));
	vm->expect_exit = true;
	vm->state = VM_STOPPING;
	vm->op = OP_NONE;
	loop_send_to(d, vm->waiter, reply_error("E_START_TIMEOUT", msg));
	vm->waiter = 0;
}

void worker_tick(struct ferryd *d)
{
	long long now = ferryd_now_ms();
	char msg[256];

	for (struct vm *vm = d->vms; vm; vm = vm->next) {
		worker_ctl_probe(d, vm, now);
		switch (vm->op) {
		case OP_NONE:
			break;
		case OP_START:
			worker_tick_start(d, vm, now);
			break;
		case OP_STOP_CTL:
			if (now < vm->deadline)
				break;
			log_warn("VM %s: no exit after stop request; SIGTERM", vm->def.name);
			if (worker_signal(vm, SIGTERM) < 0)
				log_warn("VM %s: SIGTERM: %s", vm->def.name, strerror(errno));
			vm->op = OP_STOP_TERM;
			vm->deadline = now + FERRYD_STOP_TERM_MS;
			break;
		case OP_STOP_TERM:
			if (now < vm->deadline)
				break;
			log_warn("VM %s: no exit after SIGTERM; SIGKILL", vm->def.name);
			if (worker_signal(vm, SIGKILL) < 0)
				log_warn("VM %s: SIGKILL: %s", vm->def.name, strerror(errno));
			vm->op = OP_STOP_KILL;
			vm->deadline = now + FERRYD_STOP_KILL_MS;
			break;
		case OP_STOP_KILL:
			if (now < vm->deadline)
				break;
			snprintf(msg, sizeof(msg),
				 "VM %s: worker pid %d did not exit even after SIGKILL",
				 vm->def.name, (int)vm->pid);
			log_error("%s", msg);
			vm->op = OP_NONE;
			vm->delete_after_stop = false;
			loop_send_to(d, vm->waiter, reply_error("E_STOP_FAILED", msg));
			vm->waiter = 0;
			break;
		}
	}
}

int worker_next_timeout(struct ferryd *d)
{
	long long now = ferryd_now_ms(), best = -1;
	for (struct vm *vm = d->vms; vm; vm = vm->next) {
		long long t;
		if (vm->ctl_silent_ms && !vm->ctl_probing) {
			t = vm->ctl_probe_ms - now;
			if (t < 0)
				t = 0;
			if (best < 0 || t < best)
				best = t;
		}
		if (vm->op == OP_NONE)
			continue;
		t = vm->op == OP_START ? WORKER_PROBE_MS : vm->deadline - now;
		if (t < 0)
			t = 0;
		if (best < 0 || t < best)
			best = t;
	}
	return (int)best;
}

void worker_adopt(struct ferryd *d, struct vm *vm)
{
	char sock[PATH_MAX];
	struct json_object *st;
	const char *name = NULL;
	struct err e = { 0 };
	int64_t uptime = -1;
	int pid = worker_pidfile_read(d, vm, "pid", sock, sizeof(sock));
	int pidfd;

	if (pid == 0)
		return;
	if (pid < 0) {
		log_warn("VM %s: ignoring a bad pid file", vm->def.name);
		worker_unlink_runtime(d, vm);
		return;
	}
	/* Open the pidfd before checking identity, so the process we check
	 * is the one we then watch (no pid-reuse window). */
	pidfd = worker_pidfd_open((pid_t)pid);
	if (pidfd < 0 || !worker_is_ours((pid_t)pid, sock)) {
		if (pidfd >= 0)
			close(pidfd);
		snprintf(vm->last_exit, sizeof(vm->last_exit),
			 "worker pid %d exited while ferryd was not running", pid);
		log_info("VM %s: %s", vm->def.name, vm->last_exit);
		worker_unlink_runtime(d, vm);
		return;
	}
	vm->pid = (pid_t)pid;
	vm->pidfd = pidfd;
	vm->child = false;
	st = worker_call(d, vm, "status", &e);
	if (st && jsonl_get_str(st, "name", false, &name, &e) == 0 &&
	    (!name || strcmp(name, vm->def.name) == 0)) {
		if (jsonl_get_int(st, "uptime_ms", false, 0, INT64_MAX, &uptime, &e) == 0 &&
		    uptime >= 0)
			vm->started_ms = ferryd_wall_ms() - uptime;
		vm->state = VM_RUNNING;
		log_info("VM %s: re-adopted running worker pid %d", vm->def.name, pid);
	} else {
		/* Alive but not answering: keep watching it so `vm stop` can
		 * still end it, but do not call it running. */
		vm->state = VM_CRASHED;
		snprintf(vm->last_exit, sizeof(vm->last_exit),
			 "worker pid %d is alive but its control socket does not answer (%.80s)",
			 pid, st ? "name mismatch" : e.msg);
		log_warn("VM %s: %s", vm->def.name, vm->last_exit);
	}
	json_object_put(st);
}

void worker_mark_departed(struct ferryd *d, struct vm *vm)
{
	char from[PATH_MAX], to[PATH_MAX];
	struct err e = { 0 };

	if (registry_path(d, vm, "pid", from, sizeof(from), &e) < 0 ||
	    registry_path(d, vm, "departed", to, sizeof(to), &e) < 0)
		log_warn("VM %s: %s", vm->def.name, e.msg);
	else if (rename(from, to) < 0)
		log_warn("VM %s: renaming %s to %s: %s (a ferryd restart before its worker "
			 "ends will not know that worker)", vm->def.name, from, to, strerror(errno));
}

/* One run/NAME.departed: the worker it names still ending is taken back,
 * else the file (and what the exit left) goes. defined: the VM of that
 * name defined here, with no worker, or NULL. */
static void worker_adopt_departed_one(struct ferryd *d, const char *name, struct vm *defined)
{
	struct vm_def def = { 0 };
	char sock[PATH_MAX];
	struct vm *vm = defined;
	struct err e = { 0 };
	int pid, pidfd = -1;

	if (!vm) {
		snprintf(def.name, sizeof(def.name), "%s", name);
		vm = registry_add(d, &def);
		if (!vm) {
			log_error("VM %s: out of memory adopting the worker it left here", name);
			return;
		}
	}
	pid = worker_pidfile_read(d, vm, "departed", sock, sizeof(sock));
	if (pid > 0)
		pidfd = worker_pidfd_open((pid_t)pid);
	if (pidfd < 0 || !worker_is_ours((pid_t)pid, sock)) {
		/* ended while ferryd was down; a VM defined here again sweeps
		 * the file at its next start */
		if (pidfd >= 0)
			close(pidfd);
		if (!defined) {
			worker_unlink_runtime(d, vm);
			registry_remove(d, vm);
		}
		return;
	}
	if (defined) {
		/* The previous ferryd stopped between the move's two steps
		 * (move_out_release_source): the pid file renamed, the
		 * definition not yet removed. The file is renamed only once
		 * the destination runs the VM, so this definition is the copy
		 * that moved away; kept, the name would be free at once, and
		 * the old worker's exit would remove the sockets of a VM of
		 * that name started or arrived meanwhile. */
		if (registry_delete_files(d, vm, true, &e) < 0)
			log_warn("VM %s: removing the definition of the copy that moved away: %s",
				 name, e.msg);
		log_info("VM %s: moved away before the last ferryd stopped (its worker here still "
			 "ends): its definition here is removed", name);
	}
	vm->departed = true;
	/* It was told to stop before the restart; the usual escalation ends
	 * it if it hangs, and worker_reap removes the entry at its exit. */
	vm->pid = (pid_t)pid;
	vm->pidfd = pidfd;
	vm->child = false;
	vm->expect_exit = true;
	vm->state = VM_STOPPING;
	vm->op = OP_STOP_CTL;
	vm->deadline = ferryd_now_ms() + MIGRATE_FINISH_TIMEOUT_MS;
	log_info("VM %s: re-adopted the worker (pid %d) it left here when it moved away; "
		 "the name is free once it ends", name, pid);
}

void worker_adopt_departed(struct ferryd *d)
{
	static const char suffix[] = ".departed";
	const size_t sl = sizeof(suffix) - 1;
	DIR *dir = opendir(d->run_dir);
	struct dirent *de;

	if (!dir) {
		log_warn("opening %s: %s", d->run_dir, strerror(errno));
		return;
	}
	while ((de = readdir(dir))) {
		char name[VMDEF_NAME_MAX + 1];
		size_t len = strlen(de->d_name);
		struct vm *vm;

		if (len <= sl || len - sl > VMDEF_NAME_MAX || de->d_name[0] == '.' ||
		    strcmp(de->d_name + len - sl, suffix) != 0)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(len - sl), de->d_name);
		/* A VM of that name defined here whose own worker runs: the
		 * file is stale, swept at that VM's next start. */
		vm = registry_find(d, name);
		if (!vm || (!vm->pid && !vm->incoming))
			worker_adopt_departed_one(d, name, vm);
	}
	closedir(dir);
}

struct json_object *worker_status_json(struct ferryd *d, struct vm *vm,
				       bool live)
{
	struct json_object *o = reply_ok(), *st;
	char path[PATH_MAX], tail[2048];
	struct err e = { 0 };
	const char *gstate = NULL;

	jsonl_add_str(o, "name", vm->def.name);
	jsonl_add_str(o, "state", registry_state_name(vm->state));
	jsonl_add_int(o, "memory_mib", vm->def.memory_mib);
	jsonl_add_int(o, "vcpus", vm->def.vcpus);
	jsonl_add_str(o, "kernel", vm->def.kernel);
	if (vm->def.initrd[0])
		jsonl_add_str(o, "initrd", vm->def.initrd);
	jsonl_add_str(o, "cmdline", vm->def.cmdline);
	if (vm->def.disk[0])
		jsonl_add_str(o, "disk", vm->def.disk);
	if (vm->def.tap[0])
		jsonl_add_str(o, "tap", vm->def.tap);
	if (vm->def.bridge[0])
		jsonl_add_str(o, "bridge", vm->def.bridge);
	if (vm->def.mac[0])
		jsonl_add_str(o, "mac", vm->def.mac);
	if (vm->def.cpu_mask[0])
		jsonl_add_str(o, "cpu_mask", vm->def.cpu_mask);
	jsonl_add_str(o, "dirty_tracker", vm->def.dirty_tracker[0] ? vm->def.dirty_tracker : "bitmap");
	if (vm->pid) {
		jsonl_add_int(o, "pid", vm->pid);
		jsonl_add_bool(o, "adopted", !vm->child);
		if (vm->started_ms)
			jsonl_add_int(o, "uptime_ms", ferryd_wall_ms() - vm->started_ms);
	}
	if (registry_path(d, vm, "serial", path, sizeof(path), &e) == 0)
		jsonl_add_str(o, "serial_log", path);
	if (registry_path(d, vm, "log", path, sizeof(path), &e) == 0)
		jsonl_add_str(o, "worker_log", path);
	if (vm->last_exit[0]) {
		jsonl_add_str(o, "last_exit", vm->last_exit);
		jsonl_add_int(o, "last_exit_code", vm->last_exit_code);
	}
	{
		struct move *m = migrate_find_active(d, vm->def.name);
		if (m) {
			struct json_object *mj = json_object_new_object();
			jsonl_add_str(mj, "id", m->id);
			jsonl_add_str(mj, "direction", m->dir == MOVE_OUT ? "outgoing" : "incoming");
			jsonl_add_str(mj, "state", migrate_state_name(m->state));
			json_object_object_add(o, "migration", mj);
		}
	}
	if (vm->state == VM_CRASHED) {
		worker_log_tail(d, vm, 10, tail, sizeof(tail));
		jsonl_add_str(o, "log_tail", tail);
	}
	if (live && (vm->state == VM_RUNNING || vm->state == VM_INCOMING) && vm->pid) {
		st = worker_call(d, vm, "status", &e);
		if (!st)
			jsonl_add_str(o, "worker_error", e.msg);
		if (st && jsonl_get_str(st, "state", false, &gstate, &e) == 0 && gstate)
			jsonl_add_str(o, "worker_state", gstate);
		/* absent for a VM without a NIC: gstate must not keep "state" */
		gstate = NULL;
		if (st && jsonl_get_str(st, "nic_tap", false, &gstate, &e) == 0 && gstate)
			jsonl_add_str(o, "nic_tap", gstate);
		json_object_put(st);
	}
	return o;
}
