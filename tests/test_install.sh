#!/bin/sh
# make install, then run what was installed: a full install into a
# temporary DESTDIR, whose iaprune (with LD_LIBRARY_PATH to the staged
# library, as for any install the loader does not search) lists the
# installed plugins without a warning and validates the installed default
# pipeline. Then the ldconfig hook's decisions, with stand-ins for id and
# ldconfig on PATH: it runs ldconfig only for a real (no DESTDIR) install,
# as root, into a directory the loader searches. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
: "${MAKE:=make}"
unset IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-install.XXXXXX") || exit 1
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
dest=$tmp/dest

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	[ -f "$tmp/log" ] && tail -n 20 "$tmp/log" | sed 's/^/# /'
}
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }

echo "1..12"

# Where make install puts things (the configured directories, under DESTDIR).
var() { sed -n "s|^$1 = ||p" "$IAP_TEST_BUILDDIR/Makefile" | head -n 1; }
prefix=$(var prefix)
exec_prefix=$(var exec_prefix)
datarootdir=$(var datarootdir)
# The Makefile's ${prefix}-style references, expanded as make would.
expand() {
	v=$1
	for _ in 1 2 3; do
		v=$(printf '%s\n' "$v" | sed -e "s|\${exec_prefix}|$exec_prefix|g" -e "s|\${prefix}|$prefix|g" \
			-e "s|\${datarootdir}|$datarootdir|g")
	done
	printf '%s\n' "$v"
}
bindir=$(expand "$(var bindir)")
libdir=$(expand "$(var libdir)")
sysconfdir=$(expand "$(var sysconfdir)")
mandir=$(expand "$(expand "$(var mandir)")")
includedir=$(expand "$(var includedir)")
docdir=$(expand "$(expand "$(var docdir)" | sed "s|\${PACKAGE_TARNAME}|$(var PACKAGE_TARNAME)|")")
plugindir=$libdir/iaprune/plugins

(cd "$IAP_TEST_BUILDDIR" && $MAKE install DESTDIR="$dest") >"$tmp/log" 2>&1
check "make install DESTDIR=... succeeds" "[ \$? -eq 0 ] && [ -x '$dest$bindir/iaprune' ]"
check "the ldconfig hook stays quiet for a staged install" "! grep -q '^ldconfig:' $tmp/log"

LD_LIBRARY_PATH=$dest$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} IAPRUNE_PLUGIN_SYSTEM_PATH=$dest$plugindir \
	"$dest$bindir/iaprune" plugins >"$tmp/log" 2>"$tmp/err"
rc=$?
cat "$tmp/err" >>"$tmp/log"
check "the installed iaprune runs and lists the installed plugins, no warnings" \
	"[ $rc -eq 0 ] && grep -q '^  vgg ' $tmp/log && grep -q '^  medmnist ' $tmp/log && [ ! -s $tmp/err ]"
LD_LIBRARY_PATH=$dest$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} IAPRUNE_PLUGIN_SYSTEM_PATH=$dest$plugindir \
	"$dest$bindir/iaprune" run --dry-run "$dest$sysconfdir/iaprune/default.yaml" >"$tmp/log" 2>&1
check "the installed default pipeline validates" "[ \$? -eq 0 ] && grep -q '^  plugin: vgg' $tmp/log"
LD_LIBRARY_PATH=$dest$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} IAPRUNE_PLUGIN_SYSTEM_PATH=$dest$plugindir \
	"$dest$bindir/iaprune" info >"$tmp/log" 2>&1
check "the installed iaprune does not take the build tree's plugins" "! grep -q 'build tree' $tmp/log"

# The manual as installed: an alias for every function a section-3 page names, a page for every header.
: >"$tmp/log"
m3=$dest$mandir/man3
for page in "$m3"/*.3; do
	grep -q '^\.so ' "$page" && continue
	for name in $(sed -n 's/^\.Nm \([a-z_0-9]*\).*/\1/p' "$page"); do
		[ "$m3/$name.3" = "$page" ] && continue
		grep -qx ".so man3/${page##*/}" "$m3/$name.3" 2>/dev/null || echo "no alias $name.3 -> ${page##*/}" >>"$tmp/log"
	done
done
check "every function a section-3 page names has an alias page" "[ ! -s $tmp/log ] && [ -f $m3/iap_graph_forward.3 ]"
: >"$tmp/log"
for h in "$dest$includedir"/iaprune/*.h; do
	h=${h##*/}
	grep -lqx ".In iaprune/$h" "$m3"/*.3 2>/dev/null || echo "no page has .In iaprune/$h" >>"$tmp/log"
done
check "every installed header has a page ($(ls "$dest$includedir"/iaprune/*.h | wc -l) headers)" "[ ! -s $tmp/log ]"
if command -v man >/dev/null 2>&1; then
	MANPATH=$dest$mandir MANWIDTH=80 man -P cat iap_graph_forward >"$tmp/log" 2>&1
	check "man iap_graph_forward opens iap_graph(3)" "grep -q 'IAP_GRAPH(3)' $tmp/log"
else
	ok "man iap_graph_forward opens iap_graph(3) # SKIP no man here"
fi
check "the example plugin is installed under docdir" \
	"[ -s '$dest$docdir/examples/sampler-stride/stride.c' ] && [ -s '$dest$docdir/examples/sampler-stride/Makefile' ]"

# The hook's decisions, with id and ldconfig stand-ins (the real ones never run here).
mkdir "$tmp/bin"
cat >"$tmp/bin/id" <<SH
#!/bin/sh
echo "\${FAKE_UID:-0}"
SH
cat >"$tmp/bin/ldconfig" <<SH
#!/bin/sh
if [ "\$*" = "-v -N -X" ]; then
	printf '/opt/searched/lib: (from /etc/ld.so.conf.d/x.conf:1)\n\tlibfoo.so.1 -> libfoo.so.1.0\n/lib: (from <builtin>:0)\n'
	exit 0
fi
echo "ran \$*" >>"$tmp/ldconfig.calls"
SH
chmod +x "$tmp/bin/id" "$tmp/bin/ldconfig"
hook() { (PATH=$tmp/bin:$PATH; export PATH; "$@") >>"$tmp/log" 2>&1; }
: >"$tmp/log"
rm -f "$tmp/ldconfig.calls"
hook env DESTDIR= FAKE_UID=0 sh "$IAP_TEST_SRCDIR/tools/ldconfig-hook" /opt/searched/lib
check "root, no DESTDIR, a searched libdir: ldconfig runs" "[ \"\$(cat $tmp/ldconfig.calls 2>/dev/null)\" = 'ran ' ]"
rm -f "$tmp/ldconfig.calls"
hook env DESTDIR= FAKE_UID=0 sh "$IAP_TEST_SRCDIR/tools/ldconfig-hook" /home/me/.local/lib
hook env DESTDIR= FAKE_UID=1000 sh "$IAP_TEST_SRCDIR/tools/ldconfig-hook" /opt/searched/lib
check "a libdir the loader does not search, or not root: no ldconfig" "[ ! -e $tmp/ldconfig.calls ]"
: >"$tmp/log"
hook env DESTDIR=/tmp/stage FAKE_UID=0 sh "$IAP_TEST_SRCDIR/tools/ldconfig-hook" /opt/searched/lib
check "a staged install (DESTDIR): no ldconfig, nothing printed" "[ ! -e $tmp/ldconfig.calls ] && [ ! -s $tmp/log ]"

[ "$failed" -eq 0 ]
