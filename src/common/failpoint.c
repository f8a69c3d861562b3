/* Failpoint parsing and actions (see failpoint.h). */
#include "common/failpoint.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

int failpoint(const char *name)
{
	const char *spec = getenv("FERRY_FAILPOINTS"), *p;
	size_t n = strlen(name);
	if (!spec || !*spec)
		return 0;
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
