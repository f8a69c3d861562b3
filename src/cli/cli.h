/*
 * The ferry CLI's shared pieces: global options, the connection to a
 * ferryd (local UNIX socket or remote TCP), request/reply helpers that turn
 * API errors into messages saying what to do, and output formatting.
 * Command groups live one per file (cmd_vm.c, cmd_host.c) and are reached
 * through the table in main.c.
 */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/err.h"
#include "common/sock.h"

#define CLI_DEFAULT_SOCKET "/var/lib/ferry/ferryd.sock"
#define CLI_DEFAULT_PORT "7450"
#define CLI_DEFAULT_KEY "/var/lib/ferry/cluster.key"

/* Exit codes of ferry. */
enum {
	CLI_OK = 0,
	CLI_FAILED = 1,      /* ferryd refused (also our key) or the operation failed */
	CLI_USAGE = 2,       /* bad command line */
	CLI_UNREACHABLE = 3, /* no ferryd to talk to */
	CLI_INTERRUPTED = 130, /* Ctrl-C while watching moves (they go on) */
};

struct cli_opts {
	const char *computer; /* HOST[:PORT] for TCP, or NULL for local */
	const char *socket;   /* local socket path */
	const char *key_file; /* cluster key for TCP (NULL: the default, if readable) */
	bool json;            /* print raw JSON replies */
};

struct cli_conn {
	int fd;
	char where[300]; /* "HOST:PORT" or the socket path, for messages */
	struct sock_reader rd;
};

/* A command group: argv[0] is the group name ("vm"). */
struct cli_group {
	const char *name;
	int (*run)(struct cli_opts *o, int argc, char **argv);
	const char *summary;
};

/* client.c */
/* Connect to ferryd; on failure prints the reason and a hint. */
struct cli_conn *cli_connect(const struct cli_opts *o);
/* The exit code for the last failed cli_connect: CLI_UNREACHABLE,
 * CLI_FAILED when ferryd answered but authentication failed, or CLI_USAGE
 * when --computer-name is not HOST[:PORT]. */
int cli_connect_failure(void);
void cli_close(struct cli_conn *c);
/* Send req (consumed), wait up to timeout_ms for the reply line. Returns
 * the reply, or NULL after printing what went wrong. */
struct json_object *cli_call(struct cli_conn *c, struct json_object *req,
			     int timeout_ms);
/* Connect, call, close. On an {"ok":false} reply prints the error (with
 * hints) and returns NULL with *rc = CLI_FAILED; on transport failure
 * *rc = CLI_UNREACHABLE. With --json the raw reply is printed in every
 * case and NULL is returned for errors too. */
struct json_object *cli_request(const struct cli_opts *o,
				struct json_object *req, int timeout_ms,
				int *rc);
/* Print a {"ok":false} reply as "ferry: error: ..." plus what to do about
 * it (cmd: the request's "cmd", for hints that depend on it; name: the VM,
 * filled into them). */
void cli_print_error(struct json_object *reply, const char *cmd, const char *name);

/* args.c */
/* getopt names the command by argv[0] in its own messages ("unrecognized
 * option"): make that what the user typed, "ferry GROUP COMMAND". */
void cli_argv0(char **argv, const char *group);
/* "512M", "1G", "2048" (MiB), "1.5G" -> MiB; -1 on bad input. */
int64_t cli_parse_mib(const char *s);
/* Decimal integer in [min, max]; false on bad input. */
bool cli_parse_int(const char *s, long min, long max, long *out);
/* "on" or "off" (options such as --prealloc, --encrypt); false otherwise. */
bool cli_parse_onoff(const char *s, bool *on);
/* Report argv[at], a word no option took: "unexpected argument 'X'TAIL",
 * or, after --verify-memory, that it takes on or off. */
void cli_unexpected_arg(const char *cmd, int argc, char **argv, int at, const char *tail);

/* output.c */
const char *cli_str(struct json_object *o, const char *key);
int64_t cli_int(struct json_object *o, const char *key, int64_t dflt);
bool cli_bool(struct json_object *o, const char *key); /* false if absent */
double cli_num(struct json_object *o, const char *key); /* 0 if absent */
/* A move's "progress" object, NULL if it has none. */
struct json_object *cli_progress(struct json_object *mv);
/* move-vm's progress line for one move (a migration.status "move"). */
void cli_watch_line(struct json_object *mv, char *buf, size_t cap);
/* A finished move whose downtime went over its target: "over the 50 ms
 * target: most of it <the largest of its downtime parts> (N ms)" into
 * buf, and true; false if within the target (or not known). */
bool cli_downtime_over(struct json_object *mv, char *buf, size_t cap);
/* A move that copies the disk: "to PATH: N MiB sent of a M MiB image, K MiB
 * written since and owed" into buf, and true; false without a copy. */
bool cli_disk_copy_text(struct json_object *mv, char *buf, size_t cap);
/* A move asked for post-copy: what became of it ("N pages sent after the VM
 * ran there, in T ms; M asked for by the guest", or still going, or not
 * needed) into buf, and true; false if not asked for. */
bool cli_postcopy_text(struct json_object *mv, char *buf, size_t cap);
/* "1h02m", "3m04s", "12s". */
void cli_fmt_duration(int64_t ms, char *buf, size_t cap);
/* A time still to go, rounded up to the second; "-" when none is known. */
void cli_fmt_eta(int64_t ms, char *buf, size_t cap);
/* "512 MiB", "2 GiB". */
void cli_fmt_mib(int64_t mib, char *buf, size_t cap);
/* A table: header row then rows; columns padded to their widest cell.
 * cli_table_print prints and frees it. */
struct cli_table;
struct cli_table *cli_table_new(int ncols, const char *const *headers);
void cli_table_row(struct cli_table *t, const char *const *cells);
void cli_table_print(struct cli_table *t);
/* "Label:  value", labels aligned to width. */
void cli_kv(const char *label, const char *value);

/* console.c: relay between the terminal and an upgraded connection. */
int cli_console_relay(struct cli_conn *c, const char *name, struct err *e);

/* watch.c: follow moves (a migration.start reply's "moves") to their end:
 * progress lines on a terminal, JSON events otherwise. */
int cli_watch_moves(const struct cli_opts *o, struct json_object *moves);
/* "12.3 MiB" from bytes. */
void cli_fmt_bytes(double b, char *buf, size_t cap);

/* cmd_move.c: options shared by move-vm and host evacuate. */
struct move_opts_pub {
	const char *destination;
	long downtime_ms;        /* 0 = the host's setting */
	long bandwidth;          /* the move's own limit; -1 = not given (none) */
	const char *transport;
	const char *codec;       /* NULL = auto */
	bool no_wait;
	long max_duration_s;     /* 0 = no limit */
	const char *on_timeout;  /* "switchover" (default) or "cancel" */
	int encrypt;             /* 1 on, 0 off, -1 = the host's setting */
	int verify_memory;       /* 1 on, 0 off, -1 = the host's setting */
	bool copy_disk;          /* copy the disk image (hosts that share no storage) */
	const char *disk_path;   /* where the copy goes there; NULL = the disk's own path */
	const char *disk_dir;    /* or the directory each copy goes to, under its own name */
	bool remove_source_disk; /* remove the image here once the VM runs on its copy */
	bool check_only;         /* only check the destination would take each VM */
	bool postcopy;           /* switch to post-copy when pre-copy does not converge */
};
/* Parse one of -d/--destination-host (opt 'd'), --downtime-ms ('D'),
 * --bandwidth ('B'), --transport ('T'), --codec ('C'), --no-wait ('W'),
 * --max-duration ('M'), --on-timeout ('O'), --encrypt ('E'), --verify-memory
 * ('V', whose on|off may also be the next word: getopt's optind moves
 * past it), --copy-disk ('K'), --disk-dir ('G'), --remove-source-disk ('R'),
 * --check ('X'), --post-copy ('Y'); -1 on error. */
int cli_move_parse_common(int opt, const char *arg, const char *cmd,
			  struct move_opts_pub *mo, int argc, char **argv);
/* Options that only go together, once all are parsed: -1 (said on
 * stderr) when one needs another or two exclude each other. */
int cli_move_check_common(const struct move_opts_pub *mo, const char *cmd);
/* The options as migration.start's fields, added to req: those not given
 * are left out, so that the host's settings apply. */
void cli_move_request_options(struct json_object *req, const struct move_opts_pub *mo);
/* Send a migration.start request (consumed; options added) and follow.
 * A destination list ("hostB,hostC") places the VMs first (placement.c). */
int cli_start_moves(struct cli_opts *o, struct json_object *req,
		    const struct move_opts_pub *mo);
/* Follow moves a migration.start made (its "moves"), or list them with
 * --no-wait; the exit status. */
int cli_follow_moves(struct cli_opts *o, struct json_object *moves, const struct move_opts_pub *mo);
/* A start that found no VM to move: an empty done event with --json. */
void cli_say_nothing_to_move(bool json);

/* placement.c: moves to several destinations. */
struct cli_place_vm {
	char name[65]; /* a VM name: at most 64 bytes */
	uint32_t memory_mib;
	int host;  /* out: index of its destination */
	bool fits; /* out: that destination had room for it as far as known */
};
struct cli_place_host {
	char addr[300];     /* HOST[:PORT] of its ferryd */
	int64_t free_mib;   /* its free memory when asked */
	int64_t room_mib;   /* free less its reserve, less what was placed on it */
	bool closed;        /* it takes no moves (host set --accept-moves off) */
	size_t placed;
};
/* Biggest VM first, each on the destination with the most room left (the
 * first named on a tie), none on a closed one. -1 when no destination is
 * open (or out of memory). */
int cli_place(struct cli_place_vm *vms, size_t nvm, struct cli_place_host *hosts, size_t nh);
/* Ask the source for its VMs (names, or every running one when NULL) and
 * each destination of mo->destination's list for its room, place them,
 * start one migration.start per destination and follow all the moves. */
int cli_start_placed(struct cli_opts *o, struct json_object *names, const struct move_opts_pub *mo);

/* Command groups. */
int cmd_vm(struct cli_opts *o, int argc, char **argv);
int cmd_host(struct cli_opts *o, int argc, char **argv);
int cmd_move(struct cli_opts *o, int argc, char **argv);
int cmd_migration(struct cli_opts *o, int argc, char **argv);

#endif
