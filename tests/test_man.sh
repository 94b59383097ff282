#!/bin/sh
# Man pages: each page lints clean (mandoc -Tlint and groff -mandoc -ww -z,
# whichever are installed), renders no word as a flag it is not, every
# installed header has an installed page and every function it declares is
# in that page's NAME and SYNOPSIS with a link page that man follows, the
# host's (uninstalled) pages stay out of what is installed,
# cross-references to iaprune's own pages resolve, and
# the pages stay in step with the code: every pipeline key the validator
# knows is documented in iaprune-pipeline(5), every command in iaprune(1),
# and every option of every plugin built in the tree in iaprune-plugins(7)
# with its type, choices and default. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
: "${MANDOC:=$(command -v mandoc || true)}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
man="$IAP_TEST_SRCDIR/man"
# Every page of the manual (a new page is linted without being listed here).
pages=$(cd "$man" && ls *.1 *.3 *.5 *.7)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-man.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$tmp/log"; }

set -- $pages
echo "1..$(($# + 8))"

for p in $pages; do
	: >"$tmp/log"
	if [ -n "$MANDOC" ]; then
		"$MANDOC" -Tlint -Wstyle "$man/$p" >"$tmp/raw" 2>&1
		# System pages (dlopen(3) ...) may be missing or unindexed here; ours must exist.
		while IFS= read -r line; do
			case "$line" in
			*"mandoc.db"*) ;;
			*"referenced manual not found: Xr "*)
				ref=${line##*Xr }
				ref=${ref% (*}
				name=${ref% *} sec=${ref#* }
				case "$name" in
				iap*) [ -f "$man/$name.$sec" ] || echo "$line" >>"$tmp/log" ;;
				esac ;;
			*) echo "$line" >>"$tmp/log" ;;
			esac
		done <"$tmp/raw"
	fi
	# groff as man-db renders the page, every warning on (both linters when both are here).
	if command -v groff >/dev/null 2>&1; then
		groff -mandoc -ww -z "$man/$p" >>"$tmp/log" 2>&1
	fi
	if [ -s "$tmp/log" ]; then not_ok "$p lints clean"; else ok "$p lints clean"; fi
done

# Every key of a complete pipeline (defaults filled in by the validator) is an ".It Ic key" item.
cat >"$tmp/p.yaml" <<'YAML'
version: 1
dataset: {plugin: test-data}
model: {plugin: test-mlp}
sampling: [{plugin: test-first, name: s}]
attribution: [{plugin: test-grad, name: a, options: {steps: 1}}]
pruning: {policy: test-lowest}
YAML
: >"$tmp/log"
if IAPRUNE_PLUGIN_PATH="$IAP_TEST_BUILDDIR/tests/plugins/.libs" IAPRUNE_PLUGIN_SYSTEM_PATH= \
	"$IAPRUNE" run --dry-run "$tmp/p.yaml" >"$tmp/dump" 2>"$tmp/log"; then
	# Keys are the words before ':' at the start of a (possibly "- ") line.
	# (steps is test-grad's own option, documented by the plugin, not the format.)
	sed -n 's/^[ -]*\([a-z_]*\):.*/\1/p' "$tmp/dump" | grep -vx steps | sort -u >"$tmp/keys"
	for k in $(cat "$tmp/keys"); do
		grep -q "^\.It Ic $k " "$man/iaprune-pipeline.5" || echo "undocumented key: $k" >>"$tmp/log"
	done
	[ "$(wc -l <"$tmp/keys")" -ge 30 ] || echo "only $(wc -l <"$tmp/keys") keys found" >>"$tmp/log"
fi
if [ -s "$tmp/log" ]; then not_ok "every pipeline key is documented in iaprune-pipeline(5)"
else ok "every pipeline key is documented in iaprune-pipeline(5)"; fi

: >"$tmp/log"
# "  name  summary" lines; a name as long as the column has one space after it.
"$IAPRUNE" --help | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p' >"$tmp/cmds"
for c in $(cat "$tmp/cmds"); do
	grep -q "Cm $c\b" "$man/iaprune.1" || echo "undocumented command: $c" >>"$tmp/log"
done
[ "$(wc -l <"$tmp/cmds")" -eq 8 ] || echo "expected 8 commands in --help" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "every command is documented in iaprune(1)"
else ok "every command is documented in iaprune(1)"; fi

# Every shipped plugin (the build tree's plugins/*/.libs only: test plugins
# are not shipped) has a ".Ss name" subsection in its kind's section of
# iaprune-plugins(7), and each option "iaprune plugins --describe" prints is
# an ".It Ic option" item there (or in the section's "Common options"),
# whose .It line shows the type (or every choice of an enum) and whose text
# gives the default as ".Li value" (or says "Default: empty").
: >"$tmp/log"
: >"$tmp/notes"
page="$man/iaprune-plugins.7"
shipped=
for d in "$IAP_TEST_BUILDDIR"/plugins/*/.libs; do
	[ -d "$d" ] && shipped="$shipped${shipped:+:}$d"
done
section_of() {
	case "$1" in
	model) echo "MODELS" ;;
	attribution) echo "ATTRIBUTION METHODS" ;;
	sampler) echo "SAMPLERS" ;;
	policy) echo "POLICIES" ;;
	dataset) echo "DATASETS" ;;
	*) echo "?" ;;
	esac
}
# subsection SECTION SUBSECTION: the lines of that .Ss inside that .Sh.
subsection() {
	awk -v sh="$1" -v ss="$2" '
		/^\.Sh / { insh = (substr($0, 5) == sh); inss = 0; next }
		/^\.Ss / { inss = insh && (substr($0, 5) == ss); next }
		inss' "$page"
}
# item OPTION FILE: an ".It Ic OPTION" item up to the next ".It Ic".
item() {
	awk -v o="$1" '
		/^\.It Ic / { if (inb) exit; if ($3 == o) inb = 1 }
		inb' "$2"
}
if [ -z "$shipped" ]; then
	echo "no plugins built under $IAP_TEST_BUILDDIR/plugins" >>"$tmp/log"
elif ! IAPRUNE_PLUGIN_PATH="$shipped" IAPRUNE_PLUGIN_SYSTEM_PATH= \
	"$IAPRUNE" plugins >"$tmp/list" 2>>"$tmp/log"; then
	echo "iaprune plugins failed" >>"$tmp/log"
else
	# "kind:" lines, then "  name  version  summary" lines.
	awk '/^[a-z]+:$/ { k = substr($0, 1, length($0) - 1); next }
	     /^  [a-z0-9]/ && $1 != "(none)" { print k "/" $1 }' "$tmp/list" >"$tmp/plugins"
	[ -s "$tmp/plugins" ] || echo "no shipped plugin found in $shipped" >>"$tmp/log"
	for kn in $(cat "$tmp/plugins"); do
		kind=${kn%%/*} name=${kn#*/}
		sec=$(section_of "$kind")
		subsection "$sec" "$name" >"$tmp/ss"
		subsection "$sec" "Common options" >"$tmp/common"
		if [ ! -s "$tmp/ss" ]; then
			echo "$kn: no .Ss $name in section $sec" >>"$tmp/log"
			continue
		fi
		if ! IAPRUNE_PLUGIN_PATH="$shipped" IAPRUNE_PLUGIN_SYSTEM_PATH= \
			"$IAPRUNE" plugins --describe "$kn" >"$tmp/desc" 2>>"$tmp/log"; then
			echo "$kn: --describe failed" >>"$tmp/log"
			continue
		fi
		# "  name (type[: a | b][, range [x, y]], default v)" or "..., required)".
		sed -n 's/^  \([a-z0-9_]*\) (\(.*\))$/\1 \2/p' "$tmp/desc" >"$tmp/opts"
		seen=" "
		while read -r opt rest; do
			# A name declared twice (attribution/random's own seed and the
			# common one) can only ever set its first declaration: that is
			# the one documented; the shadowed one is noted, not checked.
			case "$seen" in
			*" $opt "*)
				echo "# note: $kn declares option '$opt' twice; only the first is reachable" >>"$tmp/notes"
				continue ;;
			esac
			seen="$seen$opt "
			item "$opt" "$tmp/ss" >"$tmp/item"
			[ -s "$tmp/item" ] || item "$opt" "$tmp/common" >"$tmp/item"
			if [ ! -s "$tmp/item" ]; then
				echo "$kn: option '$opt' is not documented" >>"$tmp/log"
				continue
			fi
			head -n 1 "$tmp/item" >"$tmp/itline"
			type=${rest%%[:,]*}
			case "$type" in
			int) want="Ar integer" ;;
			float) want="Ar number" ;;
			bool) want="Ar boolean" ;;
			string) want="Ar string" ;;
			*) want= ;;
			esac
			if [ -n "$want" ] && ! grep -q " $want\( \|\$\)" "$tmp/itline"; then
				echo "$kn: option '$opt' ($type) is not shown as '$want'" >>"$tmp/log"
			fi
			if [ "$type" = enum ]; then
				choices=${rest#enum: }
				choices=${choices%%, default *}
				choices=${choices%%, required}
				for ch in $(echo "$choices" | sed 's/ | / /g'); do
					grep -q " $ch\( \|\$\)" "$tmp/itline" ||
						echo "$kn: option '$opt': choice '$ch' missing from its .It line" >>"$tmp/log"
				done
			fi
			case "$rest" in
			*", default \"\"")
				grep -q "Default: empty" "$tmp/item" ||
					echo "$kn: option '$opt': default (empty) not given" >>"$tmp/log" ;;
			*", default "*)
				def=${rest##*, default }
				grep -Fxq ".Li $def ." "$tmp/item" || grep -Fxq ".Li $def" "$tmp/item" ||
					echo "$kn: option '$opt': default '$def' not given as '.Li $def'" >>"$tmp/log" ;;
			esac
		done <"$tmp/opts"
	done
fi
[ -s "$tmp/notes" ] && cat "$tmp/notes"
if [ -s "$tmp/log" ]; then not_ok "every shipped plugin option is documented in iaprune-plugins(7)"
else ok "every shipped plugin option is documented in iaprune-plugins(7)"; fi

# Rendered as a reader sees them, the pages show only real flags: every
# "-word" is an option iaprune takes (from each command's --help) or a
# compiler, linker or pkg-config flag of iaprune-plugin(7)'s build recipe;
# a macro that swallows the text after it ("Fl -attribution ; the first")
# prints "-the -first" and fails here.
: >"$tmp/log"
{
	"$IAPRUNE" --help
	for c in $(cat "$tmp/cmds"); do "$IAPRUNE" "$c" --help; done
} 2>/dev/null | grep -oE -- '(^|[ [(|])--?[a-zA-Z][a-zA-Z-]*' | sed 's/^[ [(|]*//' >"$tmp/allowed"
# -h and -V: the short forms of --help and --version, which --help spells out only;
# --threads: the long form of -j; iaprune(1)'s MPI section quotes configure's and mpirun's own.
printf '%s\n' -h -V --threads -fPIC -shared -std -fvisibility -Wl -module -avoid-version -no-undefined \
	-export-symbols-regex --cflags --libs -degrees --with-mpi -np --hostfile --allow-run-as-root >>"$tmp/allowed"
renderers=
command -v groff >/dev/null 2>&1 && renderers="groff"
[ -n "$MANDOC" ] && renderers="$renderers mandoc"
for r in $renderers; do
	for p in $pages; do
		case $r in
		groff) groff -mandoc -Tutf8 "$man/$p" 2>/dev/null ;;
		mandoc) "$MANDOC" -Tutf8 "$man/$p" 2>/dev/null ;;
		esac | sed 's/.\x08//g; s/\xe2\x80\x90/-/g' | grep -oE -- '(^|[ [(])--?[a-zA-Z][a-zA-Z_-]*' |
			sed 's/^[ [(]*//' | sort -u | while read -r tok; do
				grep -qxF -- "$tok" "$tmp/allowed" || echo "$p ($r): '$tok' is not a flag" >>"$tmp/log"
			done
	done
done
[ -n "$renderers" ] || echo "# no groff or mandoc to render with"
if [ -s "$tmp/log" ]; then not_ok "rendered pages show no word as a flag (option lists intact)"
else ok "rendered pages show no word as a flag (option lists intact)"; fi

# The SDK's manual. What make installs comes from the Makefile (the
# environment); run by hand, the headers are include/iaprune/*.h and the
# installed pages those that include only such headers.
if [ -n "${IAP_INSTALLED_HEADERS:-}" ]; then
	headers=
	for h in $IAP_INSTALLED_HEADERS; do headers="$headers $IAP_TEST_SRCDIR/$h"; done
else
	headers=$(echo "$IAP_TEST_SRCDIR"/include/iaprune/*.h)
fi
if [ -n "${IAP_INSTALLED_MANS:-}" ]; then
	installed=
	for p in $IAP_INSTALLED_MANS; do installed="$installed ${p##*/}"; done
else
	installed=
	for p in $pages; do
		keep=1
		for h in $(sed -n 's|^\.In iaprune/\([^ ]*\).*|\1|p' "$man/$p"); do
			[ -f "$IAP_TEST_SRCDIR/include/iaprune/$h" ] || keep=0
		done
		[ "$keep" -eq 1 ] && installed="$installed $p"
	done
fi
is_installed() { case " $installed " in *" $1 "*) return 0 ;; esac; return 1; }
# synopsis PAGE: its SYNOPSIS section.
synopsis() { awk '/^\.Sh / { on = ($2 == "SYNOPSIS"); next } on' "$man/$1"; }

# Every installed header is the ".In" of an installed section-3 page.
: >"$tmp/log"
for h in $headers; do
	h=${h##*/} found=
	for p in $installed; do
		case $p in *.3) synopsis "$p" | grep -qx ".In iaprune/$h" && found=$p ;; esac
	done
	[ -n "$found" ] || echo "no installed page has .In iaprune/$h" >>"$tmp/log"
	# iaprune-plugin(7) lists the SDK's headers ("The SDK").
	awk '/^\.Ss / { on = (substr($0, 5) == "The SDK"); next } /^\.S[hs] / { on = 0 } on' \
		"$man/iaprune-plugin.7" | grep -q "In iaprune/$h\( \|\$\)" ||
		echo "iaprune-plugin.7's The SDK does not list iaprune/$h" >>"$tmp/log"
done
if [ -s "$tmp/log" ]; then not_ok "every installed header has an installed page and is listed in iaprune-plugin(7)"
else ok "every installed header has an installed page and is listed in iaprune-plugin(7)"; fi

# Every function an installed header declares (tools/header-functions) is
# a ".Nm" of exactly one installed page, whose SYNOPSIS has that header's
# ".In" and the function's ".Fn" or ".Fo": its NAME and SYNOPSIS show it,
# and make install gives it a link page (tools/man-aliases).
: >"$tmp/log"
"$IAP_TEST_SRCDIR/tools/header-functions" $headers >"$tmp/funcs" 2>>"$tmp/log"
for p in $installed; do
	case $p in *.3) sed -n "s/^\.Nm \([A-Za-z_][A-Za-z_0-9]*\).*/\1 $p/p" "$man/$p" ;; esac
done >"$tmp/names"
while read -r h f; do
	where=$(awk -v f="$f" '$1 == f { print $2 }' "$tmp/names")
	case $where in
	"") echo "$f ($h): no installed page names it (.Nm)" >>"$tmp/log"; continue ;;
	*" "*) echo "$f ($h): named by more than one page: $where" >>"$tmp/log"; continue ;;
	esac
	synopsis "$where" >"$tmp/syn"
	grep -qx ".In iaprune/$h" "$tmp/syn" || echo "$f: $where has no .In iaprune/$h" >>"$tmp/log"
	grep -qE "^\.(Fn|Fo) $f( |\$)" "$tmp/syn" || echo "$f: not in the SYNOPSIS of $where" >>"$tmp/log"
done <"$tmp/funcs"
[ "$(wc -l <"$tmp/funcs")" -ge 150 ] || echo "only $(wc -l <"$tmp/funcs") functions found in the headers" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "every function of an installed header is in an installed page's NAME and SYNOPSIS"
else ok "every function of an installed header is in an installed page's NAME and SYNOPSIS"; fi

# Installed pages document installed headers only, and refer only to
# installed pages of iaprune's (a host page is developer documentation).
: >"$tmp/log"
for p in $installed; do
	for h in $(sed -n 's|^\.In iaprune/\([^ ]*\).*|\1|p' "$man/$p"); do
		case " $headers " in
		*"/include/iaprune/$h "*) ;;
		*) echo "$p: .In iaprune/$h is not an installed header" >>"$tmp/log" ;;
		esac
	done
	sed -n 's/^\.Xr \(iap[A-Za-z_0-9-]*\) \([0-9]\).*/\1.\2/p' "$man/$p" | while read -r ref; do
		is_installed "$ref" || echo "$p: refers to $ref, which is not installed" >>"$tmp/log"
	done
done
for p in $pages; do
	case $p in *.3) ;; *) continue ;; esac
	is_installed "$p" && continue
	for h in $(sed -n 's|^\.In iaprune/\([^ ]*\).*|\1|p' "$man/$p"); do
		case " $headers " in
		*"/include/iaprune/$h "*) echo "$p documents installed $h but is not installed" >>"$tmp/log" ;;
		esac
	done
done
if [ -s "$tmp/log" ]; then not_ok "installed pages cover installed headers only and refer to installed pages"
else ok "installed pages cover installed headers only and refer to installed pages"; fi

# "man iap_x": the link pages make install writes lead every function to
# its page, as mandoc and groff's soelim (man-db) resolve ".so man3/...".
: >"$tmp/log"
mkdir -p "$tmp/root/man3"
for p in $installed; do case $p in *.3) cp "$man/$p" "$tmp/root/man3/" ;; esac; done
(cd "$IAP_TEST_SRCDIR" && sh tools/man-aliases install "$tmp/root/man3" . $(for p in $installed; do echo "man/$p"; done)) \
	>>"$tmp/log" 2>&1 || echo "tools/man-aliases install failed" >>"$tmp/log"
while read -r h f; do
	page=$(awk -v f="$f" '$1 == f { print $2; exit }' "$tmp/names")
	[ -n "$page" ] || continue
	[ -f "$tmp/root/man3/$f.3" ] || { echo "no man3/$f.3 installed" >>"$tmp/log"; continue; }
	title=$(sed -n 's/^\.Dt \([^ ]*\) 3.*/\1(3)/p' "$man/$page")
	for r in $renderers; do
		case $r in
		groff) (cd "$tmp/root" && groff -s -mandoc -Tutf8 "man3/$f.3" 2>/dev/null) ;;
		mandoc) (cd "$tmp/root" && "$MANDOC" -Tutf8 "man3/$f.3" 2>/dev/null) ;;
		esac | sed 's/.\x08//g' >"$tmp/shown"
		grep -qF "$title" "$tmp/shown" && grep -qw -- "$f" "$tmp/shown" ||
			echo "man3/$f.3 ($r) does not show $page" >>"$tmp/log"
	done
done <"$tmp/funcs"
(cd "$IAP_TEST_SRCDIR" && sh tools/man-aliases uninstall "$tmp/root/man3" . $(for p in $installed; do echo "man/$p"; done))
left=$(cd "$tmp/root/man3" && ls | wc -l)
[ "$left" -eq "$(echo $installed | tr ' ' '\n' | grep -c '\.3$')" ] ||
	echo "uninstall left $left files in man3" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "man FUNCTION opens the function's page (link pages, mandoc and groff)"
else ok "man FUNCTION opens the function's page (link pages, mandoc and groff)"; fi

[ "$failed" -eq 0 ]
