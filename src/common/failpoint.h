/*
 * Failpoints: named places in the migration code where a test can inject a
 * delay, an error or a crash, so every stage's failure handling is tested
 * for real. Set FERRY_FAILPOINTS="name=action[;name=action...]" with action
 * one of delay(MS), error, crash, read once per process. Unset (the normal
 * case) costs one branch.
 */
#ifndef FERRY_FAILPOINT_H
#define FERRY_FAILPOINT_H

/* Returns -1 if the failpoint says "error", 0 otherwise (after any delay).
 * "crash" ends the process at once, as a kill -9 would. */
int failpoint(const char *name);

#endif
