/*
 * The control API's verb table. One line per verb; the handler validates
 * its own fields.
 */
#include "daemon/dispatch.h"

const struct verb verb_table[] = {
	{ "host.info",  verb_host_info,  "facts about this host and its VMs" },
	{ "vm.new",     verb_vm_new,     "define a VM" },
	{ "vm.start",   verb_vm_start,   "start a defined VM" },
	{ "vm.stop",    verb_vm_stop,    "stop a running VM" },
	{ "vm.list",    verb_vm_list,    "list VMs" },
	{ "vm.status",  verb_vm_status,  "one VM in detail" },
	{ "vm.verify",  verb_vm_verify,  "check every page of a test-guest VM" },
	{ "vm.delete",  verb_vm_delete,  "remove a VM's definition" },
	{ "vm.console", verb_vm_console, "attach to a VM's serial console" },
	{ "vm.move",    verb_migration_start, "live-migrate VMs to another host (= migration.start)" },
	{ "host.set",   verb_host_set,   "change host settings" },
	{ "migration.start",   verb_migration_start,   "live-migrate VMs to another host" },
	{ "migration.list",    verb_migration_list,    "queued and running moves" },
	{ "migration.status",  verb_migration_status,  "one move with its figures" },
	{ "migration.cancel",  verb_migration_cancel,  "cancel a queued or running move" },
	{ "migration.set",     verb_migration_set,     "change a move's own bandwidth limit, live" },
	{ "migration.history", verb_migration_history, "finished moves with their figures" },
	{ "migration.prepare", verb_migration_prepare, "destination: get ready to receive a VM" },
	{ "migration.abort",   verb_migration_abort,   "destination: drop an incoming VM" },
	{ NULL, NULL, NULL },
};
