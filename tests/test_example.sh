#!/bin/sh
# The out-of-tree example plugin (examples/sampler-stride) against the SDK
# as installed: install it into a temporary DESTDIR; check that only the
# SDK's headers are installed, that libiaprune.so exports none of the
# host's functions and exactly what the installed headers declare; build the example with its own Makefile through
# `pkg-config --cflags --libs iaprune` alone (the staged iaprune.pc, its
# prefix moved into DESTDIR with --define-variable); load it into the build
# tree's iaprune with --plugin-path. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
: "${MAKE:=make}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
IAPRUNE_PLUGIN_PATH=
IAPRUNE_PLUGIN_SYSTEM_PATH=
export IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-example.XXXXXX") || exit 1
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
dest="$tmp/dest"

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	[ -f "$tmp/log" ] && sed 's/^/# /' "$tmp/log" | tail -n 30
}
total=10
skip_rest() {
	while [ "$n" -lt "$total" ]; do n=$((n + 1)); echo "not ok $n - $1"; done
	exit 1
}

echo "1..$total"

# 1. Install into DESTDIR (never the real prefix) the library, iaprune.pc and
#    every *_HEADERS list the Makefile installs (so a header installed by a
#    list other than the SDK's shows in 2). Not a whole `make install`: that
#    relinks the plugins inside the build tree while other tests load them.
hdrs=$(sed -n 's/^\(install-[A-Za-z_]*HEADERS\):.*/\1/p' "$IAP_TEST_BUILDDIR/Makefile" | sort -u)
if (cd "$IAP_TEST_BUILDDIR" && $MAKE install-libLTLIBRARIES install-pkgconfigDATA $hdrs \
	DESTDIR="$dest") >"$tmp/log" 2>&1; then
	ok "install library, iaprune.pc and headers ($(echo $hdrs)) into DESTDIR"
else
	not_ok "install library, iaprune.pc and headers into DESTDIR"; skip_rest "skipped: install failed"
fi
pc=$(find "$dest" -name iaprune.pc | head -n 1)
prefix=$(sed -n 's/^prefix=//p' "$pc")
inc=$(sed -n 's/^includedir=//p' "$pc" | sed "s|\${prefix}|$prefix|")
lib=$(find "$dest" -name libiaprune.so | head -n 1)

# 2. The installed headers are the SDK's (Makefile.am's iapruneinclude_HEADERS),
#    and none of the host's (host/include/iaprune) is among them.
: >"$tmp/log"
if [ -n "${IAP_INSTALLED_HEADERS:-}" ]; then
	for h in $IAP_INSTALLED_HEADERS; do echo "iaprune/${h##*/}"; done | sort >"$tmp/want"
else
	(cd "$IAP_TEST_SRCDIR/include" && ls iaprune/*.h) | sort >"$tmp/want"
fi
(cd "$dest$inc" 2>/dev/null && find . -type f | sed 's|^\./||') | sort >"$tmp/have"
diff "$tmp/want" "$tmp/have" >>"$tmp/log" || echo "installed headers differ from the SDK's (< SDK, > installed)" >>"$tmp/log"
for h in "$IAP_TEST_SRCDIR"/host/include/iaprune/*.h; do
	[ -e "$dest$inc/iaprune/${h##*/}" ] && echo "host header installed: iaprune/${h##*/}" >>"$tmp/log"
done
[ -s "$tmp/want" ] || echo "no SDK header listed" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "only the SDK's headers are installed ($(wc -l <"$tmp/have") under $inc)"
else ok "only the SDK's headers are installed ($(wc -l <"$tmp/have") under $inc)"; fi

# 3. libiaprune.so exports no host function: none declared in a host header,
#    and nothing of the runner, pipeline, registry, report or training.
: >"$tmp/log"
nm -D --defined-only "$lib" 2>>"$tmp/log" | awk '{ print $NF }' | sort -u >"$tmp/exports"
grep -qx iap_tensor_free "$tmp/exports" || echo "iap_tensor_free not exported: nm read nothing?" >>"$tmp/log"
"$IAP_TEST_SRCDIR/tools/header-functions" "$IAP_TEST_SRCDIR"/host/include/iaprune/*.h |
	awk '{ print $2 }' | sort -u >"$tmp/hostfuncs"
[ "$(wc -l <"$tmp/hostfuncs")" -ge 50 ] || echo "only $(wc -l <"$tmp/hostfuncs") host functions found" >>"$tmp/log"
comm -12 "$tmp/exports" "$tmp/hostfuncs" | sed 's/^/exported host function: /' >>"$tmp/log"
grep -E '^iap_(run|cfg_|pipeline|registry_|report_|train|compact|metrics_|stats_|predict|eval_pruned|guard|lock_|generation_|heatmap)' \
	"$tmp/exports" | sed 's/^/exported host symbol: /' >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "libiaprune.so exports no host symbol"
else ok "libiaprune.so exports no host symbol"; fi

# 4. libiaprune.so exports exactly what the installed headers declare: their
#    functions (tools/header-functions; static inline ones and the entry
#    point a plugin defines, iap_plugin_descriptor, are not the library's) and
#    their extern data (the op tables, option choices). A function the
#    library's files share but no installed header declares is IAP_INTERNAL
#    (core/util/visibility.h), so the export regex '^iap_' does not reach it.
: >"$tmp/log"
"$IAP_TEST_SRCDIR/tools/header-functions" "$dest$inc"/iaprune/*.h | awk '{ print $2 }' | sort -u >"$tmp/hfuncs"
cat "$dest$inc"/iaprune/*.h |
	sed -n 's/^[ \t]*static[ \t]\{1,\}inline[^(]*[ *]\(iap_[A-Za-z0-9_]*\)[ \t]*(.*/\1/p' | sort -u >"$tmp/inline"
echo iap_plugin_descriptor | comm -23 "$tmp/hfuncs" - | comm -23 - "$tmp/inline" >"$tmp/want_funcs"
cat "$dest$inc"/iaprune/*.h |
	sed -n 's/^extern[ \t][^(;"]*[ *]\(iap_[A-Za-z0-9_]*\)[ \t]*[[;].*/\1/p' | sort -u >"$tmp/want_data"
nm -D --defined-only "$lib" 2>>"$tmp/log" | awk '$(NF-1) == "T" || $(NF-1) == "W" { print $NF }' | sort -u >"$tmp/have_funcs"
nm -D --defined-only "$lib" 2>>"$tmp/log" | awk '$(NF-1) != "T" && $(NF-1) != "W" { print $NF }' | sort -u >"$tmp/have_data"
[ "$(wc -l <"$tmp/want_funcs")" -ge 100 ] || echo "only $(wc -l <"$tmp/want_funcs") header functions found" >>"$tmp/log"
[ -s "$tmp/want_data" ] || echo "no extern data found in the installed headers" >>"$tmp/log"
comm -13 "$tmp/want_funcs" "$tmp/have_funcs" | sed 's/^/exported, in no installed header: /' >>"$tmp/log"
comm -23 "$tmp/want_funcs" "$tmp/have_funcs" | sed 's/^/declared, not exported: /' >>"$tmp/log"
comm -13 "$tmp/want_data" "$tmp/have_data" | sed 's/^/data exported, in no installed header: /' >>"$tmp/log"
comm -23 "$tmp/want_data" "$tmp/have_data" | sed 's/^/data declared, not exported: /' >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "libiaprune.so exports exactly the installed headers' functions and data"
else ok "libiaprune.so exports exactly the installed headers' $(wc -l <"$tmp/have_funcs") functions and $(wc -l <"$tmp/have_data") data symbols"; fi

# 5. pkg-config, from the staged iaprune.pc with its prefix moved into
#    DESTDIR, points into DESTDIR and names libiaprune alone (the libraries
#    it links are Requires.private).
# (PKG_CONFIG_PATH comes before the system's folders, which still hold
# the .pc files of the Requires.private libraries.)
PKG_CONFIG_PATH=${pc%/*}
export PKG_CONFIG_PATH
pkgconf="pkg-config --define-variable=prefix=$dest$prefix"
cflags=$($pkgconf --cflags iaprune 2>"$tmp/log")
libs=$($pkgconf --libs iaprune 2>>"$tmp/log")
# pkg-config adds the Cflags of the Requires.private packages (openblas,
# libpng) after iaprune's own; none may point into the source or build tree.
first=${cflags%% *}
case " $cflags $libs " in
*" -I$IAP_TEST_SRCDIR"* | *" -I$IAP_TEST_BUILDDIR"* | *" -L$IAP_TEST_BUILDDIR"*) first="(tree)" ;;
esac
if [ "$first" = "-I$dest$inc" ] && [ "$(echo $libs)" = "-L${lib%/*} -liaprune" ]; then
	ok "pkg-config --cflags --libs iaprune: DESTDIR's SDK only ($cflags $libs)"
else
	not_ok "pkg-config --cflags --libs iaprune: DESTDIR's SDK only ($cflags $libs)"
fi

# 6. Build the example out of tree with its own Makefile: the compiler sees
#    what pkg-config gives and nothing of the source or build tree.
cp -R "$IAP_TEST_SRCDIR/examples/sampler-stride" "$tmp/ex" && chmod -R u+w "$tmp/ex"
if env -u CPATH -u C_INCLUDE_PATH -u LIBRARY_PATH $MAKE -C "$tmp/ex" PKG_CONFIG="$pkgconf" \
	CFLAGS="-O2 -Werror" >"$tmp/log" 2>&1 && [ -f "$tmp/ex/stride.so" ]; then
	ok "the example builds against the installed headers via pkg-config"
else
	not_ok "the example builds against the installed headers via pkg-config"; skip_rest "skipped: build failed"
fi

# 7. Exactly one exported function: the entry point.
syms=$(nm -D --defined-only "$tmp/ex/stride.so" 2>/dev/null | awk '$2 == "T" { print $3 }')
if [ "$syms" = iap_plugin_descriptor ]; then ok "the example exports only iap_plugin_descriptor"
else echo "# exported: $syms"; not_ok "the example exports only iap_plugin_descriptor"; fi

# 8. What it calls of iaprune, libiaprune.so (the installed SDK) defines.
: >"$tmp/log"
readelf -d "$tmp/ex/stride.so" 2>>"$tmp/log" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' >"$tmp/needed"
grep -q '^libiaprune\.so' "$tmp/needed" || echo "stride.so does not need libiaprune.so: $(cat "$tmp/needed")" >>"$tmp/log"
nm -D --undefined-only "$tmp/ex/stride.so" 2>>"$tmp/log" | awk '$NF ~ /^iap_/ { print $NF }' | sort -u >"$tmp/calls"
[ -s "$tmp/calls" ] || echo "stride.so calls no iap_ function: nm read nothing?" >>"$tmp/log"
comm -23 "$tmp/calls" "$tmp/exports" | sed 's/^/not in libiaprune.so: /' >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "the example's iaprune calls resolve in the installed libiaprune.so"
else ok "the example's iaprune calls resolve in the installed libiaprune.so ($(echo $(cat "$tmp/calls")))"; fi

# 9. Loaded with --plugin-path and described.
if "$IAPRUNE" --plugin-path "$tmp/ex" plugins --describe sampler/stride >"$tmp/log" 2>&1 &&
	grep -qx 'sampler stride: every stride-th sample until k per class (example plugin)' "$tmp/log" &&
	grep -qF '  stride (int, range [1, 1e+06], default 3)' "$tmp/log"; then
	ok "iaprune --plugin-path loads and describes the example"
else not_ok "iaprune --plugin-path loads and describes the example"; fi

# 10. Its options are validated in a pipeline like any other plugin's (the
#    other kinds come from the build tree's test plugins).
cat >"$tmp/p.yaml" <<'YAML'
version: 1
dataset: {plugin: test-data}
model: {plugin: test-mlp}
sampling:
  - plugin: stride
    options: {strid: 2}
attribution:
  - {plugin: test-grad, options: {steps: 4}}
pruning: {policy: test-lowest}
YAML
IAPRUNE_PLUGIN_PATH="$IAP_TEST_BUILDDIR/tests/plugins/.libs" \
	"$IAPRUNE" --plugin-path "$tmp/ex" run "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/log"
status=$?
want="iaprune: $tmp/p.yaml:6:15: sampler 'stride': unknown option 'strid' (known: stride, offset)"
if [ "$status" -eq 2 ] && [ "$(cat "$tmp/log")" = "$want" ]; then
	ok "the example's options are validated from a pipeline (exit 2, file:line:col)"
else
	echo "# status $status"; not_ok "the example's options are validated from a pipeline (exit 2, file:line:col)"
fi

[ "$failed" -eq 0 ]
