/*
 * The host's bandwidth limit divided among its outgoing moves: a pure
 * function, so the policy can be tested without workers or sockets.
 * migrate_bw.c applies the result to the running moves.
 */
#ifndef FERRY_DAEMON_BWSHARE_H
#define FERRY_DAEMON_BWSHARE_H

/* host_mibps: the host's limit on all outgoing moves together (0 = none).
 * caps[i]: move i's own limit (0 = none). Writes shares[i], the limit
 * move i runs at (0 = none), for i < n.
 *
 * Without a host limit every move runs at its own limit. With one, each
 * move gets an equal share; a move whose own limit is below its share
 * keeps its own limit and what it leaves over is shared among the others
 * (so no bandwidth under the host limit goes unused while a move could
 * use it). Shares are whole MiB/s and add up to the host limit, except
 * that every move gets at least 1 MiB/s (0 would mean "unlimited"). */
void bwshare_compute(int host_mibps, const int *caps, int n, int *shares);

#endif
