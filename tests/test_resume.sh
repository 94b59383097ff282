#!/bin/sh
# Resumable runs (issue 17), without MPI: a run killed by SIGKILL after K
# journal records (the test-only hook IAP_TEST_KILL_AFTER_ITEMS=K; K once in
# the scoring stage, once at random) is run again: its report equals an
# uninterrupted run's byte for byte and it takes exactly the K records from
# the journal (scores: or the score cache). A changed rate or sampler option recomputes exactly the
# items that depend on it.
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
. "$IAP_TEST_SRCDIR/tests/tiny_pipeline.sh"
tap_begin test_resume
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS
echo "1..12"

# The items a log says came from the journal, over every stage, and the scores from the score cache.
journaled() {
	{ sed -n 's/^    [a-z ]*: \([0-9]*\) of [0-9]* items from the journal$/\1/p' "$1"
	  grep -c '^    scores of .*: from the cache$' "$1"; } | awk '{ s += $1 } END { print s + 0 }'
}
# The scoring jobs a run computed.
scored() {
	grep -c '^==> scoring units with' "$1"
}

tiny_pipeline ref
"$IAPRUNE" run -j 1 "$tmp/ref.yaml" >/dev/null 2>"$tmp/err"
total=$(ls "$tmp/ref/journal" | grep -c '\.rec$')
# 3 scoring jobs, 3 configurations x 4 rates, 3 bisections.
check "the uninterrupted run journals every item ($total)" "[ '$total' -eq 18 ]"

random=$(awk -v s="$$" 'BEGIN { srand(s); print 2 + int(rand() * 15) }')
for k in 1 "$random"; do
	tiny_pipeline "k$k"
	IAP_TEST_KILL_AFTER_ITEMS=$k "$IAPRUNE" run -j 1 "$tmp/k$k.yaml" >/dev/null 2>"$tmp/err"
	status=$?
	check "killed after $k records (status $status)" \
		"[ $status -eq 137 ] && [ \$(ls '$tmp/k$k/journal' | grep -c '\\.rec\$') -eq $k ]"
	"$IAPRUNE" run -j 1 "$tmp/k$k.yaml" >/dev/null 2>"$tmp/err"
	check "killed after $k: the rerun's report equals the uninterrupted run's" "[ $? -eq 0 ] && same_report ref k$k"
	check "killed after $k: the rerun took $k items from the journal, computed the rest" \
		"[ \$(journaled '$tmp/err') -eq $k ]"
done

"$IAPRUNE" run -j 1 "$tmp/ref.yaml" >/dev/null 2>"$tmp/err"
check "an unchanged rerun takes all $total items from the journal" "[ \$(journaled '$tmp/err') -eq $total ]"
# One rate changed: its row in each of the 3 configurations.
tiny_pipeline ref "0.0, 0.3, 0.5, 0.9"
"$IAPRUNE" run -j 1 "$tmp/ref.yaml" >/dev/null 2>"$tmp/err"
check "a changed rate: no scoring job computed" "[ \$(scored '$tmp/err') -eq 0 ]"
check "a changed rate: 3 of the 12 rows computed" "[ '$(from_journal "$tmp/err" 'pruned evaluations')' = '9 of 12' ]"
# One sampler's option changed: its configuration's scores and rows (magnitude needs no samples).
tiny_pipeline ref "" 4
"$IAPRUNE" run -j 1 "$tmp/ref.yaml" >/dev/null 2>"$tmp/err"
check "a changed sampler: its one scoring job computed" "[ \$(scored '$tmp/err') -eq 1 ]"
check "a changed sampler: its 4 rows computed" "[ '$(from_journal "$tmp/err" 'pruned evaluations')' = '8 of 12' ]"
