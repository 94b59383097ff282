#!/bin/sh
# iaprune run under mpirun (issue 17): with 1, 2 and 4 ranks (oversubscribed,
# loopback only) the report equals a plain run's byte for byte; rank 0 prints
# per-rank progress; a rank that dies fails the job with a message naming
# the rank and its item, and the rerun resumes from the journal. Skipped
# where the build has no MPI or mpirun is absent.
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
. "$IAP_TEST_SRCDIR/tests/tiny_pipeline.sh"
tap_begin test_run_mpi
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS

. "$IAP_TEST_SRCDIR/tests/util/mpi.sh"
mpi_skip_unless "$("$IAPRUNE" --version | head -n 1 | grep -q ', MPI)' && echo yes)"
echo "1..9"

tiny_pipeline plain
"$IAPRUNE" run -j 1 "$tmp/plain.yaml" >/dev/null 2>"$tmp/err"
check "the plain run" "[ $? -eq 0 ] && [ -s '$tmp/plain/report/results.csv' ]"
for np in 1 2 4; do
	tiny_pipeline "np$np"
	mpi 300 "$np" "$IAPRUNE" run -j 1 "$tmp/np$np.yaml" >/dev/null 2>"$tmp/err"
	check "-np $np: the report equals the plain run's" "[ $? -eq 0 ] && same_report plain np$np"
done
check "-np 4: rank 0 printed the items per rank" \
	"grep -q '^    pruned evaluations: 12/12, per rank [0-9]* [0-9]* [0-9]* [0-9]*\$' '$tmp/err'"

tiny_pipeline die
IAP_TEST_DIE_RANK=1 mpi 300 2 -x IAP_TEST_DIE_RANK "$IAPRUNE" run -j 1 "$tmp/die.yaml" >/dev/null 2>"$tmp/err"
status=$?
item=$(sed -n 's/.*iaprune: rank 1 dies holding item \([0-9]*\) .*/\1/p' "$tmp/err" | head -n 1)
check "a dying rank fails the job (mpirun status $status)" "[ $status -ne 0 ] && [ -n '$item' ]"
check "rank 0 names the rank and the item it held" "grep -q 'rank 1 held .*\\(row\\|scores\\|bisection\\) ' '$tmp/err'"
"$IAPRUNE" run -j 1 "$tmp/die.yaml" >/dev/null 2>"$tmp/err"
check "the rerun succeeds" "[ $? -eq 0 ]"
check "the rerun's report equals the plain run's" "same_report plain die"
