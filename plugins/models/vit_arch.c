/*
 * torchvision.models.VisionTransformer as an iaprune graph (pre-norm encoder,
 * class token, learned position embedding, LayerNorm eps 1e-6). The MLP
 * hidden neurons (mlp.0 outputs) and the attention heads (declared on the
 * attention weights) are the prunable units, and on request conv_proj's
 * output channels.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <iaprune/ops.h>

#include "arch.h"

int iap_vit_preset(const char *name, struct iap_vit_cfg *cfg)
{
	static const struct {
		const char *name;
		int patch, layers, heads, dim, mlp;
	} presets[] = {
		{ "b_16", 16, 12, 12, 768, 3072 },
		{ "b_32", 32, 12, 12, 768, 3072 },
		{ "l_16", 16, 24, 16, 1024, 4096 },
		{ "l_32", 32, 24, 16, 1024, 4096 },
	};

	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (strcmp(presets[i].name, name) == 0) {
			cfg->patch_size = presets[i].patch;
			cfg->num_layers = presets[i].layers;
			cfg->num_heads = presets[i].heads;
			cfg->hidden_dim = presets[i].dim;
			cfg->mlp_dim = presets[i].mlp;
			return 1;
		}
	return 0;
}

int iap_vit_build(const struct iap_vit_cfg *cfg, struct iap_graph **out, struct iap_error *err)
{
	int64_t in_shape[3] = { cfg->in_channels, cfg->image_size, cfg->image_size };
	struct iap_graph *g;
	char p[96], name[160];
	int x, rc;

	*out = NULL;
	/* As torchvision: any whole number of patches, one at least (image_size == patch_size). */
	if (cfg->patch_size >= 1 && cfg->image_size < cfg->patch_size)
		return iap_error_set(err, IAP_EINVAL, "vit: image_size %d is smaller than one patch (minimum %d)",
				     cfg->image_size, cfg->patch_size);
	if (cfg->patch_size < 1 || cfg->image_size % cfg->patch_size != 0)
		return iap_error_set(err, IAP_EINVAL, "vit: image_size %d is not divisible by patch_size %d",
				     cfg->image_size, cfg->patch_size);
	if (cfg->num_heads < 1 || cfg->hidden_dim % cfg->num_heads != 0)
		return iap_error_set(err, IAP_EINVAL, "vit: hidden_dim %d is not divisible by num_heads %d",
				     cfg->hidden_dim, cfg->num_heads);
	if (cfg->num_layers < 1 || cfg->mlp_dim < 1)
		return iap_error_set(err, IAP_EINVAL, "vit: num_layers and mlp_dim must be positive");
	g = iap_graph_new(3, in_shape, err);
	if (!g)
		return err ? err->code : IAP_ENOMEM;
	iap_graph_set_shape_only(g, cfg->shape_only);
	x = iap_patch_embed(g, "conv_proj", IAP_GRAPH_INPUT, cfg->hidden_dim, cfg->patch_size);
	/*
	 * On request, conv_proj's D channels are units too (read at the conv,
	 * before the token reshape), so that their relevance or conductance is
	 * scored like any layer's. Off by default: they are residual-stream
	 * dimensions, not neurons a policy should prune.
	 */
	if (cfg->conv_proj_units && x >= 0)
		iap_graph_add_units(g, iap_graph_node(g, x)->inputs[0], cfg->hidden_dim, 1, -1);
	x = iap_class_token(g, "", "class_token", x);
	x = iap_pos_embed(g, "encoder", "pos_embedding", x);
	for (int l = 0; l < cfg->num_layers; l++) {
		int skip = x, weights = -1, y;

		snprintf(p, sizeof(p), "encoder.layers.encoder_layer_%d", l);
		snprintf(name, sizeof(name), "%s.ln_1", p);
		y = iap_layernorm(g, name, x, 1e-6f);
		snprintf(name, sizeof(name), "%s.self_attention", p);
		y = iap_mha(g, name, y, cfg->num_heads, &weights);
		if (weights >= 0)
			iap_graph_add_units(g, weights, cfg->num_heads, 1, -1);
		snprintf(name, sizeof(name), "%s.add_1", p);
		x = skip = iap_add(g, name, y, skip);
		snprintf(name, sizeof(name), "%s.ln_2", p);
		y = iap_layernorm(g, name, x, 1e-6f);
		snprintf(name, sizeof(name), "%s.mlp.0", p);
		y = iap_linear(g, name, y, cfg->mlp_dim, 1);
		if (y >= 0)
			iap_graph_add_units(g, y, cfg->mlp_dim, 1, -1);
		snprintf(name, sizeof(name), "%s.mlp.1", p);
		y = iap_gelu(g, name, y);
		snprintf(name, sizeof(name), "%s.mlp.3", p);
		y = iap_linear(g, name, y, cfg->hidden_dim, 1);
		snprintf(name, sizeof(name), "%s.add_2", p);
		x = iap_add(g, name, y, skip);
	}
	x = iap_layernorm(g, "encoder.ln", x, 1e-6f);
	x = iap_token_select(g, "class_token_select", x, 0);
	iap_linear(g, "heads.head", x, cfg->num_classes, 1);
	rc = iap_graph_finalize(g, err);
	if (rc) {
		iap_graph_free(g);
		iap_error_prefix(err, "vit");
		return rc;
	}
	*out = g;
	return IAP_OK;
}
