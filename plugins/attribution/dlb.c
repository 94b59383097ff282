/*
 * dlb — DL-Backtrace attribution (Sankarapu et al., arXiv 2411.12643) as an
 * iaprune rule set. Relevance starts one-hot on the predicted class times
 * `start` (100) and is walked back to the input; a unit's score is the
 * relevance reaching its output (see <iaprune/attribute.h>).
 *
 * The rules follow the reference CODE, not the paper's equations where they
 * disagree. There are two code generations:
 *   OLD  AryaXAI/DLBacktrace, dl_backtrace/pytorch_backtrace/backtrace/
 *        (utils/prop.py, utils/contrast.py): nn.Sequential models only.
 *   NEW  Lexsi-Labs/DLBacktrace, dl_backtrace/pytorch_backtrace/dlbacktrace/
 *        (graph engine; core/relevance_propagation.py, utils/default.py,
 *        utils/cuda_utils/). The default everywhere below.
 *
 * RULES (default mode)
 *   linear, conv2d   R_in_i = Σ_j |W_ji x_i| / (P_j + N_j + |b_j|) · R_j, with
 *                    P_j, N_j the sums of the positive and |negative|
 *                    contributions W_ji x_i (zero padding contributes
 *                    nothing). The bias's share |b_j|/(P_j+N_j+|b_j|) is
 *                    dropped ("relevance lost to the bias"); a unit with
 *                    P+N+|b| = 0 drops its relevance (no NaN; OLD conv gave
 *                    NaN there). Both generations agree; NEW's activation
 *                    dict is "None" for every linear/conv node, so no
 *                    saturation ranges apply, and OLD's ReLU range (l=0,
 *                    u=0) is disabled by a truthiness test — for ReLU/GELU
 *                    nets neither generation saturates, and neither do we.
 *   relu, gelu, batchnorm2d, layernorm, dropout, softmax
 *                    pass through unchanged (BN is not folded).
 *   flatten, tokens, token select, class token
 *                    index maps; the class token's row leaves the walk.
 *   add              add_rule=equal (NEW, launch_wt_add_equal): R/2 to each
 *                    operand.  add_rule=proportional (OLD,
 *                    calculate_wt_add): ∝ |operand|, all-zero drops.
 *   pos_embed        an add whose other operand is the learned embedding
 *                    (NEW treats "+ pos_embedding" as its add): that
 *                    operand's share leaves the walk.
 *   maxpool2d        maxpool_rule=uniform (NEW: the maxpool kernel is never
 *                    dispatched and align_relevance spreads R evenly, which
 *                    for VGG's 2×2/2 windows is R/4 per cell): R spread
 *                    evenly over the window's real cells, overlapping
 *                    windows adding. (For overlapping windows such as
 *                    ResNet's 3×3/2 NEW's align_relevance instead repeats
 *                    each cell over a 2×2 block; we keep the window.)
 *                    maxpool_rule=winner (OLD calculate_wt_maxpool): R to
 *                    the cells equal to the window maximum, ties sharing.
 *                    maxpool_rule=repeat (NEW align_relevance exactly):
 *                    nearest-neighbour upsampling of R by the integer size
 *                    ratio r (per axis), divided by r_h·r_w; the window is
 *                    ignored (ResNet's stem pool: R/4 to each cell of the
 *                    2×2 block under its output cell). A size that is not
 *                    a multiple of the output is an error.
 *   avgpool2d, adaptive_avgpool2d
 *                    gap_rule=uniform (NEW, align_relevance): R/(cells of
 *                    the window or bin). gap_rule=proportional (OLD
 *                    calculate_wt_gavgpool / calculate_wt_avg_unit): ∝ |x|
 *                    within the window, an all-zero window drops.
 *   attention        NEW calculate_wt_self_attention at O = A V and
 *                    S = Q Kᵀ (unscaled), stabiliser ε = 1e-9:
 *                    Rn = R_O/stab(2O), R_A = (Rn Vᵀ)⊙A, R_V = (Aᵀ Rn)⊙V;
 *                    the softmax passes R_A on to S; Rn2 = R_S/stab(2S),
 *                    R_Q = (Rn2 K)⊙Q, R_K = (Rn2ᵀ Q)⊙K. Values may be
 *                    negative here; Σ is conserved up to the stabiliser.
 *
 * CONTRAST MODE (mode=contrast; OLD utils/contrast.py, paper Alg. 1-2)
 *   Every unit carries (R+, R-). Seed: R+ one-hot × start on the target;
 *   R- the logits with the target zeroed, rescaled to sum to the same value
 *   when their sum is positive. Dense/conv (and the proportional add):
 *   with T = P + b − N, the larger of (R+, R-) follows the sign of T
 *   (calculate_base_wt): it is spread over the contributions of T's sign
 *   (∝ z / P or |z| / N) into its own map, the other over the opposite
 *   sign; units with only positive (or only negative) contributions spread
 *   both ∝ |z|; T = 0 drops both; no bias loss. Every other op moves R+
 *   and R- separately with its default rule. Unit scores (and explain)
 *   use contrast_score: net (R+ − R-, default), positive, or negative.
 *
 * OPTIONS
 *   mode default|contrast, add_rule equal|proportional, maxpool_rule
 *   uniform|winner|repeat, gap_rule uniform|proportional, start (100),
 *   contrast_score net|positive|negative, and the common abs, reduce,
 *   target, seed. With seed=logit the start value multiplies the logit.
 *
 * INVARIANTS (tests/test_dlb.c): with positive seeds every CNN relevance
 *   is ≥ 0; Σ R_in ≤ Σ R_out per dense/conv node, with equality without
 *   biases; every other CNN op conserves Σ R exactly.
 */
#include "config.h"

#include <stdlib.h>

#include <iaprune/attribute.h>
#include <iaprune/plugin.h>

#include "dlb.h"
#include "rule_plugin.h"

static const char *const mode_choices[] = { "default", "contrast", NULL };
static const char *const add_choices[] = { "equal", "proportional", NULL };
static const char *const maxpool_choices[] = { "uniform", "winner", "repeat", NULL };
static const char *const gap_choices[] = { "uniform", "proportional", NULL };
static const char *const score_choices[] = { "net", "positive", "negative", NULL };

static const struct iap_option dlb_options[] = {
	{ .name = "mode", .type = IAP_OPT_ENUM, .def = "default", .choices = mode_choices,
	  .help = "default relevance, or contrast (positive and negative relevance)" },
	{ .name = "add_rule", .type = IAP_OPT_ENUM, .def = "equal", .choices = add_choices,
	  .help = "residual add: equal halves (new engine) or proportional to |operand| (old)" },
	{ .name = "maxpool_rule", .type = IAP_OPT_ENUM, .def = "uniform", .choices = maxpool_choices,
	  .help = "max pool: uniform over the window (new engine), to the maximum (old), or "
		  "nearest-neighbour repeat by the size ratio / ratio^2 (new engine's align_relevance)" },
	{ .name = "gap_rule", .type = IAP_OPT_ENUM, .def = "uniform", .choices = gap_choices,
	  .help = "average pools: uniform (new engine) or proportional to |x| (old)" },
	{ .name = "start", .type = IAP_OPT_FLOAT, .def = "100", .has_range = 1, .min = 1e-6, .max = 1e9,
	  .help = "start relevance on the target class" },
	{ .name = "contrast_score", .type = IAP_OPT_ENUM, .def = "net", .choices = score_choices,
	  .help = "contrast mode: score R+ - R-, R+ or R-" },
	IAP_ATTR_COMMON_OPTIONS,
	{ .name = NULL },
};

/* The plugin's state: the shared rule-plugin part first (rule_plugin.h). */
struct dlb_state {
	struct rule_plugin base;
	struct dlb_rules rules;
};

/* An enum option's index (the schema's default when absent). */
static int pick(const struct iap_opts *opts, const char *name)
{
	int i = iap_opts_enum(opts, name);

	return i < 0 ? 0 : i;
}

static int dlb_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
		      struct iap_error *err)
{
	struct dlb_state *st;
	struct dlb_cfg cfg;

	*state = NULL;
	if (!g)
		return iap_error_set(err, IAP_EINVAL, "dlb: needs a graph");
	cfg.mode = (enum dlb_mode)pick(opts, "mode");
	cfg.add_rule = (enum dlb_add_rule)pick(opts, "add_rule");
	cfg.maxpool_rule = (enum dlb_maxpool_rule)pick(opts, "maxpool_rule");
	cfg.gap_rule = (enum dlb_gap_rule)pick(opts, "gap_rule");
	cfg.contrast_score = (enum dlb_contrast_score)pick(opts, "contrast_score");
	st = calloc(1, sizeof(*st));
	if (!st)
		return iap_error_set(err, IAP_ENOMEM, "dlb: out of memory");
	dlb_rules_init(&st->rules, &cfg);
	st->base.rs = &st->rules.rs;
	iap_score_opts_from(opts, &st->base.so);
	st->base.so.seed_scale = (float)iap_opts_float(opts, "start");
	*state = st;
	return IAP_OK;
}

static void dlb_destroy(void *state)
{
	struct dlb_state *st = state;

	if (!st)
		return;
	dlb_rules_release(&st->rules);
	free(st);
}

static const struct iap_attribution_ops dlb_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.flags = 0,
	.create = dlb_create,
	.destroy = dlb_destroy,
	.ruleset = rule_plugin_ruleset,
	.seed = rule_plugin_seed,
	.score = NULL,
	.explain = rule_plugin_explain,
};

static const struct iap_plugin_desc dlb_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_ATTRIBUTION,
	.name = "dlb",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "DL-Backtrace relevance (default and contrast modes)",
	.options = dlb_options,
	.init = NULL,
	.fini = NULL,
	.ops.attribution = &dlb_ops,
};

IAP_PLUGIN_DEFINE(dlb_desc)
