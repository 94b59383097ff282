/*
 * Pipelines: YAML → config tree with file:line:col, typed getters, anchors /
 * aliases / merge keys, refusals (syntax, duplicate keys, foreign tags,
 * alias bombs), --set overrides, schema validation with its exact messages
 * and filled-in defaults, plugin option validation against loaded test
 * plugins, the dump round trip, and the pipelines shipped in etc/.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/pipeline.h>
#include <iaprune/registry.h>

static char srcdir[1024];

static struct iap_cfg *load(const char *text)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = NULL;
	int rc = iap_cfg_load_string(text, strlen(text), "p.yaml", &cfg, &err);

	if (rc)
		fail_msg("load failed: %s", err.msg);
	return cfg;
}

/* Loading text fails with exactly msg. */
static void load_fails(const char *text, const char *msg)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = NULL;

	assert_int_not_equal(iap_cfg_load_string(text, strlen(text), "p.yaml", &cfg, &err), IAP_OK);
	assert_null(cfg);
	assert_string_equal(err.msg, msg);
}

/* Validation of text (without a registry) fails with exactly msg. */
static void invalid(const char *text, const char *msg)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = load(text);

	assert_int_not_equal(iap_pipeline_validate(cfg, NULL, &err), IAP_OK);
	assert_string_equal(err.msg, msg);
	iap_cfg_free(cfg);
}

#define MINIMAL \
	"version: 1\n"                   \
	"dataset:\n"                     \
	"  plugin: test-data\n"          \
	"model:\n"                       \
	"  plugin: test-mlp\n"           \
	"attribution:\n"                 \
	"  - plugin: test-grad\n"        \
	"    options:\n"                 \
	"      steps: 8\n"

/* ---- the tree -------------------------------------------------------------------- */

static void test_tree_positions(void **state)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = load("a:\n  b: 12\n  list:\n    - x\n    - {y: 2.5}\nempty:\nq: \"\"\n");
	const struct iap_cfg_node *root = iap_cfg_root(cfg), *n;
	const char *s;
	double f;
	long i;

	(void)state;
	assert_int_equal(root->kind, IAP_CFG_MAP);
	n = iap_cfg_get(root, "a.b");
	assert_non_null(n);
	assert_string_equal(n->file, "p.yaml");
	assert_int_equal(n->line, 2);
	assert_int_equal(n->col, 6);
	assert_int_equal(n->key_line, 2);
	assert_int_equal(n->key_col, 3);
	assert_int_equal(iap_cfg_get_int(root, "a.b", 0, &i, &err), IAP_OK);
	assert_int_equal(i, 12);
	n = iap_cfg_get(root, "a.list.1.y");
	assert_non_null(n);
	assert_int_equal(n->line, 5);
	assert_int_equal(n->col, 11);
	assert_int_equal(iap_cfg_get_float(root, "a.list.1.y", 0, &f, &err), IAP_OK);
	assert_true(f == 2.5);
	assert_int_equal(iap_cfg_get_str(root, "a.list.0", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "x");
	assert_null(iap_cfg_get(root, "a.list.2"));
	assert_null(iap_cfg_get(root, "a.b.c"));
	/* Missing: the default. A YAML null is a node without a value; "" is an empty string. */
	assert_int_equal(iap_cfg_get_int(root, "a.nope", 7, &i, &err), IAP_OK);
	assert_int_equal(i, 7);
	assert_null(iap_cfg_child(root, "empty")->value);
	assert_string_equal(iap_cfg_child(root, "q")->value, "");
	iap_cfg_free(cfg);
}

static void test_typed_getter_errors(void **state)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = load("x:\n  n: ten\n  f: 1e999\n  b: maybe\n  m: {k: 1}\n  z: nan\n");
	const struct iap_cfg_node *root = iap_cfg_root(cfg);
	const char *s;
	double f;
	long i;
	int b;

	(void)state;
	assert_int_equal(iap_cfg_get_int(root, "x.n", 0, &i, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "p.yaml:2:6: x.n: expected an integer, got 'ten'");
	assert_int_equal(iap_cfg_get_float(root, "x.f", 0, &f, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "p.yaml:3:6: x.f: expected a number, got '1e999'");
	assert_int_equal(iap_cfg_get_float(root, "x.z", 0, &f, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "p.yaml:6:6: x.z: expected a number, got 'nan'");
	assert_int_equal(iap_cfg_get_bool(root, "x.b", 0, &b, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "p.yaml:4:6: x.b: expected true or false, got 'maybe'");
	assert_int_equal(iap_cfg_get_int(root, "x.m", 0, &i, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "p.yaml:5:6: x.m: expected an integer, got a mapping");
	assert_int_equal(iap_cfg_get_str(root, "x.m", NULL, &s, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "p.yaml:5:6: x.m: expected a string, got a mapping");
	/* what == NULL: the node's own key names it. */
	assert_int_equal(iap_cfg_int(iap_cfg_get(root, "x.b"), NULL, &i, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "p.yaml:4:6: b: expected an integer, got 'maybe'");
	iap_cfg_free(cfg);
}

static void test_anchors_aliases_merge(void **state)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = load("base: &b\n  lr: 0.1\n  epochs: 3\n"
				   "k: &k 10\n"
				   "copy: *b\n"
				   "more:\n  <<: *b\n  lr: 0.5\n"
				   "n: *k\n");
	const struct iap_cfg_node *root = iap_cfg_root(cfg);
	double f;
	long i;

	(void)state;
	assert_int_equal(iap_cfg_get_float(root, "copy.lr", 0, &f, &err), IAP_OK);
	assert_true(f == 0.1);
	/* Explicit keys win over merged ones, even when written after the merge. */
	assert_int_equal(iap_cfg_get_float(root, "more.lr", 0, &f, &err), IAP_OK);
	assert_true(f == 0.5);
	assert_int_equal(iap_cfg_get_int(root, "more.epochs", 0, &i, &err), IAP_OK);
	assert_int_equal(i, 3);
	assert_null(iap_cfg_get(root, "more.<<"));
	assert_int_equal(iap_cfg_get_int(root, "n", 0, &i, &err), IAP_OK);
	assert_int_equal(i, 10);
	/* An alias points at where the anchored value was written. */
	assert_int_equal(iap_cfg_get(root, "n")->line, 4);
	iap_cfg_free(cfg);
}

static void test_refusals(void **state)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = NULL;
	char bomb[2048];
	size_t len = 0;

	(void)state;
	load_fails("a: 1\nb: [1, 2\n", "p.yaml:3:1: did not find expected ',' or ']' while parsing a flow sequence");
	load_fails("a: 1\n  b: 2\n", "p.yaml:2:4: mapping values are not allowed in this context");
	load_fails("a: *nope\n", "p.yaml:1:4: found undefined alias");
	load_fails("a: 1\nb: 2\na: 3\n", "p.yaml:3:1: duplicate key 'a' (first at line 1)");
	load_fails("a: !!python/object:os.system [ls]\n",
		   "p.yaml:1:4: tag 'tag:yaml.org,2002:python/object:os.system' is not supported "
		   "(pipelines are plain data)");
	load_fails("a: !custom 1\n", "p.yaml:1:4: tag '!custom' is not supported (pipelines are plain data)");
	load_fails("[1, 2]: x\n", "p.yaml:1:1: keys must be plain strings");
	/* Nine levels of ten aliases would be 10^9 nodes: refused, not expanded. */
	len += (size_t)snprintf(bomb + len, sizeof(bomb) - len, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
	for (int i = 1; i < 9; i++)
		len += (size_t)snprintf(bomb + len, sizeof(bomb) - len,
					"a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n",
					i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
	assert_int_equal(iap_cfg_load_string(bomb, len, "p.yaml", &cfg, &err), IAP_ELIMIT);
	assert_non_null(strstr(err.msg, "document too large or too deeply nested"));
	assert_int_equal(iap_cfg_load_file("/nonexistent/p.yaml", &cfg, &err), IAP_EIO);
	assert_string_equal(err.msg, "/nonexistent/p.yaml: No such file or directory");
	assert_int_equal(iap_cfg_load_file("/", &cfg, &err), IAP_EIO);
	assert_string_equal(err.msg, "/: Is a directory");
	load_fails("a: \xff\n", "p.yaml: invalid leading UTF-8 octet at byte 3");
}

static void test_set_overrides(void **state)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = load("model:\n  train:\n    epochs: 30\nlist: [a, b]\n");
	const struct iap_cfg_node *root = iap_cfg_root(cfg), *n;
	double f;
	long i;

	(void)state;
	assert_int_equal(iap_cfg_set(cfg, "model.train.epochs=5", 1, &err), IAP_OK);
	assert_int_equal(iap_cfg_get_int(root, "model.train.epochs", 0, &i, &err), IAP_OK);
	assert_int_equal(i, 5);
	n = iap_cfg_get(root, "model.train.epochs");
	assert_string_equal(n->file, "--set");
	assert_int_equal(n->line, 1);
	assert_int_equal(n->col, 20);
	/* New maps on the way are created; the value is YAML. */
	assert_int_equal(iap_cfg_set(cfg, "pruning.rates=[0.1, 0.5]", 2, &err), IAP_OK);
	n = iap_cfg_get(root, "pruning.rates");
	assert_int_equal(n->kind, IAP_CFG_SEQ);
	assert_int_equal(n->n_items, 2);
	assert_int_equal(iap_cfg_get_float(root, "pruning.rates.1", 0, &f, &err), IAP_OK);
	assert_true(f == 0.5);
	assert_int_equal(iap_cfg_set(cfg, "list.1=c", 3, &err), IAP_OK);
	assert_string_equal(iap_cfg_get(root, "list.1")->value, "c");
	assert_int_equal(iap_cfg_set(cfg, "list.2=d", 4, &err), IAP_OK);
	assert_string_equal(iap_cfg_get(root, "list.2")->value, "d");
	/* An empty value is a YAML null. */
	assert_int_equal(iap_cfg_set(cfg, "model.weights=", 5, &err), IAP_OK);
	n = iap_cfg_get(root, "model.weights");
	assert_non_null(n);
	assert_null(n->value);

	assert_int_equal(iap_cfg_set(cfg, "novalue", 6, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "--set 'novalue': expected path.to.key=value");
	assert_int_equal(iap_cfg_set(cfg, "=1", 6, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "--set '=1': expected path.to.key=value");
	assert_int_equal(iap_cfg_set(cfg, "list.7=x", 6, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "--set 'list.7=x': '7' is not an index of a list of 3 item(s)");
	assert_int_equal(iap_cfg_set(cfg, "model.train.epochs.x=1", 6, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "--set 'model.train.epochs.x=1': 'model.train.epochs' is not a mapping or list");
	assert_int_equal(iap_cfg_set(cfg, "a..b=1", 6, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "--set 'a..b=1': empty key in path");
	assert_int_equal(iap_cfg_set(cfg, "a=[1", 6, &err), IAP_EFORMAT);
	assert_memory_equal(err.msg, "--set 'a=[1': --set:2:1: ", 24);
	iap_cfg_free(cfg);
}

/* ---- validation ------------------------------------------------------------------- */

static void test_validate_defaults(void **state)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = load(MINIMAL "pruning:\n  policy: test-lowest\n");
	const struct iap_cfg_node *root = iap_cfg_root(cfg), *n;
	const char *s;
	double f;
	long i;

	(void)state;
	assert_int_equal(iap_pipeline_validate(cfg, NULL, &err), IAP_OK);
	assert_int_equal(iap_cfg_get_int(root, "model.train.epochs", 0, &i, &err), IAP_OK);
	assert_int_equal(i, 30);
	assert_int_equal(iap_cfg_get_float(root, "model.train.lr", 0, &f, &err), IAP_OK);
	assert_true(f == 0.001);
	n = iap_cfg_get(root, "pruning.rates");
	assert_non_null(n);
	assert_int_equal(n->n_items, 4);
	assert_string_equal(n->file, "<default>");
	assert_int_equal(iap_cfg_get_float(root, "pruning.rates.3", 0, &f, &err), IAP_OK);
	assert_true(f == 0.70);
	assert_int_equal(iap_cfg_get_float(root, "pruning.caps.max_layer_rate", 0, &f, &err), IAP_OK);
	assert_true(f == 0.9);
	/* Shorthand "policy: NAME" becomes {plugin: NAME, options: {}}. */
	assert_int_equal(iap_cfg_get_str(root, "pruning.policy.plugin", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "test-lowest");
	assert_int_equal(iap_cfg_get(root, "pruning.policy.options")->kind, IAP_CFG_MAP);
	assert_int_equal(iap_cfg_get_str(root, "evaluation.split", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "test");
	assert_int_equal(iap_cfg_get_float(root, "pruning.tolerance", 0, &f, &err), IAP_OK);
	assert_true(f == 0.05);
	assert_int_equal(iap_cfg_get_str(root, "model.train.optimizer", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "adam");
	assert_int_equal(iap_cfg_get(root, "sampling")->n_items, 0);
	assert_int_equal(iap_cfg_get_str(root, "output", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "results");
	assert_null(iap_cfg_get(root, "model.weights"));
	/* Validating again changes nothing (the filled tree is itself valid). */
	assert_int_equal(iap_pipeline_validate(cfg, NULL, &err), IAP_OK);
	assert_int_equal(iap_cfg_get(root, "pruning.rates")->n_items, 4);
	iap_cfg_free(cfg);
}

static void test_validate_errors(void **state)
{
	(void)state;
	invalid("", "p.yaml: empty pipeline");
	invalid("- 1\n", "p.yaml:1:1: a pipeline must be a mapping (key: value lines)");
	invalid("dataset: {plugin: x}\n",
		"p.yaml:1:1: missing required key 'version' (this iaprune reads version 1)");
	invalid("version: 2\n", "p.yaml:1:10: version: unsupported pipeline version 2 (this iaprune reads version 1)");
	invalid("version: one\n", "p.yaml:1:10: version: expected an integer, got 'one'");
	invalid(MINIMAL "modle: {}\n",
		"p.yaml:10:1: unknown key 'modle' (known: version, name, seed, output, dataset, model, "
		"sampling, attribution, pruning, evaluation, report, threads)");
	invalid(MINIMAL "pruning:\n  rates: [0.1, 1.0]\n",
		"p.yaml:11:16: pruning.rates.1: 1.0 is out of range [0, 1)");
	invalid(MINIMAL "pruning:\n  rates: 0.5\n", "p.yaml:11:10: pruning.rates: expected a list");
	invalid(MINIMAL "pruning:\n  rates: []\n", "p.yaml:11:10: pruning.rates: needs at least 1 item(s)");
	invalid(MINIMAL "pruning:\n  caps:\n    min_unit: 2\n",
		"p.yaml:12:5: pruning.caps: unknown key 'min_unit' (known: max_layer_rate, min_units)");
	invalid(MINIMAL "evaluation:\n  split: tst\n",
		"p.yaml:11:10: evaluation.split: 'tst' is not one of: train, val, test");
	invalid("version: 1\ndataset: {plugin: d}\nmodel:\n  plugin: m\n  train:\n    optimizer: sgd\n"
		"attribution: [a]\n",
		"p.yaml:6:16: model.train.optimizer: 'sgd' is not one of: adam");
	invalid("version: 1\ndataset:\n  options: {}\n",
		"p.yaml:3:3: dataset: missing required key 'plugin'");
	invalid("version: 1\ndataset: {plugin: d}\nmodel: {plugin: m}\nattribution: []\n",
		"p.yaml:4:14: attribution: needs at least 1 item(s)");
	invalid("version: 1\ndataset: {plugin: d}\nmodel: {plugin: m}\nattribution: [a]\n"
		"sampling:\n  - plugin: s\n    per_class: 0\n",
		"p.yaml:7:16: sampling.0.per_class: 0 is out of range [1, 1e+06]");
	invalid("version: 1\ndataset: {plugin: d}\nmodel:\n  plugin: m\n  train:\n    epochs: many\n"
		"attribution: [a]\n",
		"p.yaml:6:13: model.train.epochs: expected an integer, got 'many'");
	invalid("version: 1\ndataset: {plugin: d}\nmodel: {plugin: m, options: [1]}\nattribution: [a]\n",
		"p.yaml:3:29: model.options: expected a mapping");
	invalid("version: 1\ndataset: [d]\n", "p.yaml:2:10: dataset: expected a mapping");
	invalid("version: 1\ndataset: {plugin: d}\nmodel: {plugin: m}\n"
		"attribution:\n  - lrp\n  - {plugin: ig, name: lrp}\n",
		"p.yaml:6:5: attribution.1: 'lrp' is already the name of attribution.0; "
		"give one of them a different 'name:'");
}

/* With the build tree's test plugins loaded: names and options are checked too. */
static void test_validate_plugins(void **state)
{
	static const struct {
		const char *yaml;
		const char *msg;
	} cases[] = {
		{ "      epsilonn: 0.1\n",
		  "p.yaml:10:7: attribution 'test-grad': unknown option 'epsilonn' (known: rule, epsilon, steps)" },
		{ "      epsilon: abc\n",
		  "p.yaml:10:16: attribution 'test-grad': option 'epsilon': expected a number, got 'abc'" },
		{ "      epsilon: 2\n",
		  "p.yaml:10:16: attribution 'test-grad': option 'epsilon': 2 is out of range [0, 1]" },
		{ "      rule: alpha-beta\n",
		  "p.yaml:10:13: attribution 'test-grad': option 'rule': 'alpha-beta' is not one of: gradient, epsilon" },
		{ "      rule: [1, 2]\n",
		  "p.yaml:10:13: attribution 'test-grad': option 'rule': expected one value, got a list" },
	};
	struct iap_error err = { 0, "" };
	struct iap_registry *reg = iap_registry_new(&err);
	char text[1024];

	(void)state;
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	assert_non_null(iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, "test-grad"));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct iap_cfg *cfg;

		snprintf(text, sizeof(text), MINIMAL "%s", cases[i].yaml);
		cfg = load(text);
		assert_int_equal(iap_pipeline_validate(cfg, reg, &err), IAP_EINVAL);
		assert_string_equal(err.msg, cases[i].msg);
		iap_cfg_free(cfg);
	}

	/* Unknown plugin: the ones of that kind are listed. */
	{
		struct iap_cfg *cfg = load("version: 1\ndataset: {plugin: test-data}\nmodel: {plugin: test-mlp}\n"
					   "attribution: [test-grd]\n");

		assert_int_equal(iap_pipeline_validate(cfg, reg, &err), IAP_EINVAL);
		assert_string_equal(err.msg, "p.yaml:4:15: unknown attribution plugin 'test-grd' (available: test-grad)");
		iap_cfg_free(cfg);
	}
	/* Required option missing (the short form has no options at all). */
	{
		struct iap_cfg *cfg = load("version: 1\ndataset: {plugin: test-data}\nmodel: {plugin: test-mlp}\n"
					   "attribution: [test-grad]\npruning: {policy: test-lowest}\n");

		assert_int_equal(iap_pipeline_validate(cfg, reg, &err), IAP_EINVAL);
		assert_string_equal(err.msg, "p.yaml:4:15: attribution 'test-grad': missing required option 'steps'");
		iap_cfg_free(cfg);
	}
	/* The default policy is "global", which the test plugins do not provide. */
	{
		struct iap_cfg *cfg = load(MINIMAL);

		assert_int_equal(iap_pipeline_validate(cfg, reg, &err), IAP_EINVAL);
		assert_string_equal(err.msg, "<default>: unknown policy plugin 'global' (available: test-lowest)");
		iap_cfg_free(cfg);
	}
	/* A complete valid pipeline, and the plugin resolution the runner will use. */
	{
		struct iap_cfg *cfg = load(MINIMAL "sampling:\n  - plugin: test-first\n    options: {order: last}\n"
					   "pruning: {policy: test-lowest}\n");
		const struct iap_plugin *p;
		struct iap_opts *o;

		assert_int_equal(iap_pipeline_validate(cfg, reg, &err), IAP_OK);
		assert_int_equal(iap_pipeline_plugin(iap_cfg_get(iap_cfg_root(cfg), "attribution.0"),
						     IAP_PLUGIN_ATTRIBUTION, reg, &p, &o, &err), IAP_OK);
		assert_string_equal(p->desc->name, "test-grad");
		assert_int_equal(iap_opts_int(o, "steps"), 8);
		assert_true(iap_opts_float(o, "epsilon") == 1e-6);
		iap_opts_free(o);
		assert_int_equal(iap_pipeline_plugin(iap_cfg_get(iap_cfg_root(cfg), "sampling.0"),
						     IAP_PLUGIN_SAMPLER, reg, &p, &o, &err), IAP_OK);
		assert_string_equal(iap_opts_str(o, "order"), "last");
		iap_opts_free(o);
		iap_cfg_free(cfg);
	}
	iap_registry_free(reg);
}

/* A validated tree dumped as YAML reads back to the same values. */
static void test_dump_roundtrip(void **state)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = load(MINIMAL "name: \"odd: name # x\"\npruning:\n  ignore: [\"\", '-x']\n");
	struct iap_cfg *back = NULL;
	const char *s;
	char *buf = NULL;
	size_t len = 0;
	double f;
	FILE *f_out;

	(void)state;
	assert_int_equal(iap_pipeline_validate(cfg, NULL, &err), IAP_OK);
	f_out = open_memstream(&buf, &len);
	assert_non_null(f_out);
	assert_int_equal(iap_cfg_dump(iap_cfg_root(cfg), f_out), IAP_OK);
	fclose(f_out);
	assert_int_equal(iap_cfg_load_string(buf, len, "dump", &back, &err), IAP_OK);
	assert_int_equal(iap_pipeline_validate(back, NULL, &err), IAP_OK);
	assert_int_equal(iap_cfg_get_str(iap_cfg_root(back), "name", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "odd: name # x");
	assert_int_equal(iap_cfg_get_str(iap_cfg_root(back), "pruning.ignore.0", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "");
	assert_int_equal(iap_cfg_get_str(iap_cfg_root(back), "pruning.ignore.1", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "-x");
	assert_int_equal(iap_cfg_get_float(iap_cfg_root(back), "pruning.rates.1", 0, &f, &err), IAP_OK);
	assert_true(f == 0.30);
	assert_int_equal(iap_cfg_get_str(iap_cfg_root(back), "attribution.0.plugin", NULL, &s, &err), IAP_OK);
	assert_string_equal(s, "test-grad");
	free(buf);
	iap_cfg_free(back);
	iap_cfg_free(cfg);
}

/* The shipped pipelines are valid (structure; their plugins arrive with later issues). */
static void test_shipped_pipelines(void **state)
{
	static const char *const files[] = {
		"etc/iaprune/default.yaml", "etc/iaprune/resnet-layerwise.yaml", "etc/iaprune/vit-heads.yaml",
		"etc/iaprune/finetune.yaml",
	};
	struct iap_error err = { 0, "" };

	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct iap_cfg *cfg = NULL;
		const struct iap_cfg_node *root;
		char path[2048];
		const char *s;
		double f;
		long k;

		snprintf(path, sizeof(path), "%s/%s", srcdir, files[i]);
		if (iap_cfg_load_file(path, &cfg, &err) || iap_pipeline_validate(cfg, NULL, &err))
			fail_msg("%s", err.msg);
		root = iap_cfg_root(cfg);
		if (i == 0) {
			assert_int_equal(iap_cfg_get_str(root, "dataset.options.path", NULL, &s, &err), IAP_OK);
			assert_string_equal(s, "data/breastmnist.npz");
			assert_int_equal(iap_cfg_get(root, "attribution")->n_items, 5);
			assert_int_equal(iap_cfg_get(root, "sampling")->n_items, 3);
			assert_int_equal(iap_cfg_get_int(root, "sampling.2.per_class", 0, &k, &err), IAP_OK);
			assert_int_equal(k, 10);
			assert_int_equal(iap_cfg_get_str(root, "pruning.policy.plugin", NULL, &s, &err), IAP_OK);
			assert_string_equal(s, "global");
			assert_int_equal(iap_cfg_get_float(root, "pruning.rates.0", 0, &f, &err), IAP_OK);
			assert_true(f == 0.15);
		} else if (i == 1) {
			/* The merge key: the second LRP inherits epsilon and overrides the rule. */
			assert_int_equal(iap_cfg_get_str(root, "attribution.1.options.composite", NULL, &s, &err), IAP_OK);
			assert_string_equal(s, "epsilon-gamma-box");
			assert_int_equal(iap_cfg_get_float(root, "attribution.1.options.epsilon", 0, &f, &err), IAP_OK);
			assert_true(f == 1.0e-6);
			assert_int_equal(iap_cfg_get_str(root, "attribution.1.plugin", NULL, &s, &err), IAP_OK);
			assert_string_equal(s, "lrp");
		} else if (i == 3) {
			/* Fine-tuning on, its defaults written in; one-shot pruning by default. */
			assert_int_equal(iap_cfg_get_int(root, "pruning.finetune.epochs", 0, &k, &err), IAP_OK);
			assert_int_equal(k, 3);
			assert_int_equal(iap_cfg_get_str(root, "pruning.finetune.configurations", NULL, &s, &err), IAP_OK);
			assert_string_equal(s, "all");
			assert_null(iap_cfg_get(root, "pruning.finetune.batch_size"));
			assert_int_equal(iap_cfg_get_int(root, "pruning.iterations", 0, &k, &err), IAP_OK);
			assert_int_equal(k, 1);
		}
		/* The default pipeline does not fine-tune (the main job stays fast). */
		if (i == 0)
			assert_null(iap_cfg_get(root, "pruning.finetune"));
		iap_cfg_free(cfg);
	}
}


/* ---- the typed pipeline ---------------------------------------------------------------- */

#define TYPED MINIMAL "sampling:\n  - plugin: test-first\n    name: first\n    options: {order: last}\n" \
	"pruning: {policy: test-lowest, rates: [0.2, 0.6], ignore: [fc1]}\nreport: {heatmaps: 3}\nseed: 4000000000\n"

/* iap_pipeline_load: plugins resolved once, options parsed, every key typed (defaults from the table). */
static void test_typed_pipeline(void **state)
{
	struct iap_error err = { 0, "" };
	struct iap_registry *reg = iap_registry_new(&err);
	struct iap_pipeline *p = NULL;

	(void)state;
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	assert_int_equal(iap_pipeline_load(load(TYPED), reg, &p, &err), IAP_OK);
	assert_string_equal(p->dataset.plugin->desc->name, "test-data");
	assert_string_equal(p->model.plugin->desc->name, "test-mlp");
	assert_string_equal(p->pruning.policy.plugin->desc->name, "test-lowest");
	assert_int_equal(p->n_attributions, 1);
	assert_string_equal(p->attributions[0].name, "test-grad");
	assert_int_equal(iap_opts_int(p->attributions[0].ref.opts, "steps"), 8);
	assert_int_equal(p->n_samplers, 1);
	assert_string_equal(p->samplers[0].name, "first");
	assert_int_equal(p->samplers[0].per_class, 10);
	assert_string_equal(iap_opts_str(p->samplers[0].ref.opts, "order"), "last");
	assert_int_equal(p->pruning.n_rates, 2);
	assert_true(p->pruning.rates[0] == 0.2 && p->pruning.rates[1] == 0.6);
	assert_int_equal(p->pruning.n_ignore, 1);
	assert_string_equal(p->pruning.ignore[0], "fc1");
	assert_true(p->pruning.tolerance == 0.05 && p->pruning.curve_step == 0.05 && p->pruning.curve == 1);
	assert_true(p->pruning.max_layer_rate == 0.9);
	assert_int_equal(p->pruning.min_units, 1);
	assert_int_equal(p->pruning.finetune.enabled, 0);
	assert_int_equal(p->report.heatmaps, 3);
	assert_int_equal(p->report.bootstrap, 1000);
	assert_int_equal(p->report.explain_images, 8);
	assert_int_equal(p->evaluation.split, IAP_SPLIT_TEST);
	assert_int_equal(p->evaluation.batch_size, 128);
	assert_int_equal(p->train.epochs, 30);
	assert_int_equal(p->train.class_weights_balanced, 1);
	assert_true(p->train.crop_scale == 0.7);
	assert_true(p->seed == 4000000000ULL);
	assert_string_equal(p->output, "results");
	assert_null(p->weights);
	assert_int_equal(p->has_attribution, 1);
	iap_pipeline_free(p);
	/* pruning.finetune: the table's defaults; batch size, weight decay and rates fall back. */
	assert_int_equal(iap_pipeline_load(load(MINIMAL "pruning: {policy: test-lowest, rates: [0.4], finetune: {}}\n"),
					   reg, &p, &err), IAP_OK);
	assert_int_equal(p->pruning.finetune.enabled, 1);
	assert_int_equal(p->pruning.finetune.epochs, 1);
	assert_true(p->pruning.finetune.lr == 0.0001);
	assert_int_equal(p->pruning.finetune.augment, 1);
	assert_int_equal(p->pruning.finetune.best_only, 0);
	assert_int_equal(p->pruning.finetune.batch_size, 0);
	assert_int_equal(p->pruning.finetune.has_weight_decay, 0);
	assert_int_equal(p->pruning.finetune.n_rates, 1);
	assert_true(p->pruning.finetune.rates[0] == 0.4);
	iap_pipeline_free(p);
	assert_int_equal(iap_pipeline_load(load(MINIMAL "pruning: {policy: test-lowest, finetune: {batch_size: 4, "
						    "weight_decay: 0.01, rates: [0.3, 0.6], configurations: best}}\n"),
					   reg, &p, &err), IAP_OK);
	assert_int_equal(p->pruning.finetune.batch_size, 4);
	assert_int_equal(p->pruning.finetune.has_weight_decay, 1);
	assert_true(p->pruning.finetune.weight_decay == 0.01);
	assert_int_equal(p->pruning.finetune.n_rates, 2);
	assert_true(p->pruning.finetune.rates[1] == 0.6);
	assert_int_equal(p->pruning.finetune.best_only, 1);
	iap_pipeline_free(p);
	iap_registry_free(reg);
}

/* A bad key or option still names file:line:col, and the tree stays the caller's. */
static void test_typed_errors(void **state)
{
	static const struct {
		const char *yaml, *msg;
	} cases[] = {
		{ MINIMAL "      epsilonn: 1\npruning: {policy: test-lowest}\n",
		  "p.yaml:10:7: attribution 'test-grad': unknown option 'epsilonn' (known: rule, epsilon, steps)" },
		{ MINIMAL "report: {heatmap: 1}\n",
		  "p.yaml:10:10: report: unknown key 'heatmap' (known: heatmaps, save_pruned, bootstrap, explain_images, latency)" },
		{ MINIMAL "sampling: [test-frist]\npruning: {policy: test-lowest}\n",
		  "p.yaml:10:12: unknown sampler plugin 'test-frist' (available: test-first)" },
	};
	struct iap_error err = { 0, "" };
	struct iap_registry *reg = iap_registry_new(&err);
	struct iap_cfg *typed = load(TYPED);

	(void)state;
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	/* No registry: refused, and the tree stays the caller's to free. */
	assert_int_equal(iap_pipeline_load(typed, NULL, &(struct iap_pipeline *){ NULL }, &err), IAP_EINVAL);
	iap_cfg_free(typed);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct iap_cfg *cfg = load(cases[i].yaml);
		struct iap_pipeline *p = (void *)1;

		assert_int_equal(iap_pipeline_load(cfg, reg, &p, &err), IAP_EINVAL);
		assert_null(p);
		assert_string_equal(err.msg, cases[i].msg);
		iap_cfg_free(cfg);
	}
	iap_registry_free(reg);
}

struct defaults_check {
	const struct iap_cfg_node *root, *given;   /* the dump; the pipeline as written */
	int n, scalars;
};

/* One default of the table against the dumped pipeline: the same value at its path ('*' is item 0). */
static void check_default(const char *path, const char *def, void *user)
{
	struct defaults_check *d = user;
	struct iap_error err = { 0, "" };
	struct iap_cfg *want = NULL;
	const struct iap_cfg_node *got;
	char at[256], *star;
	char *a = NULL, *b = NULL;
	size_t la = 0, lb = 0;
	FILE *fa, *fb;

	snprintf(at, sizeof(at), "%s", path);
	while ((star = strchr(at, '*')))
		*star = '0';
	if (iap_cfg_get(d->given, at))
		return;   /* set by the pipeline: not a default */
	got = iap_cfg_get(d->root, at);
	if (!got)
		fail_msg("default of %s (%s) is not in the dry-run dump", path, def);
	d->n++;
	if (got->kind == IAP_CFG_SCALAR) {
		if (!got->value || strcmp(got->value, def))
			fail_msg("%s: dumped '%s', the table says '%s'", path, got->value ? got->value : "~", def);
		d->scalars++;
		return;
	}
	/* Lists and maps: compared as YAML written back. */
	assert_int_equal(iap_cfg_load_string(def, strlen(def), "def", &want, &err), IAP_OK);
	fa = open_memstream(&a, &la);
	fb = open_memstream(&b, &lb);
	assert_non_null(fa);
	assert_non_null(fb);
	iap_cfg_dump(got, fa);
	iap_cfg_dump(iap_cfg_root(want), fb);
	fclose(fa);
	fclose(fb);
	if (strcmp(a, b))
		fail_msg("%s: dumped\n%s\nthe table says\n%s", path, a, b);
	free(a);
	free(b);
	iap_cfg_free(want);
}

/* What iaprune run --dry-run prints for a pipeline that sets nothing is the table of defaults. */
static void test_dry_run_is_the_table(void **state)
{
	struct iap_error err = { 0, "" };
#define UNSET MINIMAL "sampling: [test-first]\npruning: {finetune: {}}\n"
	struct iap_cfg *cfg = load(UNSET), *given = load(UNSET), *back = NULL;
	struct defaults_check d = { 0 };
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	assert_int_equal(iap_pipeline_validate(cfg, NULL, &err), IAP_OK);
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(iap_pipeline_dump(cfg, NULL, f), IAP_OK);
	fclose(f);
	assert_int_equal(iap_cfg_load_string(buf, len, "dry-run", &back, &err), IAP_OK);
	d.root = iap_cfg_root(back);
	d.given = iap_cfg_root(given);
	iap_pipeline_defaults(check_default, &d);
	/* Every key with a default (45 in the table, less attribution.0.options, which is set). */
	assert_int_equal(d.n, 44);
	assert_int_equal(d.scalars, 38);
	assert_string_equal(iap_cfg_get(d.root, "report.heatmaps")->value, "2");
	free(buf);
	iap_cfg_free(back);
	iap_cfg_free(given);
	iap_cfg_free(cfg);
}

int main(void)
{
	const char *s = getenv("IAP_TEST_SRCDIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tree_positions),
		cmocka_unit_test(test_typed_getter_errors),
		cmocka_unit_test(test_anchors_aliases_merge),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_set_overrides),
		cmocka_unit_test(test_validate_defaults),
		cmocka_unit_test(test_validate_errors),
		cmocka_unit_test(test_validate_plugins),
		cmocka_unit_test(test_dump_roundtrip),
		cmocka_unit_test(test_shipped_pipelines),
		cmocka_unit_test(test_typed_pipeline),
		cmocka_unit_test(test_typed_errors),
		cmocka_unit_test(test_dry_run_is_the_table),
	};

	const char *b = getenv("IAP_TEST_BUILDDIR");
	char path[1100];

	snprintf(srcdir, sizeof(srcdir), "%s", s && *s ? s : ".");
	/* The test plugins only: the real ones (also on make check's path) would change the lists. */
	snprintf(path, sizeof(path), "%s/tests/plugins/.libs", b && *b ? b : ".");
	setenv(IAP_PLUGIN_PATH_ENV, path, 1);
	setenv(IAP_PLUGIN_SYSTEM_PATH_ENV, "", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
