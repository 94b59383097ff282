/* torchvision.models.vgg{11,13,16,19}[_bn] as an iaprune graph. */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include <iaprune/ops.h>

#include "arch.h"

#define M (-1) /* max pool in a layer list */

static const int cfg_a[] = { 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M, 0 };
static const int cfg_b[] = { 64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M, 0 };
static const int cfg_d[] = { 64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M,
			     512, 512, 512, M, 0 };
static const int cfg_e[] = { 64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M,
			     512, 512, 512, 512, M, 0 };

int iap_vgg_build(const struct iap_cnn_cfg *cfg, struct iap_graph **out, struct iap_error *err)
{
	const int *layers = cfg->depth == 11 ? cfg_a : cfg->depth == 13 ? cfg_b :
			    cfg->depth == 16 ? cfg_d : cfg->depth == 19 ? cfg_e : NULL;
	int64_t in_shape[3] = { cfg->in_channels, cfg->image_size, cfg->image_size };
	struct iap_graph *g;
	char name[64];
	int x = IAP_GRAPH_INPUT, idx = 0, hidden = iap_scaled(4096, cfg->width), rc;

	*out = NULL;
	if (!layers)
		return iap_error_set(err, IAP_EINVAL, "vgg: depth must be 11, 13, 16 or 19, not %d", cfg->depth);
	/* As torchvision: five floor-halving pools must leave a pixel (31 leaves 0, as PyTorch refuses). */
	if (cfg->image_size < 32)
		return iap_error_set(err, IAP_EINVAL,
				     "vgg: image_size %d is too small for five 2x2 max pools (minimum 32)",
				     cfg->image_size);
	g = iap_graph_new(3, in_shape, err);
	if (!g)
		return err ? err->code : IAP_ENOMEM;
	iap_graph_set_shape_only(g, cfg->shape_only);
	for (int i = 0, in_ch = cfg->in_channels; layers[i]; i++) {
		if (layers[i] == M) {
			snprintf(name, sizeof(name), "features.%d", idx++);
			x = iap_maxpool2d(g, name, x, 2, 2, 0, 0);
			continue;
		}
		int ch = iap_scaled(layers[i], cfg->width);
		int conv;

		snprintf(name, sizeof(name), "features.%d", idx++);
		conv = x = iap_conv2d(g, name, x, ch, 3, 3, 1, 1, 1, 1, 1);
		if (cfg->batch_norm) {
			snprintf(name, sizeof(name), "features.%d", idx++);
			x = iap_batchnorm2d(g, name, x, 1e-5f, 0.1f);
		}
		snprintf(name, sizeof(name), "features.%d", idx++);
		x = iap_relu(g, name, x);
		if (conv >= 0)
			iap_graph_add_units(g, conv, ch, 1, -1);
		in_ch = ch;
		(void)in_ch;
	}
	x = iap_adaptive_avgpool2d(g, "avgpool", x, 7, 7);
	x = iap_flatten(g, "flatten", x);
	x = iap_linear(g, "classifier.0", x, hidden, 1);
	if (x >= 0)
		iap_graph_add_units(g, x, hidden, 1, -1);
	x = iap_relu(g, "classifier.1", x);
	x = iap_dropout(g, "classifier.2", x, cfg->dropout);
	x = iap_linear(g, "classifier.3", x, hidden, 1);
	if (x >= 0)
		iap_graph_add_units(g, x, hidden, 1, -1);
	x = iap_relu(g, "classifier.4", x);
	x = iap_dropout(g, "classifier.5", x, cfg->dropout);
	iap_linear(g, "classifier.6", x, cfg->num_classes, 1);
	rc = iap_graph_finalize(g, err);
	if (rc) {
		iap_graph_free(g);
		iap_error_prefix(err, "vgg%d", cfg->depth);
		return rc;
	}
	*out = g;
	return IAP_OK;
}
