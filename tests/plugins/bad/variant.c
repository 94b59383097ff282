/*
 * One source, several broken plugins: each library in tests/plugins/bad
 * compiles this file with one BAD_* macro defined, so every failure mode the
 * registry must report has a real shared object behind it.
 */
#include "config.h"

#include <iaprune/plugin.h>

#ifndef BAD_ENTRY
static int v_select(const struct iap_opts *opts, const struct iap_dataset *ds, struct iap_graph *g,
		    struct iap_rng *rng, int k, int64_t *out, int64_t *n_out, struct iap_error *err)
{
	(void)opts; (void)ds; (void)g; (void)rng; (void)k; (void)out; (void)err;
	*n_out = 0;
	return IAP_OK;
}
#endif

static int v_init(struct iap_error *err)
{
#ifdef BAD_INIT
	return iap_error_set(err, IAP_EIO, "cannot open /nonexistent/model.bin");
#else
	(void)err;
	return IAP_OK;
#endif
}

static const struct iap_sampler_ops v_ops = {
	.size = sizeof(struct iap_sampler_ops),
#ifndef BAD_ENTRY
	.select = v_select,
#endif
};

static const struct iap_plugin_desc v_desc = {
#if defined(BAD_MAJOR)
	.abi_major = IAP_PLUGIN_ABI_MAJOR + 1, .abi_minor = 0,
	.size = sizeof(struct iap_plugin_desc),
#elif defined(BAD_MINOR)
	.abi_major = IAP_PLUGIN_ABI_MAJOR, .abi_minor = IAP_PLUGIN_ABI_MINOR + 1,
	.size = sizeof(struct iap_plugin_desc),
#else
	IAP_PLUGIN_HEADER,
#endif
	.kind = IAP_PLUGIN_SAMPLER,
	/* BAD_DUP reuses the name of the good test sampler (tests/plugins/test_sampler.c). */
#ifdef BAD_DUP
	.name = "test-first",
#else
	.name = "test-variant",
#endif
	.version = "0.0",
	.license = "MIT",
	.summary = "broken on purpose",
	.init = v_init,
	.ops.sampler = &v_ops,
};

#ifdef BAD_NOSYM
/* A near miss: the host must not accept anything but the exact entry point. */
const struct iap_plugin_desc *iap_plugin_descriptr(void);
const struct iap_plugin_desc *iap_plugin_descriptr(void)
{
	return &v_desc;
}
#else
IAP_PLUGIN_DEFINE(v_desc)
#endif
