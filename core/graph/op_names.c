/* Names of the core ops, checked against the enum so the two never drift apart. */
#include "config.h"

#include <assert.h>

#include <iaprune/graph.h>

static const char *const op_names[] = {
	[IAP_OP_CONV2D] = "conv2d",
	[IAP_OP_LINEAR] = "linear",
	[IAP_OP_RELU] = "relu",
	[IAP_OP_GELU] = "gelu",
	[IAP_OP_MAXPOOL2D] = "maxpool2d",
	[IAP_OP_AVGPOOL2D] = "avgpool2d",
	[IAP_OP_ADAPTIVE_AVGPOOL2D] = "adaptive_avgpool2d",
	[IAP_OP_BATCHNORM2D] = "batchnorm2d",
	[IAP_OP_LAYERNORM] = "layernorm",
	[IAP_OP_DROPOUT] = "dropout",
	[IAP_OP_FLATTEN] = "flatten",
	[IAP_OP_ADD] = "add",
	[IAP_OP_SOFTMAX] = "softmax",
	[IAP_OP_TOKENS] = "tokens",
	[IAP_OP_CLASS_TOKEN] = "class_token",
	[IAP_OP_POS_EMBED] = "pos_embed",
	[IAP_OP_ATTN_SCORES] = "attn_scores",
	[IAP_OP_ATTN_CONTEXT] = "attn_context",
	[IAP_OP_TOKEN_SELECT] = "token_select",
};

static_assert(sizeof(op_names) / sizeof(op_names[0]) == IAP_OP_COUNT,
	      "op_names must name every enum iap_op_kind value");

const char *iap_op_name(int kind)
{
	if (kind < 0 || kind >= IAP_OP_COUNT)
		return NULL;
	return op_names[kind];
}
