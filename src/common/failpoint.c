/* Failpoint parsing and actions (see failpoint.h). */
#include "common/failpoint.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* Read once: the environment is set before a process starts (nothing in
 * ferry changes it), and some failpoints sit in per-chunk loops. */
static const char *fp_spec;
static pthread_once_t fp_once = PTHREAD_ONCE_INIT;

static void fp_load(void)
{
	const char *s = getenv("FERRY_FAILPOINTS");
	fp_spec = s && *s ? s : NULL;
}

int failpoint(const char *name)
{
	const char *spec, *p;
	size_t n;
	pthread_once(&fp_once, fp_load);
	spec = fp_spec;
	if (!spec)
		return 0;
	n = strlen(name);
	for (p = spec; (p = strstr(p, name)) != NULL; p += n) {
		long ms;
		if ((p != spec && p[-1] != ';') || p[n] != '=')
			continue;
		p += n + 1;
		log_warn("failpoint %s: %.*s", name, (int)strcspn(p, ";"), p);
		if (strncmp(p, "crash", 5) == 0) {
			raise(SIGKILL);
		} else if (strncmp(p, "error", 5) == 0) {
			return -1;
		} else if (sscanf(p, "delay(%ld)", &ms) == 1 && ms > 0) {
			struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
		return 0;
	}
	return 0;
}
