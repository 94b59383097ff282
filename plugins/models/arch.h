/*
 * The torchvision architectures as iaprune graphs: VGG, ResNet and
 * VisionTransformer, with torchvision's module names so state_dict keys load
 * unchanged. Shared by the model plugins and by the tests that count their
 * parameters; not installed.
 */
#ifndef IAP_MODELS_ARCH_H
#define IAP_MODELS_ARCH_H

#include <stdint.h>

#include <iaprune/graph.h>

struct iap_cnn_cfg {
	int depth;          /* vgg: 11 13 16 19; resnet: 18 34 50 101 152 */
	int batch_norm;     /* vgg only: the vgg*_bn variants */
	int num_classes;
	int in_channels;
	int image_size;
	double width;       /* channel multiplier (1.0 = torchvision); keeps key names */
	float dropout;      /* vgg classifier dropout (torchvision 0.5) */
	int shape_only;     /* count without allocating (see iap_graph_set_shape_only) */
};

struct iap_vit_cfg {
	int patch_size;
	int image_size;
	int in_channels;
	int num_layers;
	int num_heads;
	int hidden_dim;
	int mlp_dim;
	int num_classes;
	int shape_only;
	int conv_proj_units;   /* declare conv_proj's output channels as a unit group */
};

/* Fill cfg from a torchvision name ("b_16", "b_32", "l_16", "l_32"); 0 when unknown. */
int iap_vit_preset(const char *name, struct iap_vit_cfg *cfg);

/* Channel count after the width multiplier: max(1, round(c · width)). */
int iap_scaled(int c, double width);

int iap_vgg_build(const struct iap_cnn_cfg *cfg, struct iap_graph **out, struct iap_error *err);
int iap_resnet_build(const struct iap_cnn_cfg *cfg, struct iap_graph **out, struct iap_error *err);
int iap_vit_build(const struct iap_vit_cfg *cfg, struct iap_graph **out, struct iap_error *err);

/* torchvision's own initialisation of each family, from a seed. */
void iap_vgg_init(struct iap_graph *g, uint64_t seed);
void iap_resnet_init(struct iap_graph *g, uint64_t seed);
void iap_vit_init(struct iap_graph *g, uint64_t seed);

#endif
