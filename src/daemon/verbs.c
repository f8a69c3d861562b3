/*
 * The control API's verb table. One line per verb; the handler validates
 * its own fields. migration.* verbs go here too when they exist.
 */
#include "daemon/dispatch.h"

const struct verb verb_table[] = {
	{ "host.info",  verb_host_info,  "facts about this host and its VMs" },
	{ "vm.new",     verb_vm_new,     "define a VM" },
	{ "vm.start",   verb_vm_start,   "start a defined VM" },
	{ "vm.stop",    verb_vm_stop,    "stop a running VM" },
	{ "vm.list",    verb_vm_list,    "list VMs" },
	{ "vm.status",  verb_vm_status,  "one VM in detail" },
	{ "vm.delete",  verb_vm_delete,  "remove a VM's definition" },
	{ "vm.console", verb_vm_console, "attach to a VM's serial console" },
	{ NULL, NULL, NULL },
};
