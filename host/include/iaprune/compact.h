/*
 * iaprune — compaction: turning a masked graph into a physically smaller one.
 *
 * A mask makes a pruned unit exactly zero but leaves its weights in place.
 * Compaction builds a NEW graph without those units: the producing layer loses
 * its output rows (conv filters and bias, linear rows, the following
 * BatchNorm's entries), channel-preserving ops carry the kept channel list
 * forward (activations, dropout, pools, BatchNorm, add, tokens, token
 * select), flatten expands it to the kept c·H·W blocks, and consumers lose
 * the matching input columns (conv in_ch, linear inputs). A pruned attention head takes its q, k and v rows of the packed
 * in_proj with it, num_heads shrinks and out_proj loses the head's columns.
 * Node ids, node names, parameter keys and unit group names do not change, so
 * compacted weights keep torchvision's keys.
 *
 * Residual additions need both operands to keep the same channels. Groups
 * that share a coupling id (ResNet's residual channels) are therefore pruned
 * together: by default a channel is removed only when every group of its
 * coupling prunes it, and a channel that some but not all of them prune stays,
 * its weights zeroed in the new graph (exactly what the mask did). With
 * IAP_COMPACT_STRICT such a half-pruned coupling is refused instead. Either
 * way, an add whose operands still disagree (residual units declared without
 * a coupling id) is an error naming the add and the groups involved.
 *
 * The masked and the compacted graph compute the same outputs (up to float
 * rounding: the GEMMs are shorter).
 */
#ifndef IAPRUNE_COMPACT_H
#define IAPRUNE_COMPACT_H

#include <iaprune/graph.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The safetensors __metadata__ key under which the keep masks are stored. */
#define IAP_KEEP_META_KEY "iaprune.keep"
/*
 * The same masks on a masked (same-shape, zeros baked in) file: loading sets
 * them as the graph's masks instead of compacting, so the pruned units count.
 */
#define IAP_MASK_META_KEY "iaprune.mask"

enum iap_compact_flags {
	/* Refuse coupled groups whose masks differ instead of keeping the union. */
	IAP_COMPACT_STRICT = 1u << 0,
};

/*
 * Build in *out a new finalized graph in which every unit masked off in g is
 * removed (see above). g is not changed and may be shape-only (the result is
 * then shape-only too, for counting parameters and MACs). Every unit group
 * keeps its name, coupling and unit size, with n_units = the kept count and
 * no mask. Refused (IAP_EUNSUPPORTED / IAP_EINVAL, *out NULL) when a group
 * would lose all its units, when the graph output itself would shrink, or
 * when pruned positions reach an op that cannot drop them: layernorm or
 * softmax over the pruned axis, or an op that would make them non-zero in
 * the masked graph (a BatchNorm that is not where the mask sits, a class
 * token or position embedding).
 */
int iap_graph_compact(const struct iap_graph *g, unsigned flags, struct iap_graph **out,
		      struct iap_error *err);

/*
 * Make the masks permanent in g's weights so the masked model can be saved as
 * a plain, same-shape safetensors: for every masked unit, zero its conv filter
 * or linear row and bias, and when a BatchNorm follows set its weight and bias
 * to 0 (so its output is 0 whatever the running statistics); for a pruned
 * attention head, zero its v rows and bias in the packed in_proj (its context
 * columns become 0). The consumers' side is zeroed too: every conv or linear
 * weight column reading a position that compaction would remove (for
 * example the next conv's input channel of a pruned filter, the classifier
 * columns of a pruned VGG channel after flatten, out_proj's columns of a
 * pruned head); a graph iap_graph_compact refuses gets its units zeroed
 * only. Afterwards g computes the same outputs with or without its masks;
 * the masks are left as they are.
 */
int iap_graph_bake_masks(struct iap_graph *g, struct iap_error *err);

/*
 * What the masks of g remove, as one string for IAP_KEEP_META_KEY:
 *   "<group>=<n_units>:<hex>;<group>=<n_units>:<hex>;..."
 * listing only groups that prune something ("" when none do). <hex> is the
 * keep mask as a bitstring, 4 units per digit, unit 4i in the digit's most
 * significant bit, padded with 0 bits. Returns a malloc'ed string (free()),
 * or NULL with err set (a group name containing '=', ':' or ';').
 */
char *iap_graph_keep_metadata(const struct iap_graph *g, struct iap_error *err);

/*
 * The inverse: set the masks of a freshly built full-size graph from a string
 * written by iap_graph_keep_metadata (groups not listed get no mask), so that
 * iap_graph_compact(full) rebuilds the compacted architecture and compacted
 * weights load onto it by key. The whole string is checked first (unknown or
 * ambiguous group, unit count, digits, padding); on error no mask changes.
 */
int iap_graph_apply_keep_metadata(struct iap_graph *full, const char *meta, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_COMPACT_H */
