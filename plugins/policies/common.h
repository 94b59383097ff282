/*
 * What the pruning policies (global, layerwise) share: the option schema,
 * which groups may be pruned, coupled groups merged into one "layer", the
 * per-group score normalisation, the per-layer caps and the exact target.
 *
 * LAYERS. A layer is what a policy prunes as one: an uncoupled unit group,
 * or all the groups sharing one coupling id >= 0 (ResNet residual channels),
 * which must have the same number of units. A coupled unit u is scored by
 * the sum of its members' (normalised) scores, masked in every member at
 * once, and counts as n_members units towards the rate.
 *
 * IGNORED GROUPS. A group is never pruned when in->ignore[g] is set or its
 * name matches one of the comma-separated fnmatch(3) patterns of the
 * `ignore` option. Ignoring one member of a coupled set ignores the whole
 * set (its units are shared). Ignored groups count towards nothing.
 *
 * TARGET. total = units of all layers (coupled ones counted per member),
 * target = round(rate * total). A policy never prunes more than target. It
 * prunes exactly target unless a cap binds, except that with coupled layers
 * it may stop short by less than one coupled unit (fewer than the largest
 * n_members units): a coupled unit is only taken when it fits in what is
 * left of the target.
 *
 * CAPS. A layer of n units loses at most min(floor(max_layer_rate * n),
 * n - min_units) units (never negative).
 *
 * PRIOR MASKS. Units that in->prior_keep prunes (an earlier step of
 * iterative pruning, at a lower rate) are pruned in keep from the start and
 * count towards the target and the caps; the policies choose only the rest.
 * An earlier step that pruned more than the target, or more than a cap, or
 * in an ignored group, or in only some members of a coupled set, is an
 * error.
 */
#ifndef IAP_POLICIES_COMMON_H
#define IAP_POLICIES_COMMON_H

#include <stdint.h>

#include <iaprune/plugin.h>

/* The options both policies take: normalize, ignore. */
extern const struct iap_option iap_pol_options[];

/* The `normalize` choices, in the order of iap_pol_options' choices (common.c checks). */
enum iap_pol_norm { IAP_POL_NORM_NONE, IAP_POL_NORM_L1, IAP_POL_NORM_L2, IAP_POL_NORM_MAX, IAP_POL_NORM_COUNT };

/* The options, read once per mask() (the policy ABI has no create step). */
struct iap_pol_opts {
	enum iap_pol_norm normalize;
	const char *ignore;       /* comma-separated fnmatch patterns; valid while the opts live */
};

void iap_pol_opts_parse(const struct iap_opts *opts, struct iap_pol_opts *o);

struct iap_pol_layer {
	int n_members;    /* groups masked together (1 when uncoupled) */
	int *members;     /* their indices, ascending; members[0] orders the layers */
	int n_units;
	int max_prune;    /* the cap */
	double *score;    /* [n_units]: sum over members of the normalised scores */
	uint8_t *fixed;   /* [n_units]: 1 = pruned by the prior mask (kept pruned) */
	int n_fixed;
};

struct iap_pol_plan {
	int n_layers;                 /* ordered by first member group */
	struct iap_pol_layer *layers;
	int64_t total;                /* prunable units, coupled ones counted per member */
	int64_t target;               /* round(rate * total) */
	int64_t n_fixed;              /* units the prior mask prunes, coupled ones counted per member */
	int *member_buf;
	double *score_buf;
	uint8_t *fixed_buf;
};

/*
 * Check the input, set every keep[g][u] to 1, and build the layers. On
 * failure nothing needs freeing.
 */
int iap_pol_plan_build(const char *policy, const struct iap_pol_opts *o, const struct iap_policy_input *in,
		       uint8_t *const *keep, struct iap_pol_plan *plan, struct iap_error *err);
void iap_pol_plan_free(struct iap_pol_plan *plan);

/* Prune unit u of layer l: zero it in every member's keep row. */
void iap_pol_prune(const struct iap_pol_plan *plan, int l, int u, uint8_t *const *keep);

#endif
