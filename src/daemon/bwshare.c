/* The host's bandwidth limit divided among its outgoing moves (see bwshare.h). */
#include "daemon/bwshare.h"

#include <stdbool.h>

#define OPEN (-1) /* in shares[] while working: not yet fixed */

/* Fix at their own limit the open moves whose limit is at most the fair
 * share of what is left; true if any was fixed (the fair share of the
 * others then grows, so the caller looks again). */
static bool fix_capped(const int *caps, int n, int *shares, long long *left,
		       int *open)
{
	long long fair = *left / *open;
	bool any = false;

	for (int i = 0; i < n; i++) {
		if (shares[i] != OPEN || caps[i] <= 0 || caps[i] > fair)
			continue;
		shares[i] = caps[i];
		*left -= caps[i];
		(*open)--;
		any = true;
	}
	return any;
}

void bwshare_compute(int host_mibps, const int *caps, int n, int *shares)
{
	long long left = host_mibps;
	int open = n, k = 0;

	if (host_mibps <= 0) {
		for (int i = 0; i < n; i++)
			shares[i] = caps[i] > 0 ? caps[i] : 0;
		return;
	}
	for (int i = 0; i < n; i++)
		shares[i] = OPEN;
	while (open > 0 && fix_capped(caps, n, shares, &left, &open))
		;
	/* The rest split what is left evenly; the remainder goes one MiB/s
	 * each to the first of them, so the shares add up to the limit. */
	for (int i = 0; i < n; i++) {
		if (shares[i] != OPEN)
			continue;
		shares[i] = (int)(left / open + (k < left % open ? 1 : 0));
		if (shares[i] < 1)
			shares[i] = 1;
		k++;
	}
}
