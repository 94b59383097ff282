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

if ! "$IAPRUNE" --version | head -n 1 | grep -q ', MPI)'; then
	echo "1..0 # SKIP the build has no MPI (configure --with-mpi)"
	exit 0
fi
if ! command -v mpirun >/dev/null 2>&1; then
	echo "1..0 # SKIP no mpirun"
	exit 0
fi
echo "1..9"
if [ "$(id -u)" -eq 0 ]; then
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
fi
# Open MPI's components leak at exit, after they are unloaded: no leak detection under mpirun.
mpi() {
	np=$1
	shift
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" timeout 300 mpirun -np "$np" --oversubscribe \
		--mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo "$@"
}

tiny_pipeline plain
"$IAPRUNE" run -j 1 "$tmp/plain.yaml" >/dev/null 2>"$tmp/err"
check "the plain run" "[ $? -eq 0 ] && [ -s '$tmp/plain/report/results.csv' ]"
for np in 1 2 4; do
	tiny_pipeline "np$np"
	mpi "$np" "$IAPRUNE" run -j 1 "$tmp/np$np.yaml" >/dev/null 2>"$tmp/err"
	check "-np $np: the report equals the plain run's" "[ $? -eq 0 ] && same_report plain np$np"
done
check "-np 4: rank 0 printed the items per rank" \
	"grep -q '^    pruned evaluations: 12/12, per rank [0-9]* [0-9]* [0-9]* [0-9]*\$' '$tmp/err'"

tiny_pipeline die
IAP_TEST_DIE_RANK=1 mpi 2 -x IAP_TEST_DIE_RANK "$IAPRUNE" run -j 1 "$tmp/die.yaml" >/dev/null 2>"$tmp/err"
status=$?
item=$(sed -n 's/.*iaprune: rank 1 dies holding item \([0-9]*\) .*/\1/p' "$tmp/err" | head -n 1)
check "a dying rank fails the job (mpirun status $status)" "[ $status -ne 0 ] && [ -n '$item' ]"
check "rank 0 names the rank and the item it held" "grep -q 'rank 1 held .*\\(row\\|scores\\|bisection\\) ' '$tmp/err'"
"$IAPRUNE" run -j 1 "$tmp/die.yaml" >/dev/null 2>"$tmp/err"
check "the rerun succeeds" "[ $? -eq 0 ]"
check "the rerun's report equals the plain run's" "same_report plain die"
