/*
 * Plugin discovery and loading: the happy path on the build tree's test
 * plugins, search order, and every failure mode with its exact message,
 * each from a real shared object built in tests/plugins/bad/ and linked
 * into a scratch directory of its own. Also the option values plugins read.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/plugin.h>
#include <iaprune/registry.h>

static char builddir[512];
static char scratch[512];

/* ---- helpers ------------------------------------------------------------- */

static void cleanup_scratch(void)
{
	char cmd[8300];

	if (!scratch[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
	assert_int_equal(system(cmd), 0);
	scratch[0] = '\0';
}

/* A fresh empty scratch directory; the search path is emptied so only what a test adds is seen. */
static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	snprintf(scratch, sizeof(scratch), "%s/iap-plugin-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(scratch))
		return -1;
	setenv(IAP_PLUGIN_PATH_ENV, "", 1);
	setenv(IAP_PLUGIN_SYSTEM_PATH_ENV, "", 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cleanup_scratch();
	return 0;
}

/* Path of a built test plugin: sub is "" (good ones) or "bad/". */
static void built(char *buf, size_t len, const char *sub, const char *name)
{
	snprintf(buf, len, "%s/tests/plugins/%s.libs/%s.so", builddir, sub, name);
}

/* Symlink built plugin sub/name into dir as link_name; returns the link path in out. */
static void link_plugin(const char *dir, const char *sub, const char *name, const char *link_name,
			char *out, size_t len)
{
	char src[4096];

	built(src, sizeof(src), sub, name);
	snprintf(out, len, "%s/%s", dir, link_name);
	assert_int_equal(access(src, R_OK), 0);
	assert_int_equal(symlink(src, out), 0);
}

/* Scan a registry whose only directory is the scratch one. */
static struct iap_registry *scan_scratch(void)
{
	struct iap_error err = { 0, "" };
	struct iap_registry *reg = iap_registry_new(&err);

	assert_non_null(reg);
	assert_int_equal(iap_registry_add_dir(reg, scratch, &err), IAP_OK);
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	return reg;
}

/* The scratch directory holds exactly one bad plugin: it is skipped with exactly this message. */
static void expect_single_diag(const char *link_name, const char *fmt_reason, int code)
{
	char path[4096], want[8300];
	struct iap_registry *reg = scan_scratch();
	const struct iap_plugin_diag *d;

	snprintf(path, sizeof(path), "%s/%s", scratch, link_name);
	snprintf(want, sizeof(want), fmt_reason, path);
	assert_int_equal(iap_registry_count(reg), 0);
	assert_int_equal(iap_registry_diag_count(reg), 1);
	d = iap_registry_diag(reg, 0);
	assert_string_equal(d->path, path);
	assert_string_equal(d->msg, want);
	assert_int_equal(d->code, code);
	iap_registry_free(reg);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_kind_names(void **state)
{
	(void)state;
	assert_string_equal(iap_plugin_kind_name(IAP_PLUGIN_MODEL), "model");
	assert_string_equal(iap_plugin_kind_name(IAP_PLUGIN_DATASET), "dataset");
	assert_null(iap_plugin_kind_name(IAP_PLUGIN_KIND_COUNT));
	assert_null(iap_plugin_kind_name(-1));
	assert_int_equal(iap_plugin_kind_parse("attribution"), IAP_PLUGIN_ATTRIBUTION);
	assert_int_equal(iap_plugin_kind_parse("policy"), IAP_PLUGIN_POLICY);
	assert_int_equal(iap_plugin_kind_parse("models"), -1);
	assert_string_equal(iap_split_name(IAP_SPLIT_VAL), "val");
	assert_string_equal(iap_opt_type_name(IAP_OPT_ENUM), "enum");
}

/* The environment path as make check sets it: both good test plugins, init run once, fini at free. */
static void test_happy_path(void **state)
{
	char dir[4096], life[4200], buf[64] = "";
	struct iap_error err = { 0, "" };
	const struct iap_plugin *p;
	struct iap_registry *reg;
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/tests/plugins/.libs", builddir);
	setenv(IAP_PLUGIN_PATH_ENV, dir, 1);
	snprintf(life, sizeof(life), "%s/lifecycle", scratch);
	setenv("IAP_TEST_LIFECYCLE", life, 1);

	reg = iap_registry_new(&err);
	assert_non_null(reg);
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	assert_int_equal(iap_registry_diag_count(reg), 0);
	assert_int_equal(iap_registry_count(reg), 5);

	p = iap_registry_find(reg, IAP_PLUGIN_SAMPLER, "test-first");
	assert_non_null(p);
	assert_int_equal(p->desc->abi_major, IAP_PLUGIN_ABI_MAJOR);
	assert_string_equal(p->desc->version, "1.0");
	assert_string_equal(p->desc->license, "MIT");
	assert_non_null(p->desc->ops.sampler->select);
	assert_non_null(strstr(p->path, "/tests/plugins/.libs/test_sampler.so"));

	p = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, "test-grad");
	assert_non_null(p);
	assert_ptr_equal(p->desc->ops.attribution->ruleset(NULL), iap_ruleset_gradient());
	/* Kinds are separate name spaces. */
	assert_null(iap_registry_find(reg, IAP_PLUGIN_SAMPLER, "test-grad"));
	assert_null(iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, "nope"));

	f = fopen(life, "r");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 5);
	fclose(f);
	assert_string_equal(buf, "init\n");

	iap_registry_free(reg);
	f = fopen(life, "r");
	assert_non_null(f);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 10);
	fclose(f);
	assert_string_equal(buf, "init\nfini\n");
	unsetenv("IAP_TEST_LIFECYCLE");
}

static void test_wrong_major(void **state)
{
	char path[4096];
	char fmt[256];

	(void)state;
	link_plugin(scratch, "bad/", "bad_major", "major.so", path, sizeof(path));
	snprintf(fmt, sizeof(fmt),
		 "%%s: plugin ABI %d.0 is incompatible with this iaprune (ABI %d.%d): "
		 "major versions differ, rebuild the plugin",
		 IAP_PLUGIN_ABI_MAJOR + 1, IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR);
	expect_single_diag("major.so", fmt, IAP_EABI);
}

static void test_newer_minor(void **state)
{
	char path[4096];
	char fmt[256];

	(void)state;
	link_plugin(scratch, "bad/", "bad_minor", "minor.so", path, sizeof(path));
	snprintf(fmt, sizeof(fmt),
		 "%%s: plugin needs ABI %d.%d but this iaprune provides ABI %d.%d: upgrade iaprune",
		 IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR + 1, IAP_PLUGIN_ABI_MAJOR,
		 IAP_PLUGIN_ABI_MINOR);
	expect_single_diag("minor.so", fmt, IAP_EABI);
}

static void test_missing_entry(void **state)
{
	char path[4096];

	(void)state;
	link_plugin(scratch, "bad/", "bad_entry", "entry.so", path, sizeof(path));
	expect_single_diag("entry.so",
			   "%s: sampler plugin 'test-variant' lacks required entry point 'select'",
			   IAP_EFORMAT);
}

/* init runs when the plugin is first used, not at the scan; its failure is then the answer. */
static void test_init_fails(void **state)
{
	char path[4096], want[4400];
	struct iap_error err = { 0, "" };
	struct iap_registry *reg;
	const struct iap_plugin *p;

	(void)state;
	link_plugin(scratch, "bad/", "bad_init", "init.so", path, sizeof(path));
	reg = scan_scratch();
	assert_int_equal(iap_registry_count(reg), 1);
	assert_int_equal(iap_registry_diag_count(reg), 0);
	snprintf(want, sizeof(want), "%s: sampler plugin 'test-variant' failed to initialise: "
		 "cannot open /nonexistent/model.bin", path);
	assert_int_equal(iap_registry_open(reg, IAP_PLUGIN_SAMPLER, "test-variant", &p, &err), IAP_EIO);
	assert_string_equal(err.msg, want);
	assert_null(p);
	assert_int_equal(iap_registry_diag_count(reg), 1);
	assert_string_equal(iap_registry_diag(reg, 0)->msg, want);
	/* A second use gets the same answer without a second init or a second diagnostic. */
	assert_null(iap_registry_find(reg, IAP_PLUGIN_SAMPLER, "test-variant"));
	assert_int_equal(iap_registry_diag_count(reg), 1);
	iap_registry_free(reg);
}

/* The reason after the fixed text comes from dlerror(); it must be there and name the file. */
static void test_no_symbol(void **state)
{
	char path[4096], want[4300];
	struct iap_registry *reg;
	const struct iap_plugin_diag *d;

	(void)state;
	link_plugin(scratch, "bad/", "bad_nosym", "nosym.so", path, sizeof(path));
	reg = scan_scratch();
	assert_int_equal(iap_registry_count(reg), 0);
	assert_int_equal(iap_registry_diag_count(reg), 1);
	d = iap_registry_diag(reg, 0);
	snprintf(want, sizeof(want), "%s: not an iaprune plugin: no 'iap_plugin_descriptor' symbol (", path);
	assert_memory_equal(d->msg, want, strlen(want));
	assert_non_null(strstr(d->msg + strlen(want), "iap_plugin_descriptor"));
	assert_int_equal(d->msg[strlen(d->msg) - 1], ')');
	assert_int_equal(d->code, IAP_EFORMAT);
	iap_registry_free(reg);
}

static void test_not_shared_object(void **state)
{
	char path[4096], want[8400];
	struct iap_registry *reg;
	const struct iap_plugin_diag *d;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/garbage.so", scratch);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("this is a text file, not an ELF shared object\n", f);
	fclose(f);
	reg = scan_scratch();
	assert_int_equal(iap_registry_count(reg), 0);
	assert_int_equal(iap_registry_diag_count(reg), 1);
	d = iap_registry_diag(reg, 0);
	snprintf(want, sizeof(want), "%s: not an ELF shared object (no ELF header)", path);
	assert_string_equal(d->msg, want);
	assert_int_equal(d->code, IAP_EFORMAT);
	iap_registry_free(reg);
}

/* Same kind and name twice: the first in name order wins, the second is reported and skipped. */
static void test_duplicate(void **state)
{
	char first[4096], second[4096], want[8300];
	struct iap_registry *reg;
	const struct iap_plugin *p;

	(void)state;
	link_plugin(scratch, "", "test_sampler", "a_first.so", first, sizeof(first));
	link_plugin(scratch, "bad/", "bad_dup", "b_dup.so", second, sizeof(second));
	reg = scan_scratch();
	assert_int_equal(iap_registry_count(reg), 1);
	p = iap_registry_find(reg, IAP_PLUGIN_SAMPLER, "test-first");
	assert_non_null(p);
	assert_string_equal(p->path, first);
	assert_string_equal(p->desc->version, "1.0");
	assert_int_equal(iap_registry_diag_count(reg), 1);
	snprintf(want, sizeof(want),
		 "%s: duplicate sampler plugin 'test-first' (already loaded from %s); skipped", second, first);
	assert_string_equal(iap_registry_diag(reg, 0)->msg, want);
	iap_registry_free(reg);
}

/*
 * --plugin-path comes before $IAPRUNE_PLUGIN_PATH, which comes before the
 * system directory: with the same name in all three, the first wins.
 */
static void test_search_order(void **state)
{
	char cli[4200], env[4200], sys[4200], sysk[4300], p1[4400], p2[4400], p3[4400], want[9000];
	struct iap_error err = { 0, "" };
	struct iap_registry *reg;
	const struct iap_plugin *p;

	(void)state;
	snprintf(cli, sizeof(cli), "%s/cli", scratch);
	snprintf(env, sizeof(env), "%s/env", scratch);
	snprintf(sys, sizeof(sys), "%s/sys", scratch);
	snprintf(sysk, sizeof(sysk), "%s/sampler", sys);
	assert_int_equal(mkdir(cli, 0700), 0);
	assert_int_equal(mkdir(env, 0700), 0);
	assert_int_equal(mkdir(sys, 0700), 0);
	assert_int_equal(mkdir(sysk, 0700), 0);
	link_plugin(env, "", "test_sampler", "s.so", p2, sizeof(p2));
	link_plugin(sysk, "bad/", "bad_dup", "s.so", p3, sizeof(p3));
	/* Only per-kind folders of the system directory are searched. */
	link_plugin(sys, "", "test_attr", "top.so", p1, sizeof(p1));

	setenv(IAP_PLUGIN_PATH_ENV, env, 1);
	setenv(IAP_PLUGIN_SYSTEM_PATH_ENV, sys, 1);
	/* System only (plus env): env wins over system. */
	reg = iap_registry_new(&err);
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	p = iap_registry_find(reg, IAP_PLUGIN_SAMPLER, "test-first");
	assert_non_null(p);
	assert_string_equal(p->path, p2);
	assert_int_equal(iap_registry_count(reg), 1);
	assert_null(iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, "test-grad"));
	assert_int_equal(iap_registry_diag_count(reg), 1);
	/* A user folder's plugin may shadow a built-in one, but never silently. */
	snprintf(want, sizeof(want), "%s: built-in sampler plugin 'test-first' is shadowed by %s (user plugin "
		 "folders come first; rename the user plugin to use both)", p3, p2);
	assert_string_equal(iap_registry_diag(reg, 0)->msg, want);
	iap_registry_free(reg);

	/* --plugin-path wins over both. */
	link_plugin(cli, "bad/", "bad_dup", "s.so", p1, sizeof(p1));
	reg = iap_registry_new(&err);
	assert_int_equal(iap_registry_add_dir(reg, cli, &err), IAP_OK);
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	p = iap_registry_find(reg, IAP_PLUGIN_SAMPLER, "test-first");
	assert_non_null(p);
	assert_string_equal(p->path, p1);
	assert_string_equal(p->desc->version, "0.0");
	/* env's copy is a duplicate; sys's is the very file cli/ links to (same object): silent. */
	assert_int_equal(iap_registry_diag_count(reg), 1);
	assert_non_null(strstr(iap_registry_diag(reg, 0)->msg, p2));
	iap_registry_free(reg);
}

/* Directories named *.so, other suffixes, missing and repeated directories: all silent. */
static void test_ignored_entries(void **state)
{
	char path[4200], missing[4200];
	struct iap_error err = { 0, "" };
	struct iap_registry *reg;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/dir.so", scratch);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/notes.txt", scratch);
	f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	link_plugin(scratch, "", "test_sampler", "x.so.1", path, sizeof(path));
	link_plugin(scratch, "", "test_sampler", "good.so", path, sizeof(path));
	snprintf(missing, sizeof(missing), "%s/does-not-exist", scratch);

	reg = iap_registry_new(&err);
	assert_int_equal(iap_registry_add_dir(reg, missing, &err), IAP_OK);
	assert_int_equal(iap_registry_add_dir(reg, scratch, &err), IAP_OK);
	assert_int_equal(iap_registry_add_dir(reg, scratch, &err), IAP_OK);
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	assert_int_equal(iap_registry_count(reg), 1);
	assert_int_equal(iap_registry_diag_count(reg), 0);
	assert_int_equal(iap_registry_add_dir(reg, "", &err), IAP_EINVAL);
	iap_registry_free(reg);
}

/* Loading one named file reports its failure directly. */
static void test_load_file(void **state)
{
	char path[4096], want[4400];
	struct iap_error err = { 0, "" };
	struct iap_registry *reg;

	(void)state;
	reg = iap_registry_new(&err);
	built(path, sizeof(path), "bad/", "bad_major");
	assert_int_equal(iap_registry_load(reg, path, &err), IAP_EABI);
	snprintf(want, sizeof(want), "%s: plugin ABI %d.0 is incompatible", path, IAP_PLUGIN_ABI_MAJOR + 1);
	assert_memory_equal(err.msg, want, strlen(want));
	assert_int_equal(iap_registry_load(reg, scratch, &err), IAP_EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file", scratch);
	assert_string_equal(err.msg, want);
	built(path, sizeof(path), "", "test_sampler");
	assert_int_equal(iap_registry_load(reg, path, &err), IAP_OK);
	assert_int_equal(iap_registry_count(reg), 1);
	iap_registry_free(reg);
}

/* Option values as plugins read them, from defaults and from YAML text, with each refusal. */
static void test_options(void **state)
{
	char path[4096];
	struct iap_error err = { 0, "" };
	struct iap_registry *reg;
	const struct iap_plugin *p;
	struct iap_opts *o;
	const char *w = "sampler 'test-first'";

	(void)state;
	reg = iap_registry_new(&err);
	built(path, sizeof(path), "", "test_sampler");
	assert_int_equal(iap_registry_load(reg, path, &err), IAP_OK);
	p = iap_registry_get(reg, 0);
	assert_int_equal(iap_opts_defaults(p->desc->options, &o, &err), IAP_OK);
	assert_string_equal(iap_opts_str(o, "order"), "first");
	assert_int_equal(iap_opts_enum(o, "order"), 0);
	assert_int_equal(iap_opts_int(o, "stride"), 1);
	assert_true(iap_opts_float(o, "threshold") == 0.5);
	assert_int_equal(iap_opts_bool(o, "shuffle"), 0);
	assert_string_equal(iap_opts_str(o, "tag"), "");
	assert_int_equal(iap_opts_is_set(o, "stride"), 0);

	assert_int_equal(iap_opts_set(o, w, "stride", "7", &err), IAP_OK);
	assert_int_equal(iap_opts_int(o, "stride"), 7);
	assert_int_equal(iap_opts_is_set(o, "stride"), 1);
	assert_int_equal(iap_opts_set(o, w, "order", "last", &err), IAP_OK);
	assert_string_equal(iap_opts_str(o, "order"), "last");
	assert_int_equal(iap_opts_enum(o, "order"), 1);
	assert_int_equal(iap_opts_set(o, w, "shuffle", "yes", &err), IAP_OK);
	assert_int_equal(iap_opts_bool(o, "shuffle"), 1);
	assert_int_equal(iap_opts_set(o, w, "threshold", "2.5e-1", &err), IAP_OK);
	assert_true(iap_opts_float(o, "threshold") == 0.25);

	assert_int_equal(iap_opts_set(o, w, "stride", "0", &err), IAP_EINVAL);
	assert_string_equal(err.msg, "sampler 'test-first': option 'stride': 0 is out of range [1, 1000]");
	assert_int_equal(iap_opts_set(o, w, "stride", "3.5", &err), IAP_EINVAL);
	assert_string_equal(err.msg, "sampler 'test-first': option 'stride': expected an integer, got '3.5'");
	assert_int_equal(iap_opts_set(o, w, "threshold", "nan", &err), IAP_EINVAL);
	assert_string_equal(err.msg, "sampler 'test-first': option 'threshold': expected a number, got 'nan'");
	assert_int_equal(iap_opts_set(o, w, "threshold", "1.5", &err), IAP_EINVAL);
	assert_string_equal(err.msg, "sampler 'test-first': option 'threshold': 1.5 is out of range [0, 1]");
	assert_int_equal(iap_opts_set(o, w, "shuffle", "maybe", &err), IAP_EINVAL);
	assert_string_equal(err.msg, "sampler 'test-first': option 'shuffle': expected true or false, got 'maybe'");
	assert_int_equal(iap_opts_set(o, w, "order", "middle", &err), IAP_EINVAL);
	assert_string_equal(err.msg, "sampler 'test-first': option 'order': 'middle' is not one of: first, last");
	assert_int_equal(iap_opts_set(o, w, "strid", "1", &err), IAP_EINVAL);
	assert_string_equal(err.msg, "sampler 'test-first': unknown option 'strid'");
	/* A refused value leaves the previous one. */
	assert_int_equal(iap_opts_int(o, "stride"), 7);
	assert_int_equal(iap_opts_enum(o, "order"), 1);
	/* Wrong-typed getters are programmer errors and give zero values. */
	assert_int_equal(iap_opts_int(o, "order"), 0);
	assert_null(iap_opts_str(o, "stride"));
	assert_null(iap_opts_str(o, "nope"));
	assert_int_equal(iap_opts_enum(o, "stride"), -1);
	assert_int_equal(iap_opts_enum(o, "nope"), -1);
	iap_opts_free(o);
	iap_registry_free(reg);
}

int main(void)
{
	const char *b = getenv("IAP_TEST_BUILDDIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kind_names),
		cmocka_unit_test_setup_teardown(test_happy_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_major, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_minor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_init_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_symbol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_shared_object, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ignored_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_options, setup, teardown),
	};

	/* Run by hand from the build directory works too. */
	snprintf(builddir, sizeof(builddir), "%s", b && *b ? b : ".");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
