/*
 * iaprune — memory a run will need, checked before it is allocated. A
 * pipeline with image_size 4096 or a classifier with 10^8 outputs is refused
 * at the start with the estimate and the limit, instead of swapping for
 * minutes and failing (or being killed) half-way.
 *
 * The limit is process-wide: iaprune's --max-memory, by default three
 * quarters of physical memory.
 */
#ifndef IAPRUNE_MEMORY_H
#define IAPRUNE_MEMORY_H

#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/graph.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Labels and classifier outputs beyond this are refused as input errors. */
#define IAP_MAX_CLASSES 1000000

/* Physical memory in bytes (0 when unknown). */
uint64_t iap_memory_physical(void);

/* The limit in bytes: set by iap_memory_limit_set, else 3/4 of physical memory (unknown: no limit). */
uint64_t iap_memory_limit(void);
void iap_memory_limit_set(uint64_t bytes);

/*
 * Parse a size: bytes, or a number with K, M, G or T (powers of 1024; "1.5G"),
 * or a percentage of physical memory ("50%"). Overflow and zero are refused.
 */
int iap_memory_parse(const char *text, uint64_t *bytes, struct iap_error *err);

/* "1.5 GiB", "640 MiB", "12 KiB", "100 bytes". */
void iap_memory_format(uint64_t bytes, char *buf, size_t len);

/*
 * IAP_ELIMIT "<what> needs about X of memory, more than the limit of Y
 * (--max-memory)" when need is over the limit; IAP_OK otherwise.
 */
int iap_memory_check(const char *what, uint64_t need, struct iap_error *err);

/*
 * Bytes a graph needs at a batch size: its parameters (four times over when
 * training: gradients and Adam's two moments), every node's output for the
 * batch, and with backward (training, attribution) about twice that again
 * for the gradients or relevance flowing back. An estimate, on the high side.
 */
uint64_t iap_graph_memory(const struct iap_graph *g, int batch, int training, int backward);

/*
 * Build-only mode (on: nonzero): graphs created meanwhile get parameter
 * shapes but no storage (iap_graph_set_shape_only), so a model plugin's
 * build can be measured before it allocates. Not thread-safe; turn it off again.
 */
void iap_graph_planning(int on);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_MEMORY_H */
