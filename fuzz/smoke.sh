#!/bin/sh
# CI fuzz smoke: build the libFuzzer targets (make fuzz, clang) and run each
# for SECONDS on a scratch copy of its seed corpus (the committed corpus is
# never modified). Installs nothing.
#
#   fuzz/smoke.sh SECONDS [BUILDDIR]     (BUILDDIR: a configured build tree, default .)
#
# Exit status: 0 all targets ran clean; 1 a target crashed, leaked, hung or
# hit a sanitizer report (the reproducer is kept and named); 2 usage or
# build failure; 77 clang with libFuzzer is not installed (Debian:
# clang-14 libclang-rt-14-dev). Prints one summary line per target.
set -u
secs=${1:-}
build=${2:-.}
case $secs in '' | *[!0-9]*) echo "usage: fuzz/smoke.sh SECONDS [BUILDDIR]" >&2; exit 2 ;; esac
targets="fuzz_yaml fuzz_safetensors fuzz_npz fuzz_image fuzz_csv"
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$build" || exit 2

make fuzz >fuzz-build.log 2>&1
rc=$?
if [ $rc -ne 0 ]; then
	if grep -q '^fuzz: clang not found' fuzz-build.log; then
		cat fuzz-build.log >&2
		echo "fuzz smoke: SKIPPED (no clang)"
		exit 77
	fi
	tail -n 30 fuzz-build.log >&2
	echo "fuzz smoke: build FAILED (see fuzz-build.log)"
	exit 2
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/iap-fuzz.XXXXXX") || exit 2
crashed=0
for t in $targets; do
	name=${t#fuzz_}
	mkdir -p "$out/$name/corpus" "$out/$name/artifacts"
	cp "$src/fuzz/corpus/$name/"* "$out/$name/corpus/" 2>/dev/null
	./fuzz/$t -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
		-print_final_stats=1 -artifact_prefix="$out/$name/artifacts/" \
		"$out/$name/corpus" >"$out/$name/log" 2>&1
	trc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name/log")
	corpus=$(ls "$out/$name/corpus" | wc -l)
	finds=$(ls "$out/$name/artifacts" | wc -l)
	if [ $trc -ne 0 ] || [ "$finds" -ne 0 ]; then
		crashed=$((crashed + 1))
		printf '%-12s FAILED  exit %d, %s executions; reproducers:\n' "$name" "$trc" "${execs:-?}"
		ls "$out/$name/artifacts" | sed "s|^|    $out/$name/artifacts/|"
		grep -m1 -A3 'ERROR\|runtime error' "$out/$name/log" | sed 's/^/    /'
	else
		printf '%-12s ok      %s executions in %ss, corpus %d files\n' "$name" "${execs:-?}" "$secs" "$corpus"
	fi
done
if [ $crashed -ne 0 ]; then
	echo "fuzz smoke: $crashed target(s) FAILED; logs and reproducers in $out"
	exit 1
fi
rm -rf "$out"
echo "fuzz smoke: all targets clean (${secs}s each)"
exit 0
