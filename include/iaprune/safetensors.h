/*
 * iaprune — safetensors weights: a validating reader and an atomic writer.
 *
 * The reader implements the whole format: an 8-byte little-endian header
 * length (at most 100 MB), a JSON header mapping tensor names to dtype, shape
 * and data_offsets (relative to the data buffer, contiguous, no holes and no
 * overlaps, covering the buffer exactly), and an optional "__metadata__"
 * object of strings. F32, F16 and BF16 tensors are read as float32; I64
 * (PyTorch's num_batches_tracked) is read as int64. Everything else
 * is an error naming the file and the tensor. Nothing is ever read past the
 * end of the file: the file is mapped once and every offset is checked first.
 */
#ifndef IAPRUNE_SAFETENSORS_H
#define IAPRUNE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IAP_ST_MAX_HEADER (100u * 1000u * 1000u)
#define IAP_ST_MAX_DIMS 8

enum iap_st_dtype {
	IAP_ST_F32 = 0,
	IAP_ST_F16,
	IAP_ST_BF16,
	IAP_ST_I64,
};

struct iap_st_tensor {
	char *name;
	enum iap_st_dtype dtype;
	int ndim;
	int64_t shape[IAP_ST_MAX_DIMS];
	int64_t numel;
	uint64_t begin, end;        /* byte range within the data buffer */
};

struct iap_st_meta {
	char *key;
	char *value;
};

struct iap_safetensors {
	char *path;                 /* for messages */
	int n_tensors;
	struct iap_st_tensor *tensors;  /* in file order of their data */
	int n_meta;
	struct iap_st_meta *meta;
	const unsigned char *data;  /* the data buffer */
	uint64_t data_len;
	void *map;                  /* whole file (mmap) or owned copy */
	size_t map_len;
	int mapped;
};

/* Open and validate a file. On failure *out is NULL and err names the file. */
int iap_safetensors_open(const char *path, struct iap_safetensors **out, struct iap_error *err);

/* The same from memory (copied); `name` is used in messages. */
int iap_safetensors_open_mem(const void *buf, size_t len, const char *name,
			     struct iap_safetensors **out, struct iap_error *err);

void iap_safetensors_close(struct iap_safetensors *st);

/* Tensor by exact name, or NULL. */
const struct iap_st_tensor *iap_safetensors_find(const struct iap_safetensors *st, const char *name);

/* Metadata value by key, or NULL. */
const char *iap_safetensors_meta(const struct iap_safetensors *st, const char *key);

/* Convert a float tensor (F32/F16/BF16) into dst, which holds exactly t->numel floats. */
int iap_safetensors_read_f32(const struct iap_safetensors *st, const struct iap_st_tensor *t,
			     float *dst, struct iap_error *err);

/* Read an I64 tensor into dst, which holds exactly t->numel values. */
int iap_safetensors_read_i64(const struct iap_safetensors *st, const struct iap_st_tensor *t, int64_t *dst,
			     struct iap_error *err);

/* dtype as the format spells it ("F32", ...). */
const char *iap_st_dtype_name(enum iap_st_dtype dtype);

/* One tensor to write: name and float32 data. */
struct iap_st_entry {
	const char *name;
	const struct iap_tensor *tensor;
};

/*
 * Write tensors as F32 with the given metadata (n_meta key/value pairs)
 * atomically: a temporary file in the same directory, fsync, rename. The
 * header is padded with spaces to a multiple of 8 bytes. On failure the
 * destination is untouched and no temporary file is left.
 */
int iap_safetensors_write(const char *path, const struct iap_st_entry *entries, int n,
			  const struct iap_st_meta *meta, int n_meta, struct iap_error *err);

/* One I64 scalar (shape []) to write, e.g. a BatchNorm's num_batches_tracked. */
struct iap_st_i64 {
	const char *name;
	int64_t value;
};

/* iap_safetensors_write with n_ints I64 scalars after the float tensors. */
int iap_safetensors_write_ex(const char *path, const struct iap_st_entry *entries, int n,
			     const struct iap_st_i64 *ints, int n_ints, const struct iap_st_meta *meta,
			     int n_meta, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_SAFETENSORS_H */
