/* The model plugins loaded from the build tree, as the CLI and runner use them. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/model.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>
#include <iaprune/weights.h>

static struct iap_registry *reg;

static int setup(void **state)
{
	struct iap_error err;

	(void)state;
	reg = iap_registry_new(&err);
	if (!reg || iap_registry_scan(reg, &err))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	iap_registry_free(reg);
	return 0;
}

/* Build a model plugin with "key=value" options (NULL-terminated) and optional data. */
static int build(const char *name, const char *const *kv, const struct iap_dataset_info *data,
		 struct iap_graph **g, struct iap_error *err)
{
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_MODEL, name);
	struct iap_opts *o;
	int rc;

	assert_non_null(p);
	assert_int_equal(iap_opts_defaults(p->desc->options, &o, err), IAP_OK);
	for (int i = 0; kv && kv[i]; i += 2) {
		rc = iap_opts_set(o, "model", kv[i], kv[i + 1], err);
		if (rc) {
			iap_opts_free(o);
			return rc;
		}
	}
	rc = p->desc->ops.model->build(o, data, g, err);
	iap_opts_free(o);
	return rc;
}

static void test_three_models_found(void **state)
{
	(void)state;
	for (int i = 0; i < iap_registry_diag_count(reg); i++)
		print_message("diag: %s\n", iap_registry_diag(reg, i)->msg);
	assert_non_null(iap_registry_find(reg, IAP_PLUGIN_MODEL, "vgg"));
	assert_non_null(iap_registry_find(reg, IAP_PLUGIN_MODEL, "resnet"));
	assert_non_null(iap_registry_find(reg, IAP_PLUGIN_MODEL, "vit"));
	assert_int_equal(iap_registry_find(reg, IAP_PLUGIN_MODEL, "vgg")->desc->ops.model->size,
			 sizeof(struct iap_model_ops));
}

static void test_defaults_are_torchvision(void **state)
{
	struct iap_graph *g;
	struct iap_error err;
	static const char *const resnet18[] = { "depth", "18", NULL };

	(void)state;
	assert_int_equal(build("resnet", resnet18, NULL, &g, &err), IAP_OK);
	assert_int_equal(iap_graph_param_count(g, NULL), 11689512);
	assert_int_equal(g->in_shape[1], 224);
	iap_graph_free(g);
}

static void test_shape_from_dataset(void **state)
{
	const struct iap_dataset_info breast = { .n_classes = 2, .in_ndim = 3, .in_shape = { 1, 32, 32 } };
	static const char *const small[] = { "depth", "11", "width", "0.125", "batch_norm", "true", NULL };
	static const char *const clash[] = { "depth", "11", "num_classes", "3", NULL };
	static const char *const vit[] = { "variant", "custom", "patch_size", "8", "hidden_dim", "16",
					   "depth", "2", "num_heads", "2", "mlp_dim", "32", NULL };
	struct iap_graph *g;
	struct iap_error err;

	(void)state;
	assert_int_equal(build("vgg", small, &breast, &g, &err), IAP_OK);
	assert_int_equal(g->in_shape[0], 1);
	assert_int_equal(g->nodes[g->output].out_shape[0], 2);
	assert_non_null(iap_graph_find_param(g, "features.1.running_var"));
	iap_graph_free(g);
	assert_int_equal(build("vgg", clash, &breast, &g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "model 'vgg': option 'num_classes' is 3 but the dataset gives 2");
	assert_int_equal(build("vit", vit, &breast, &g, &err), IAP_OK);
	/* 16 patches + class token, 2 heads: the head units sit on the attention weights. */
	assert_int_equal(iap_graph_unit_count(g), 2 * (32 + 2));
	iap_graph_free(g);
}

static void test_bad_options(void **state)
{
	static const char *const depth[] = { "depth", "17", NULL };
	static const char *const width[] = { "width", "9", NULL };
	struct iap_graph *g;
	struct iap_error err;

	(void)state;
	assert_int_not_equal(build("vgg", depth, NULL, &g, &err), IAP_OK);
	assert_non_null(strstr(err.msg, "depth"));
	assert_non_null(strstr(err.msg, "17"));
	assert_int_not_equal(build("resnet", width, NULL, &g, &err), IAP_OK);
	assert_non_null(strstr(err.msg, "width"));
}

static void test_init_params_follow_torchvision(void **state)
{
	const struct iap_dataset_info data = { .n_classes = 4, .in_ndim = 3, .in_shape = { 3, 32, 32 } };
	static const char *const vit[] = { "variant", "custom", "patch_size", "8", "hidden_dim", "16",
					   "depth", "1", "num_heads", "2", "mlp_dim", "32", NULL };
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_MODEL, "vit");
	struct iap_graph *g;
	struct iap_error err;
	struct iap_rng rng;
	const struct iap_param *pos, *head, *ln;
	double sq = 0;

	(void)state;
	assert_int_equal(build("vit", vit, &data, &g, &err), IAP_OK);
	iap_rng_seed(&rng, 3);
	assert_int_equal(p->desc->ops.model->init_params(NULL, g, &rng, &err), IAP_OK);
	pos = iap_graph_find_param(g, "encoder.pos_embedding");
	head = iap_graph_find_param(g, "heads.head.weight");
	ln = iap_graph_find_param(g, "encoder.ln.weight");
	for (int64_t i = 0; i < iap_tensor_numel(&pos->value); i++)
		sq += (double)pos->value.data[i] * pos->value.data[i];
	/* N(0, 0.02²): the sample std of 272 values is within 25% of 0.02. */
	sq = sqrt(sq / (double)iap_tensor_numel(&pos->value));
	assert_true(sq > 0.015 && sq < 0.025);
	assert_true(head->value.data[0] == 0.0f);
	assert_true(ln->value.data[5] == 1.0f);
	iap_graph_free(g);
}


/* A model saved with its provenance rebuilds from the file alone. */
static void test_weights_carry_the_model(void **state)
{
	const struct iap_dataset_info data = { .n_classes = 2, .in_ndim = 3, .in_shape = { 1, 32, 32 } };
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_MODEL, "vgg"), *back = NULL;
	char dir[] = "/tmp/iap-model-XXXXXX", path[256];
	struct iap_meta_list meta = { 0 };
	struct iap_graph *g, *h;
	struct iap_opts *o;
	struct iap_error err;
	struct iap_rng rng;
	char *text = NULL;
	size_t len = 0;
	FILE *mem;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.safetensors", dir);
	assert_int_equal(iap_opts_defaults(p->desc->options, &o, &err), IAP_OK);
	assert_int_equal(iap_opts_set(o, "model", "depth", "11", &err), IAP_OK);
	assert_int_equal(iap_opts_set(o, "model", "width", "0.125", &err), IAP_OK);
	assert_int_equal(iap_opts_set(o, "model", "batch_norm", "true", &err), IAP_OK);
	assert_int_equal(p->desc->ops.model->build(o, &data, &g, &err), IAP_OK);
	iap_rng_seed(&rng, 5);
	assert_int_equal(p->desc->ops.model->init_params(o, g, &rng, &err), IAP_OK);
	assert_int_equal(iap_model_meta(&meta, p, o, g, 2, &err), IAP_OK);
	assert_int_equal(iap_graph_save_weights(g, path, meta.items, meta.n, &err), IAP_OK);
	assert_int_equal(iap_model_from_weights(reg, path, &h, &back, &err), IAP_OK);
	assert_ptr_equal(back, p);
	assert_int_equal(iap_graph_param_count(h, NULL), iap_graph_param_count(g, NULL));
	assert_memory_equal(iap_graph_find_param(h, "features.4.weight")->value.data,
			    iap_graph_find_param(g, "features.4.weight")->value.data,
			    (size_t)iap_tensor_numel(&iap_graph_find_param(g, "features.4.weight")->value) * sizeof(float));
	mem = open_memstream(&text, &len);
	iap_graph_print_summary(h, mem);
	fclose(mem);
	/* First conv: 8 channels (64 × 0.125) of 32×32, 1·8·9 + 8 parameters. */
	assert_non_null(strstr(text, "features.0"));
	assert_non_null(strstr(text, "[8, 32, 32]"));
	assert_non_null(strstr(text, "prunable units, 0 pruned"));
	free(text);
	iap_graph_free(g);
	iap_graph_free(h);
	iap_opts_free(o);
	iap_meta_free(&meta);
	unlink(path);
	rmdir(dir);
}

static void test_weights_without_provenance(void **state)
{
	struct iap_graph *g;
	struct iap_error err;
	char path[512];

	(void)state;
	snprintf(path, sizeof(path), "%s/tests/fixtures/models/vgg11.safetensors", getenv("IAP_TEST_SRCDIR"));
	assert_int_equal(iap_model_from_weights(reg, path, &g, NULL, &err), IAP_EFORMAT);
	assert_non_null(strstr(err.msg, "no iaprune model description in its metadata"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_three_models_found),
		cmocka_unit_test(test_defaults_are_torchvision),
		cmocka_unit_test(test_shape_from_dataset),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_init_params_follow_torchvision),
		cmocka_unit_test(test_weights_carry_the_model),
		cmocka_unit_test(test_weights_without_provenance),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
