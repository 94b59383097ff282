/*
 * iaprune — NumPy .npz archives (as MedMNIST ships its datasets).
 *
 * An .npz file is a zip archive of .npy arrays (written by the writer at
 * the end of this header). The reader takes the member
 * list from the central directory (zip64 end records and zip64 extra fields
 * included), accepts stored (method 0) and deflated (method 8) members,
 * inflates straight into the array buffer, and checks every member's CRC-32
 * and sizes. .npy headers of versions 1, 2 and 3 are parsed ('descr',
 * 'fortran_order', 'shape'); arrays must be in C order. Element types read:
 * |b1 |u1 |i1, u2 i2 u4 i4 u8 i8 f4 f8 in either byte order.
 *
 * Sizes come from the file and are checked before anything is allocated
 * (IAP_NPZ_MAX_BYTES per array, the deflate expansion bound against the
 * compressed size), so a hostile archive is refused, never trusted. Every
 * failure names the file and the member: "x.npz: train_images.npy: CRC-32
 * mismatch ...".
 */
#ifndef IAPRUNE_NPZ_H
#define IAPRUNE_NPZ_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IAP_NPY_MAX_DIMS 8
/* Largest array payload read (bytes) and largest .npy header. */
#define IAP_NPZ_MAX_BYTES ((uint64_t)1 << 34)
#define IAP_NPY_MAX_HEADER 65536u
#define IAP_NPZ_MAX_MEMBERS 65536

enum iap_npy_dtype {
	IAP_NPY_NONE = 0,   /* iap_npz_read: keep the file's type */
	IAP_NPY_B1,         /* bool, one byte 0/1 */
	IAP_NPY_U1,
	IAP_NPY_I1,
	IAP_NPY_U2,
	IAP_NPY_I2,
	IAP_NPY_U4,
	IAP_NPY_I4,
	IAP_NPY_U8,
	IAP_NPY_I8,
	IAP_NPY_F4,
	IAP_NPY_F8,
	IAP_NPY_DTYPE_COUNT
};

/* NumPy's name ("uint8", "float32", ...) and element size in bytes. */
const char *iap_npy_dtype_name(enum iap_npy_dtype dtype);
size_t iap_npy_dtype_size(enum iap_npy_dtype dtype);

/* One member of the archive as the central directory describes it. */
struct iap_npz_member {
	char *name;             /* as stored, e.g. "train_images.npy" */
	uint16_t method;        /* 0 stored, 8 deflated */
	uint16_t flags;
	uint32_t crc32;
	uint64_t comp_size, size;
	uint64_t local_offset;  /* of the local file header */
};

struct iap_npz {
	char *path;             /* for messages */
	int n_members;
	struct iap_npz_member *members;
	const unsigned char *data;  /* whole archive (mapped or the caller's buffer) */
	size_t len;
	void *map;              /* non-NULL when we mapped the file */
	size_t map_len;
};

/* An array read from a member: native byte order, C order, owned data. */
struct iap_npy {
	enum iap_npy_dtype dtype;
	int ndim;               /* 0 for a scalar */
	int64_t shape[IAP_NPY_MAX_DIMS];
	int64_t numel;
	void *data;             /* numel elements of dtype (free with iap_npy_free) */
};

/* Open an archive and read its member list. */
int iap_npz_open(const char *path, struct iap_npz **out, struct iap_error *err);

/* The same over a buffer the caller keeps alive until iap_npz_close; name is for messages. */
int iap_npz_open_mem(const void *buf, size_t len, const char *name, struct iap_npz **out,
		     struct iap_error *err);

void iap_npz_close(struct iap_npz *npz);

/* The member called name, or name + ".npy" ("train_images" finds "train_images.npy"); NULL if none. */
const struct iap_npz_member *iap_npz_find(const struct iap_npz *npz, const char *name);

/*
 * Read array `name` (found as by iap_npz_find) into arr, converted to `want`
 * (IAP_NPY_NONE keeps the file's type). Conversions are value-checked: to an
 * integer type every value must be integral and in range (a float label of
 * 2.5 or a uint8 target of 300 is an error naming the element), to float32
 * every value must fit (NaN and Inf pass through). A missing member is an
 * error listing the members there are. arr is freed first.
 */
int iap_npz_read(struct iap_npz *npz, const char *name, enum iap_npy_dtype want,
		 struct iap_npy *arr, struct iap_error *err);

void iap_npy_free(struct iap_npy *arr);

/*
 * Writing an archive, as numpy.savez does (stored members, little-endian
 * C-order arrays, .npy format 1.0): open, add members in order, commit. The
 * archive goes to a temporary file renamed over path at commit (see
 * <iaprune/atomic.h>), so a failure or an abort leaves any old file intact.
 * Archives must stay under 4 GiB (no zip64). After a failed add, only
 * commit (which then fails) or abort is allowed; both free the writer.
 */
/*
 * The .npy (version 1.0) preamble and header of an array of dtype and shape,
 * padded so the data starts 64-byte aligned as numpy writes it, into buf
 * (IAP_NPY_HEADER_MAX bytes are always enough). Returns its length, or 0 for an
 * unsupported dtype, a bad rank or a negative dimension.
 */
#define IAP_NPY_HEADER_MAX 512
size_t iap_npy_header(enum iap_npy_dtype dtype, int ndim, const int64_t *shape, unsigned char *buf, size_t cap);

struct iap_npz_writer;

int iap_npz_writer_open(struct iap_npz_writer **out, const char *path, struct iap_error *err);
/* Member name + ".npy"; shape[ndim] (ndim 0: a scalar), numel elements of dtype at data. */
int iap_npz_writer_add(struct iap_npz_writer *w, const char *name, enum iap_npy_dtype dtype, int ndim,
		       const int64_t *shape, const void *data, struct iap_error *err);
int iap_npz_writer_add_f32(struct iap_npz_writer *w, const char *name, int ndim, const int64_t *shape,
			   const float *data, struct iap_error *err);
int iap_npz_writer_commit(struct iap_npz_writer *w, struct iap_error *err);
void iap_npz_writer_abort(struct iap_npz_writer *w);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_NPZ_H */
