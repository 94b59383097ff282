/*
 * The model a command works on: rebuilt from an iaprune weights file's own
 * description, or, for a plain torchvision state_dict (no iaprune
 * metadata), built by the model plugin the user names (--model NAME with
 * --model-option KEY=VALUE) and loaded by key.
 */
#ifndef IAP_CLI_MODEL_LOAD_H
#define IAP_CLI_MODEL_LOAD_H

#include <iaprune/graph.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

/*
 * Build the model for the weights at path. With model NULL the file must
 * carry iaprune's description (iap_model_from_weights); model_options must
 * then be empty. With a model name, the plugin builds it from its defaults
 * plus the n "key=value" options, where num_classes and in_channels left
 * unset come from the file itself (the head's rows and the first layer's
 * input channels under torchvision's names: classifier.6, fc, heads.head;
 * features.0, conv1, conv_proj) and a ViT's image_size from its position
 * embedding; then the weights load strictly. Errors name the file, the
 * option or the tensor.
 */
int cli_model_load(const struct iap_registry *reg, const char *path, const char *model,
		   const char *const *model_options, int n, struct iap_graph **out,
		   struct iap_error *err);

#endif
