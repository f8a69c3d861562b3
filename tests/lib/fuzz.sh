# Shared by the fuzz tests (tests/kvm/*_fuzz.sh): build the harnesses, run
# one for a bounded time, fail on anything it reports. Source common.sh first.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# fuzz_build WHAT: build every harness; skip (77) loudly without libFuzzer.
fuzz_build() {
	local rc
	bash "$root/tests/fuzz/build.sh" >"$T/build.log" 2>&1
	rc=$?
	if [ $rc -eq 77 ]; then
		cat "$T/build.log"
		skip "clang libFuzzer unavailable: the $1 fuzz harness was NOT run"
	fi
	[ $rc -eq 0 ] || { cat "$T/build.log"; fail "fuzz harness does not build"; }
}

# fuzz_run HARNESS MAX_LEN CORPUS...: FUZZ_SECONDS (60) of build/fuzz/HARNESS
# from $T/corpus (where new inputs go: the committed seeds stay as they
# are) and the CORPUS dirs; any crash, sanitizer report, leak or timeout
# fails, its reproducers copied to build/fuzz/crashes/. FUZZ_FLAGS: more
# libFuzzer options (word-split).
fuzz_run() {
	local h=$1 max=$2 rc
	shift 2
	mkdir -p "$T/corpus" "$T/artifacts"
	"$root/build/fuzz/$h" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=1024 -timeout=10 \
		-max_len="$max" -artifact_prefix="$T/artifacts/" -print_final_stats=1 ${FUZZ_FLAGS:-} \
		"$T/corpus" "$@" >"$T/fuzz.log" 2>&1
	rc=$?
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$T/fuzz.log"
	if [ $rc -ne 0 ] || ls "$T/artifacts" | grep -q .; then
		grep -E "ERROR|SUMMARY|runtime error|$h:" "$T/fuzz.log" | head -20
		mkdir -p "$root/build/fuzz/crashes"
		cp "$T"/artifacts/* "$root/build/fuzz/crashes/" 2>/dev/null
		fail "fuzzer found a problem (rc $rc); reproducer(s) copied to build/fuzz/crashes/"
	fi
	echo "ok: $(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$T/fuzz.log"), corpus $(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]+' "$T/fuzz.log" | tail -1)"
}
