/*
 * Moves to several destinations (`-d hostB,hostC`): which VM goes where.
 * The CLI asks the source's ferryd which VMs it runs and how big they are,
 * and each destination's ferryd how much memory it has free (less its
 * reserve); then places the VMs biggest first, each on the destination
 * with the most room left for it, so an evacuation spreads the load
 * instead of filling the first host. Each destination's share then goes to
 * the source's ferryd as one migration.start, and the moves are followed
 * together. The destinations decide admission as for any move: a plan made
 * on figures that changed meanwhile is refused there with the reason.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonl.h"

int cli_place(struct cli_place_vm *vms, size_t nvm, struct cli_place_host *hosts, size_t nh)
{
	size_t *order;

	if (nh == 0)
		return -1;
	order = malloc((nvm ? nvm : 1) * sizeof(*order));
	if (!order)
		return -1;
	for (size_t i = 0; i < nvm; i++)
		order[i] = i;
	/* biggest first (insertion sort: a host's VMs, a few hundred at most);
	 * equal sizes keep the order given */
	for (size_t i = 1; i < nvm; i++)
		for (size_t j = i; j > 0 && vms[order[j]].memory_mib > vms[order[j - 1]].memory_mib; j--) {
			size_t t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (size_t k = 0; k < nvm; k++) {
		struct cli_place_vm *v = &vms[order[k]];
		size_t best = nh;
		/* most room left; on a tie the destination named first; none
		 * on one that takes no moves */
		for (size_t h = 0; h < nh; h++)
			if (!hosts[h].closed && (best == nh || hosts[h].room_mib > hosts[best].room_mib))
				best = h;
		if (best == nh) {
			free(order);
			return -1;
		}
		v->host = (int)best;
		v->fits = hosts[best].room_mib >= (int64_t)v->memory_mib;
		hosts[best].room_mib -= v->memory_mib;
		hosts[best].placed++;
	}
	free(order);
	return 0;
}

/* The destinations of a comma list, each checked as -d checks one. */
static int place_hosts(const char *list, struct cli_place_host **out, size_t *n)
{
	char *copy = strdup(list), *save = NULL, *tok;
	struct cli_place_host *h = NULL;
	size_t k = 0;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct cli_place_host *nh;
		if (!*tok)
			continue;
		for (size_t i = 0; i < k; i++)
			if (strcmp(h[i].addr, tok) == 0) {
				fprintf(stderr, "ferry: destination %s is named twice\n", tok);
				goto fail;
			}
		if (strlen(tok) >= sizeof(h->addr)) {
			fprintf(stderr, "ferry: destination '%.40s...' is too long\n", tok);
			goto fail;
		}
		nh = realloc(h, (k + 1) * sizeof(*h));
		if (!nh)
			goto fail;
		h = nh;
		memset(&h[k], 0, sizeof(h[k]));
		snprintf(h[k].addr, sizeof(h[k].addr), "%s", tok);
		k++;
	}
	free(copy);
	*out = h;
	*n = k;
	return 0;
fail:
	free(copy);
	free(h);
	return -1;
}

/* The source's VMs to place: the running ones (an evacuation), or those
 * named; their memory from the source's vm.list. */
static int place_vms(const struct cli_opts *o, struct json_object *names, struct cli_place_vm **out,
		     size_t *n, int *rc)
{
	struct cli_opts q = *o;
	struct json_object *req = json_object_new_object(), *rep, *list;
	struct cli_place_vm *v;
	size_t k = 0, cap;

	q.json = false;
	jsonl_add_str(req, "cmd", "vm.list");
	rep = cli_request(&q, req, 10000, rc);
	if (!rep)
		return -1;
	if (!json_object_object_get_ex(rep, "vms", &list) || !json_object_is_type(list, json_type_array)) {
		fprintf(stderr, "ferry: the source's ferryd sent no VM list\n");
		json_object_put(rep);
		*rc = CLI_FAILED;
		return -1;
	}
	cap = names ? json_object_array_length(names) : json_object_array_length(list);
	v = calloc(cap ? cap : 1, sizeof(*v));
	if (!v) {
		json_object_put(rep);
		*rc = CLI_FAILED;
		return -1;
	}
	for (size_t i = 0; i < json_object_array_length(list) && k < cap; i++) {
		struct json_object *e = json_object_array_get_idx(list, i);
		const char *name = cli_str(e, "name"), *state = cli_str(e, "state");
		bool want = false;
		if (!name || strlen(name) >= sizeof(v->name))
			continue;
		if (names) {
			for (size_t j = 0; j < json_object_array_length(names); j++)
				if (strcmp(json_object_get_string(json_object_array_get_idx(names, j)), name) == 0)
					want = true;
		} else {
			want = state && strcmp(state, "running") == 0;
		}
		if (!want)
			continue;
		if (!state || strcmp(state, "running") != 0) {
			fprintf(stderr, "ferry: VM %s is %s: only a running VM can be live-migrated; "
				"nothing moved\n", name, state ? state : "in an unknown state");
			goto refuse;
		}
		snprintf(v[k].name, sizeof(v[k].name), "%s", name);
		v[k].memory_mib = (uint32_t)cli_int(e, "memory_mib", 0);
		k++;
	}
	/* every VM named, or none moves: one batch refused would leave the
	 * others half started */
	for (size_t j = 0; names && j < json_object_array_length(names); j++) {
		const char *want = json_object_get_string(json_object_array_get_idx(names, j));
		bool found = false;
		for (size_t i = 0; i < k; i++)
			found |= strcmp(v[i].name, want) == 0;
		if (!found) {
			fprintf(stderr, "ferry: no VM named '%.80s' on the source host (see: ferry vm list); "
				"nothing moved\n", want);
			goto refuse;
		}
	}
	json_object_put(rep);
	*out = v;
	*n = k;
	return 0;
refuse:
	json_object_put(rep);
	free(v);
	*rc = CLI_FAILED;
	return -1;
}

/* Each destination's room: its free memory less its reserve; one that
 * takes no moves (host set --accept-moves off) gets none. */
static int place_ask_hosts(const struct cli_opts *o, struct cli_place_host *h, size_t n, int *rc)
{
	for (size_t i = 0; i < n; i++) {
		struct cli_opts q = *o;
		struct json_object *req = json_object_new_object(), *rep, *set = NULL;
		int64_t reserve = 0;

		q.computer = h[i].addr;
		q.json = false;
		jsonl_add_str(req, "cmd", "host.info");
		rep = cli_request(&q, req, 10000, rc);
		if (!rep) {
			fprintf(stderr, "ferry: destination %s did not answer host.info: cannot place VMs "
				"on it (give -d without it, or start its ferryd)\n", h[i].addr);
			return -1;
		}
		if (json_object_object_get_ex(rep, "settings", &set))
			reserve = cli_int(set, "memory_reserve_mib", 0);
		h[i].free_mib = cli_int(rep, "memory_free_mib", 0);
		h[i].room_mib = h[i].free_mib - reserve;
		h[i].closed = set && json_object_object_get_ex(set, "accept_moves", NULL) &&
			      !cli_bool(set, "accept_moves");
		if (h[i].closed)
			fprintf(stderr, "ferry: destination %s takes no moves (host set --accept-moves off): "
				"none placed on it\n", h[i].addr);
		json_object_put(rep);
	}
	return 0;
}

int cli_start_placed(struct cli_opts *o, struct json_object *names, const struct move_opts_pub *mo)
{
	struct cli_place_host *hosts = NULL;
	struct cli_place_vm *vms = NULL;
	struct json_object *all = json_object_new_array();
	size_t nh = 0, nvm = 0;
	int rc = CLI_FAILED, start_rc = CLI_OK;
	bool events = o->json || (!mo->no_wait && !isatty(STDOUT_FILENO));

	if (place_hosts(mo->destination, &hosts, &nh) < 0 || nh == 0) {
		rc = CLI_USAGE; /* a destination named twice */
		goto out;
	}
	if (place_vms(o, names, &vms, &nvm, &rc) < 0 || place_ask_hosts(o, hosts, nh, &rc) < 0)
		goto out;
	if (nvm == 0) {
		cli_say_nothing_to_move(o->json);
		rc = CLI_OK;
		goto out;
	}
	if (cli_place(vms, nvm, hosts, nh) < 0) {
		fprintf(stderr, "ferry: no destination takes moves: nothing moved\n");
		rc = CLI_FAILED;
		goto out;
	}
	if (!events)
		printf("Placing %zu VM%s on %zu hosts (biggest first, each where the most memory is left):\n",
		       nvm, nvm == 1 ? "" : "s", nh);
	for (size_t i = 0; i < nvm; i++) {
		const struct cli_place_host *h = &hosts[vms[i].host];
		if (events) {
			struct json_object *ev = json_object_new_object();
			jsonl_add_str(ev, "event", "placed");
			jsonl_add_str(ev, "name", vms[i].name);
			jsonl_add_str(ev, "destination", h->addr);
			jsonl_add_int(ev, "memory_mib", vms[i].memory_mib);
			jsonl_add_int(ev, "destination_free_mib", h->free_mib);
			jsonl_add_bool(ev, "fits", vms[i].fits);
			printf("%s\n", jsonl_text(ev));
			json_object_put(ev);
		} else {
			char mem[32], fr[32];
			cli_fmt_mib(vms[i].memory_mib, mem, sizeof(mem));
			cli_fmt_mib(h->free_mib, fr, sizeof(fr));
			printf("  %-12s %8s -> %s (%s free)%s\n", vms[i].name, mem, h->addr, fr,
			       vms[i].fits ? "" : "  (no destination has room: it may be refused)");
		}
	}
	fflush(stdout);
	/* one migration.start per destination; their moves followed together */
	for (size_t hi = 0; hi < nh; hi++) {
		struct json_object *req, *rep, *moves, *list;
		struct move_opts_pub one = *mo;
		int src;

		if (!hosts[hi].placed)
			continue;
		list = json_object_new_array();
		for (size_t i = 0; i < nvm; i++)
			if (vms[i].host == (int)hi)
				json_object_array_add(list, json_object_new_string(vms[i].name));
		one.destination = hosts[hi].addr;
		req = json_object_new_object();
		jsonl_add_str(req, "cmd", "migration.start");
		json_object_object_add(req, "names", list);
		cli_move_request_options(req, &one);
		{
			bool json = o->json;
			o->json = false;
			rep = cli_request(o, req, 30000, &src);
			o->json = json;
		}
		if (!rep) {
			/* moves already started go on: follow them, then fail */
			fprintf(stderr, "ferry: the moves to %s were not started\n", hosts[hi].addr);
			start_rc = src;
			continue;
		}
		if (json_object_object_get_ex(rep, "moves", &moves))
			for (size_t i = 0; i < json_object_array_length(moves); i++)
				json_object_array_add(all, json_object_get(json_object_array_get_idx(moves, i)));
		json_object_put(rep);
	}
	if (json_object_array_length(all) == 0) {
		rc = start_rc;
		goto out;
	}
	rc = cli_follow_moves(o, all, mo);
	if (rc == CLI_OK)
		rc = start_rc;
out:
	json_object_put(all);
	free(hosts);
	free(vms);
	return rc;
}
