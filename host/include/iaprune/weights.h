/*
 * iaprune — loading a graph's parameters from safetensors by torchvision key
 * names, and saving them back.
 */
#ifndef IAPRUNE_WEIGHTS_H
#define IAPRUNE_WEIGHTS_H

#include <iaprune/graph.h>
#include <iaprune/safetensors.h>

#ifdef __cplusplus
extern "C" {
#endif

enum iap_load_flags {
	IAP_LOAD_ALLOW_MISSING = 1u << 0,     /* keep the graph's values for absent keys */
	IAP_LOAD_ALLOW_UNEXPECTED = 1u << 1,  /* ignore keys the graph does not have */
};

/*
 * Copy every parameter and buffer of g from st, matching torchvision's
 * state_dict keys exactly, while tolerating what real exports contain:
 *   - a "module." prefix on every key (DataParallel checkpoints);
 *   - "X.weight_orig" + "X.weight_mask" pairs from torch.nn.utils.prune
 *     (the weight is orig × mask);
 *   - ViT's legacy "mlp.linear_1" / "mlp.linear_2" names (now "mlp.0" / "mlp.3");
 *   - I64 "num_batches_tracked" counters: kept in the BatchNorm's
 *     attr.norm.batches_tracked (not a parameter; never missing);
 *   - F16 and BF16 tensors, converted to float32 (iap_weights_half_note
 *     says how many).
 * Missing keys, unexpected keys and shape mismatches are all collected and
 * reported together in one error; on error g's parameters may be partly
 * overwritten (load into a fresh graph).
 */
int iap_graph_load_weights(struct iap_graph *g, const struct iap_safetensors *st, unsigned flags,
			   struct iap_error *err);

/* Open path, load, close. */
int iap_graph_load_weights_file(struct iap_graph *g, const char *path, unsigned flags,
				struct iap_error *err);

/*
 * Write every parameter and buffer of g (F32, node order) atomically with the
 * metadata, and each BatchNorm's "<name>.num_batches_tracked" as an I64
 * scalar, as torchvision's state_dict has it (a strict load_state_dict needs it).
 */
int iap_graph_save_weights(const struct iap_graph *g, const char *path,
			   const struct iap_st_meta *meta, int n_meta, struct iap_error *err);

/*
 * 1 when st has half-precision float tensors (read as float32), with a note
 * for the user in buf ("3 F16 tensors converted to float32"); 0 otherwise.
 */
int iap_weights_half_note(const struct iap_safetensors *st, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_WEIGHTS_H */
