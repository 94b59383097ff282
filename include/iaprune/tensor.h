/*
 * iaprune — the tensor: a plain struct, float32, contiguous, row-major.
 *
 * Images are NCHW, token sequences N×T×D. There is no reference counting and
 * no hidden sharing: a tensor either owns its data (allocated by
 * iap_tensor_alloc, freed by iap_tensor_free) or is a view the caller built by
 * hand over memory it owns (owns == 0; iap_tensor_free then only resets it).
 */
#ifndef IAPRUNE_TENSOR_H
#define IAPRUNE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IAP_MAX_DIMS 4

/* Largest tensor the library will allocate (elements); refuses before allocating. */
#define IAP_TENSOR_MAX_ELEMS ((int64_t)1 << 33)

struct iap_tensor {
	int ndim;
	int64_t shape[IAP_MAX_DIMS];
	float *data;
	int owns;       /* 1: data came from iap_tensor_alloc and is freed with the tensor */
	int64_t cap;    /* elements the owned buffer holds (>= numel) */
};

/* Number of elements (1 for ndim == 0). */
int64_t iap_tensor_numel(const struct iap_tensor *t);

/*
 * Allocate t as a zero-filled tensor of the given shape (64-byte aligned data).
 * Any data t owned before is freed first. Refuses negative dims and sizes above
 * IAP_TENSOR_MAX_ELEMS without allocating.
 */
int iap_tensor_alloc(struct iap_tensor *t, int ndim, const int64_t *shape,
		     struct iap_error *err);

/*
 * Make t hold the given shape, reusing its buffer when it is already exactly
 * that shape (contents are then left as they are). Otherwise the result is
 * zero-filled, in the same buffer when it is large enough (a smaller last
 * batch does not reallocate) or in a new one. Used for per-batch buffers so
 * repeated passes do not allocate.
 */
int iap_tensor_ensure(struct iap_tensor *t, int ndim, const int64_t *shape,
		      struct iap_error *err);

/* Free owned data and reset t to an empty tensor. Safe on a zeroed struct. */
void iap_tensor_free(struct iap_tensor *t);

/* Deep copy of src into dst (dst is (re)allocated as needed). */
int iap_tensor_copy(struct iap_tensor *dst, const struct iap_tensor *src,
		    struct iap_error *err);

/* Set every element to 0. */
void iap_tensor_zero(struct iap_tensor *t);

/* 1 when a and b have identical ndim and shape. */
int iap_tensor_same_shape(const struct iap_tensor *a, const struct iap_tensor *b);

/* Writes "[2, 3, 224, 224]" into buf (always NUL-terminated); returns buf. */
char *iap_tensor_shape_str(const struct iap_tensor *t, char *buf, size_t len);
char *iap_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

/* Aligned float allocation used for tensors and workspaces (free with iap_free). */
float *iap_alloc_floats(size_t n);
void iap_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_TENSOR_H */
