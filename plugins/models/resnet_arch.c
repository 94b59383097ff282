/*
 * torchvision.models.resnet{18,34,50,101,152} as an iaprune graph: basic
 * blocks for 18/34, bottlenecks (stride on the 3×3 conv, "ResNet v1.5") for
 * the deeper ones. Every conv's output channels are units; the channels that
 * meet in a residual addition share a coupling id, so compaction can prune
 * them only together.
 */
#include "config.h"

#include <stdio.h>

#include <iaprune/ops.h>

#include "arch.h"

struct resnet_spec {
	int depth;
	int bottleneck;
	int blocks[4];
};

static const struct resnet_spec specs[] = {
	{ 18, 0, { 2, 2, 2, 2 } },
	{ 34, 0, { 3, 4, 6, 3 } },
	{ 50, 1, { 3, 4, 6, 3 } },
	{ 101, 1, { 3, 4, 23, 3 } },
	{ 152, 1, { 3, 8, 36, 3 } },
};

/* conv (no bias) → BatchNorm, with the conv's channels declared as units. */
static int conv_bn(struct iap_graph *g, const char *prefix, const char *conv_name,
		   const char *bn_name, int x, int ch, int k, int stride, int pad, int coupling)
{
	char cname[128], bname[128];
	int conv;

	snprintf(cname, sizeof(cname), "%s%s", prefix, conv_name);
	snprintf(bname, sizeof(bname), "%s%s", prefix, bn_name);
	conv = iap_conv2d(g, cname, x, ch, k, k, stride, stride, pad, pad, 0);
	if (conv >= 0)
		iap_graph_add_units(g, conv, ch, 1, coupling);
	return iap_batchnorm2d(g, bname, conv, 1e-5f, 0.1f);
}

int iap_resnet_build(const struct iap_cnn_cfg *cfg, struct iap_graph **out, struct iap_error *err)
{
	const struct resnet_spec *spec = NULL;
	int64_t in_shape[3] = { cfg->in_channels, cfg->image_size, cfg->image_size };
	struct iap_graph *g;
	int x, inplanes, expansion, coupling = 0, next_coupling = 1, rc;
	char prefix[64], name[96];

	*out = NULL;
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		if (specs[i].depth == cfg->depth)
			spec = &specs[i];
	if (!spec)
		return iap_error_set(err, IAP_EINVAL, "resnet: depth must be 18, 34, 50, 101 or 152, not %d",
				     cfg->depth);
	/*
	 * As torchvision: every stride-2 convolution and the max pool pad enough
	 * to keep one pixel, and the average pool is adaptive, so 1x1 works.
	 */
	if (cfg->image_size < 1)
		return iap_error_set(err, IAP_EINVAL, "resnet: image_size %d is too small (minimum 1)",
				     cfg->image_size);
	g = iap_graph_new(3, in_shape, err);
	if (!g)
		return err ? err->code : IAP_ENOMEM;
	iap_graph_set_shape_only(g, cfg->shape_only);
	expansion = spec->bottleneck ? 4 : 1;
	inplanes = iap_scaled(64, cfg->width);

	/* Stem; its channels are the identity path of layer1 when that needs no downsample. */
	x = conv_bn(g, "", "conv1", "bn1", IAP_GRAPH_INPUT, inplanes, 7, 2, 3, coupling);
	x = iap_relu(g, "relu", x);
	x = iap_maxpool2d(g, "maxpool", x, 3, 2, 1, 0);
	for (int stage = 0; stage < 4; stage++) {
		int planes = iap_scaled(64 << stage, cfg->width);

		for (int b = 0; b < spec->blocks[stage]; b++) {
			int stride = (b == 0 && stage > 0) ? 2 : 1;
			int down = stride != 1 || inplanes != planes * expansion;
			int identity = x, y;

			snprintf(prefix, sizeof(prefix), "layer%d.%d.", stage + 1, b);
			if (down) {
				coupling = next_coupling++;
				identity = conv_bn(g, prefix, "downsample.0", "downsample.1", x,
						   planes * expansion, 1, stride, 0, coupling);
			}
			if (spec->bottleneck) {
				y = conv_bn(g, prefix, "conv1", "bn1", x, planes, 1, 1, 0, -1);
				snprintf(name, sizeof(name), "%srelu1", prefix);
				y = iap_relu(g, name, y);
				y = conv_bn(g, prefix, "conv2", "bn2", y, planes, 3, stride, 1, -1);
				snprintf(name, sizeof(name), "%srelu2", prefix);
				y = iap_relu(g, name, y);
				y = conv_bn(g, prefix, "conv3", "bn3", y, planes * 4, 1, 1, 0, coupling);
			} else {
				y = conv_bn(g, prefix, "conv1", "bn1", x, planes, 3, stride, 1, -1);
				snprintf(name, sizeof(name), "%srelu1", prefix);
				y = iap_relu(g, name, y);
				y = conv_bn(g, prefix, "conv2", "bn2", y, planes, 3, 1, 1, coupling);
			}
			snprintf(name, sizeof(name), "%sadd", prefix);
			y = iap_add(g, name, y, identity);
			snprintf(name, sizeof(name), "%srelu", prefix);
			x = iap_relu(g, name, y);
			inplanes = planes * expansion;
		}
	}
	x = iap_adaptive_avgpool2d(g, "avgpool", x, 1, 1);
	x = iap_flatten(g, "flatten", x);
	iap_linear(g, "fc", x, cfg->num_classes, 1);
	rc = iap_graph_finalize(g, err);
	if (rc) {
		iap_graph_free(g);
		iap_error_prefix(err, "resnet%d", cfg->depth);
		return rc;
	}
	*out = g;
	return IAP_OK;
}
