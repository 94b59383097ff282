#!/bin/sh
# The MPI backend: the gathered results under mpirun with 2 and 4 ranks
# (oversubscribed) equal the serial run's byte for byte, and a rank that
# dies mid-item makes the job fail with a message naming it and its item.
# Skipped where the build has no MPI or mpirun is absent.
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
tap_begin test_dist_mpi
prog="$IAP_TEST_BUILDDIR/tests/dist_prog"

. "$IAP_TEST_SRCDIR/tests/util/mpi.sh"
mpi_skip_unless "$([ "$("$prog" --mpi)" = 1 ] && echo yes)"
echo "1..7"

"$prog" 40 >"$tmp/serial" 2>"$tmp/err"
check "serial run: 40 items, all on rank 0" \
	"[ \$(wc -l <'$tmp/serial') -eq 40 ] && grep -q 'rank 0 of 1, serial' '$tmp/err'"
for np in 2 4; do
	mpi 120 "$np" "$prog" 40 >"$tmp/mpi$np" 2>"$tmp/err"
	check "-np $np: rank 0 used the MPI backend" "grep -q 'rank 0 of $np, mpi' '$tmp/err'"
	check "-np $np: gathered results equal the serial ones" "cmp -s '$tmp/serial' '$tmp/mpi$np'"
done

DIST_DIE_RANK=1 mpi 120 2 -x DIST_DIE_RANK "$prog" 40 >"$tmp/out" 2>"$tmp/err"
status=$?
item=$(sed -n 's/^dist_prog: rank 1 dies holding item \([0-9]*\)$/\1/p' "$tmp/err")
check "a dying rank fails the job (mpirun status $status)" "[ $status -ne 0 ] && [ -n '$item' ]"
check "rank 0 names the rank and the item it held" \
	"grep -q 'rank 0 was stopped.* rank 1 held item $item\\b' '$tmp/err'"
