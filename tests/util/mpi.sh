# mpirun for the shell tests, sourced after tap.sh:
#   mpi_skip_unless BUILT   skip the whole test (TAP "1..0 # SKIP") unless
#                           BUILT is "yes" (the build has MPI) and mpirun exists
#   mpi TIMEOUT NP ARGS...  ARGS on NP ranks, oversubscribed, loopback only
# Open MPI refuses root unless told twice, so that is told here. Under the
# sanitizers its components leak at exit after they are unloaded, so their
# leaks cannot even be suppressed by name: the MPI runs alone go without leak
# detection (the tests' serial runs keep it).
mpi_skip_unless() {
	if [ "$1" != yes ]; then
		echo "1..0 # SKIP the build has no MPI (configure --with-mpi)"
		exit 0
	fi
	if ! command -v mpirun >/dev/null 2>&1; then
		echo "1..0 # SKIP no mpirun"
		exit 0
	fi
}
if [ "$(id -u)" -eq 0 ]; then
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
fi
mpi() {
	mpi_timeout=$1 np=$2
	shift 2
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" timeout "$mpi_timeout" \
		mpirun -np "$np" --oversubscribe --mca btl self,vader,tcp --mca btl_tcp_if_include lo \
		--mca oob_tcp_if_include lo "$@"
}
