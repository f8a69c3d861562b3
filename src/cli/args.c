/* Command-line value parsing for ferry (sizes, counts). */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t cli_parse_mib(const char *s)
{
	char *end;
	double v;
	double mult = 1; /* MiB */

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return -1;
	if (*end) {
		switch (toupper((unsigned char)*end)) {
		case 'K': mult = 1.0 / 1024; break;
		case 'M': mult = 1; break;
		case 'G': mult = 1024; break;
		case 'T': mult = 1024.0 * 1024; break;
		default: return -1;
		}
		end++;
		/* Accept "1G", "1GB", "1GiB". */
		if (strcasecmp(end, "b") != 0 && strcasecmp(end, "ib") != 0 && *end)
			return -1;
	}
	v *= mult;
	/* a fraction of a MiB is refused, not cut off: 15.9M is not 15M */
	if (v > 1e12 || v != v || v != (double)(int64_t)v)
		return -1;
	return (int64_t)v;
}

bool cli_parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool cli_parse_onoff(const char *s, bool *on)
{
	if (strcmp(s, "on") != 0 && strcmp(s, "off") != 0)
		return false;
	*on = strcmp(s, "on") == 0;
	return true;
}

void cli_argv0(char **argv, const char *group)
{
	static char name[96];
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "%s", argv[0]); /* argv[0] may be name already */
	snprintf(name, sizeof(name), "ferry %s%s%s", group, group[0] ? " " : "", cmd);
	argv[0] = name;
}

void cli_unexpected_arg(const char *cmd, int argc, char **argv, int at, const char *tail)
{
	if (at >= argc)
		return;
	/* --verify-memory's value is optional, so getopt leaves a word it
	 * does not take (not on or off) as a stray argument: say so */
	if (at > 0 && strcmp(argv[at - 1], "--verify-memory") == 0)
		fprintf(stderr, "ferry %s: --verify-memory '%s': use on or off (or --verify-memory alone)\n",
			cmd, argv[at]);
	else
		fprintf(stderr, "ferry %s: unexpected argument '%s'%s\n", cmd, argv[at], tail);
}
