#!/usr/bin/env bash
# The whole test suite. Unit tests run twice (plain and ASan+UBSan builds);
# KVM and end-to-end tests are shell scripts: exit 0 = pass, 77 = skip (they
# print why), anything else = fail. Scripts whose first lines contain
# "san: yes" run a second time against the sanitizer build.
# Usage: tests/run.sh [PATTERN]   (PATTERN filters test names)
# TEST_TIMEOUT=S: a test still running after S seconds (default 600) fails.
set -u
cd "$(dirname "$0")/.."
root=$PWD
pattern=${1:-}
TEST_TIMEOUT=${TEST_TIMEOUT:-600} # seconds per test; the longest takes ~2 min
pass=0 fail=0 skip=0
failed=()
logdir=$root/build/test-logs
mkdir -p "$logdir"

run_one() { # name cmd...
	local name=$1; shift
	[ -n "$pattern" ] && [[ "$name" != *$pattern* ]] && return
	local log="$logdir/${name//\//_}.log" t0=$SECONDS rc
	# A hang is a failure, not the end of CI's time: the test's whole
	# process group gets SIGTERM (its EXIT trap cleans up), SIGKILL 30 s on.
	timeout -k 30 "$TEST_TIMEOUT" "$@" >"$log" 2>&1
	rc=$?
	local dt=$((SECONDS - t0))
	[ $rc -eq 124 ] && echo "tests/run.sh: timed out after $TEST_TIMEOUT s" >>"$log"
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1)); printf 'PASS  %-50s %4ds\n' "$name" "$dt"
	elif [ $rc -eq 77 ]; then
		skip=$((skip + 1)); printf 'SKIP  %-50s %s\n' "$name" "$(grep -m1 -i 'skip' "$log" | cut -c1-100)"
	else
		fail=$((fail + 1)); failed+=("$name")
		if [ $rc -eq 124 ]; then
			printf 'FAIL  %-50s %4ds (timed out)\n' "$name" "$dt"
		else
			printf 'FAIL  %-50s %4ds (rc %d)\n' "$name" "$dt" "$rc"
		fi
		tail -n 25 "$log" | sed 's/^/      | /'
	fi
}

for variant in build build/asan; do
	for t in "$variant"/tests/test_*; do
		[ -x "$t" ] || continue
		run_one "unit${variant#build}/$(basename "$t")" "$t"
	done
done

export FERRY_GUEST=$root/build/guest/testguest.elf
for dir in tests/bench tests/kvm tests/e2e; do
	for t in "$dir"/*.sh; do
		[ -f "$t" ] || continue
		FERRY_BIN=$root/build/bin run_one "${t%.sh}" bash "$t"
		if head -n 5 "$t" | grep -q 'san: yes'; then
			FERRY_BIN=$root/build/asan/bin ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
				run_one "${t%.sh}[asan]" bash "$t"
		fi
	done
done

if ((${#failed[@]})); then
	echo "failed: ${failed[*]} (logs in build/test-logs/)"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
