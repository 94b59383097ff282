#!/bin/sh
# Build the libFuzzer targets with clang: the library's C sources compiled
# once with coverage and ASan+UBSan into fuzz/obj/libiaprune-fuzz.a, then
# one binary per target linked against it. Called by `make fuzz`, which
# passes everything through the environment:
#   FUZZ_CC       clang (default: clang, else clang-14)
#   srcdir        the source tree
#   SOURCES       the sources of both libraries (SDK and host)
#   CPPFLAGS      defines and include paths (config.h's directory first)
#   CFLAGS_EXTRA  the dependencies' -I flags
#   LIBS          the dependencies' libraries
#   TARGETS       target names (fuzz_yaml ...), built as fuzz/<name>
# Objects are rebuilt only when their source is newer.
set -eu
: "${srcdir:?}" "${SOURCES:?}" "${TARGETS:?}"
CC=${FUZZ_CC:-}
if [ -z "$CC" ]; then
	for c in clang clang-14 clang-15 clang-16; do
		if command -v "$c" >/dev/null 2>&1; then CC=$c; break; fi
	done
fi
if [ -z "$CC" ] || ! command -v "$CC" >/dev/null 2>&1; then
	echo "fuzz: clang not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
	exit 77
fi
# UBSan findings abort, so libFuzzer records them as crashes.
FLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
mkdir -p fuzz/obj
objs=
for s in $SOURCES; do
	case $s in *.c) ;; *) continue ;; esac
	o=fuzz/obj/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')
	objs="$objs $o"
	if [ ! -f "$o" ] || [ "$srcdir/$s" -nt "$o" ]; then
		echo "  FUZZCC   $s"
		# No -fopenmp: clang would need libomp; the pragmas are then ignored.
		$CC $FLAGS -fsanitize=fuzzer-no-link -Wno-unknown-pragmas $CPPFLAGS ${CFLAGS_EXTRA:-} \
			-c "$srcdir/$s" -o "$o"
	fi
done
rm -f fuzz/obj/libiaprune-fuzz.a
ar rcs fuzz/obj/libiaprune-fuzz.a $objs
for t in $TARGETS; do
	echo "  FUZZLD   fuzz/$t"
	$CC $FLAGS -fsanitize=fuzzer $CPPFLAGS ${CFLAGS_EXTRA:-} "$srcdir/fuzz/$t.c" \
		fuzz/obj/libiaprune-fuzz.a $LIBS -ldl -lm -o "fuzz/$t"
done
