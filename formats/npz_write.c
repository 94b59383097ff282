/*
 * Writing NumPy .npz archives (see <iaprune/npz.h>): a zip of .npy members,
 * stored (method 0), as numpy.savez writes them. Members stream straight
 * into an atomic output file (formats/atomic.c); the central directory and
 * end record follow at commit, so a reader never sees half an archive and a
 * failed or abandoned writer leaves the old file alone. No zip64: an archive
 * whose offsets would pass 4 GiB is refused with a message saying so.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <iaprune/atomic.h>
#include <iaprune/npz.h>

#define ZIP_LIMIT 0xffffffffull

struct npz_entry {
	char *name;            /* with ".npy" */
	uint32_t crc, size;
	uint32_t offset;       /* of the local header */
};

struct iap_npz_writer {
	struct iap_atomic_file af;
	char *path;
	uint64_t pos;          /* bytes written so far */
	int n, cap;
	struct npz_entry *e;
	int failed;            /* a write failed: commit refuses */
};

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

/* numpy's descr for dtype, little-endian; NULL for IAP_NPY_NONE. */
static const char *descr_of(enum iap_npy_dtype t)
{
	static const char *const d[IAP_NPY_DTYPE_COUNT] = {
		[IAP_NPY_B1] = "|b1", [IAP_NPY_U1] = "|u1", [IAP_NPY_I1] = "|i1", [IAP_NPY_U2] = "<u2",
		[IAP_NPY_I2] = "<i2", [IAP_NPY_U4] = "<u4", [IAP_NPY_I4] = "<i4", [IAP_NPY_U8] = "<u8",
		[IAP_NPY_I8] = "<i8", [IAP_NPY_F4] = "<f4", [IAP_NPY_F8] = "<f8",
	};

	return (unsigned)t < IAP_NPY_DTYPE_COUNT ? d[t] : NULL;
}

size_t iap_npy_header(enum iap_npy_dtype dtype, int ndim, const int64_t *shape, unsigned char *buf, size_t cap)
{
	static const unsigned char magic[8] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0 };
	const char *descr = descr_of(dtype);
	char dims[300] = "", *dict = (char *)buf + 10;
	size_t len, total;

	if (!descr || ndim < 0 || ndim > IAP_NPY_MAX_DIMS || cap < 128)
		return 0;
	for (int i = 0; i < ndim; i++) {
		size_t at = strlen(dims);

		if (shape[i] < 0)
			return 0;
		snprintf(dims + at, sizeof(dims) - at, "%s%lld%s", i ? " " : "", (long long)shape[i],
			 ndim == 1 || i + 1 < ndim ? "," : "");
	}
	snprintf(dict, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
	/* Spaces and a '\n' so the data starts 64-byte aligned, as numpy writes. */
	len = strlen(dict);
	total = (10 + len + 1 + 63) / 64 * 64;
	if (total > cap || total - 10 > 65535)
		return 0;
	while (10 + len + 1 < total)
		dict[len++] = ' ';
	dict[len++] = '\n';
	memcpy(buf, magic, sizeof(magic));
	put16(buf + 8, (uint16_t)len);
	return 10 + len;
}

int iap_npz_writer_open(struct iap_npz_writer **out, const char *path, struct iap_error *err)
{
	struct iap_npz_writer *w = calloc(1, sizeof(*w));
	int rc;

	*out = NULL;
	if (!w || !(w->path = strdup(path))) {
		free(w);
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	}
	rc = iap_atomic_open(&w->af, path, err);
	if (rc) {
		free(w->path);
		free(w);
		return rc;
	}
	*out = w;
	return IAP_OK;
}

static int wfail(struct iap_npz_writer *w, struct iap_error *err, const char *name)
{
	w->failed = 1;
	return iap_error_set(err, IAP_EIO, "%s: %s: cannot write", w->path, name);
}

static int wbytes(struct iap_npz_writer *w, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, w->af.fp) != n)
		return -1;
	w->pos += n;
	return 0;
}

int iap_npz_writer_add(struct iap_npz_writer *w, const char *name, enum iap_npy_dtype dtype, int ndim,
		       const int64_t *shape, const void *data, struct iap_error *err)
{
	const char *descr = descr_of(dtype);
	const size_t esize = iap_npy_dtype_size(dtype);
	char *mname;
	unsigned char hdr[IAP_NPY_HEADER_MAX], lh[30];
	const uint16_t one = 1;
	uint64_t numel = 1, bytes;
	size_t hlen, nlen;
	uint32_t crc;

	if (w->failed)
		return iap_error_set(err, IAP_EIO, "%s: an earlier member failed", w->path);
	if (!descr || ndim < 0 || ndim > IAP_NPY_MAX_DIMS)
		return iap_error_set(err, IAP_EINVAL, "%s: %s: unsupported dtype or %d dimensions", w->path,
				     name, ndim);
	if (w->n >= IAP_NPZ_MAX_MEMBERS || w->n >= 65535)
		return iap_error_set(err, IAP_EINVAL, "%s: too many members", w->path);
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return iap_error_set(err, IAP_EINVAL, "%s: %s: negative dimension", w->path, name);
		numel *= (uint64_t)shape[i];
	}
	hlen = iap_npy_header(dtype, ndim, shape, hdr, sizeof(hdr));
	if (!hlen)
		return iap_error_set(err, IAP_EINVAL, "%s: %s: the .npy header is too long", w->path, name);
	bytes = numel * esize;
	nlen = strlen(name) + 4;
	if (hlen + bytes >= ZIP_LIMIT || w->pos + 30 + nlen + hlen + bytes >= ZIP_LIMIT)
		return iap_error_set(err, IAP_EINVAL, "%s: %s: the archive would pass 4 GiB (no zip64 writing)",
				     w->path, name);
	if (*(const unsigned char *)&one != 1 && esize > 1)
		return iap_error_set(err, IAP_EUNSUPPORTED, "%s: writing .npz on a big-endian host", w->path);
	if (w->n == w->cap) {
		int cap = w->cap ? 2 * w->cap : 16;
		struct npz_entry *e = realloc(w->e, (size_t)cap * sizeof(*e));

		if (!e)
			return iap_error_set(err, IAP_ENOMEM, "out of memory");
		w->e = e;
		w->cap = cap;
	}
	mname = malloc(nlen + 1);
	if (!mname)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	snprintf(mname, nlen + 1, "%s.npy", name);
	crc = (uint32_t)crc32(0L, hdr, (uInt)hlen);
	/* crc32() counts in uInt: at most 1 GiB per call. */
	for (uint64_t off = 0; off < bytes;) {
		uInt c = bytes - off > (1u << 30) ? (1u << 30) : (uInt)(bytes - off);

		crc = (uint32_t)crc32(crc, (const unsigned char *)data + off, c);
		off += c;
	}
	memset(lh, 0, sizeof(lh));
	put32(lh, 0x04034b50u);
	put16(lh + 4, 20);                   /* version needed: 2.0 */
	put32(lh + 14, crc);
	put32(lh + 18, (uint32_t)(hlen + bytes));
	put32(lh + 22, (uint32_t)(hlen + bytes));
	put16(lh + 26, (uint16_t)nlen);
	w->e[w->n] = (struct npz_entry){ .name = mname, .crc = crc, .size = (uint32_t)(hlen + bytes),
					 .offset = (uint32_t)w->pos };
	w->n++;
	if (wbytes(w, lh, sizeof(lh)) || wbytes(w, mname, nlen) || wbytes(w, hdr, hlen) ||
	    wbytes(w, data, (size_t)bytes))
		return wfail(w, err, mname);
	return IAP_OK;
}

int iap_npz_writer_add_f32(struct iap_npz_writer *w, const char *name, int ndim, const int64_t *shape,
			   const float *data, struct iap_error *err)
{
	return iap_npz_writer_add(w, name, IAP_NPY_F4, ndim, shape, data, err);
}

void iap_npz_writer_abort(struct iap_npz_writer *w)
{
	if (!w)
		return;
	iap_atomic_abort(&w->af);
	for (int i = 0; i < w->n; i++)
		free(w->e[i].name);
	free(w->e);
	free(w->path);
	free(w);
}

int iap_npz_writer_commit(struct iap_npz_writer *w, struct iap_error *err)
{
	uint64_t cd_start = w->pos;
	unsigned char c[46], eocd[22];
	int rc;

	if (w->failed) {
		rc = iap_error_set(err, IAP_EIO, "%s: an earlier member failed", w->path);
		goto fail;
	}
	for (int i = 0; i < w->n; i++) {
		size_t nlen = strlen(w->e[i].name);

		memset(c, 0, sizeof(c));
		put32(c, 0x02014b50u);
		put16(c + 4, 20);                /* made by: 2.0 (MS-DOS attributes) */
		put16(c + 6, 20);
		put32(c + 16, w->e[i].crc);
		put32(c + 20, w->e[i].size);
		put32(c + 24, w->e[i].size);
		put16(c + 28, (uint16_t)nlen);
		put32(c + 42, w->e[i].offset);
		if (wbytes(w, c, sizeof(c)) || wbytes(w, w->e[i].name, nlen)) {
			rc = wfail(w, err, "central directory");
			goto fail;
		}
	}
	if (w->pos >= ZIP_LIMIT) {
		rc = iap_error_set(err, IAP_EINVAL, "%s: the archive would pass 4 GiB (no zip64 writing)", w->path);
		goto fail;
	}
	memset(eocd, 0, sizeof(eocd));
	put32(eocd, 0x06054b50u);
	put16(eocd + 8, (uint16_t)w->n);
	put16(eocd + 10, (uint16_t)w->n);
	put32(eocd + 12, (uint32_t)(w->pos - cd_start));
	put32(eocd + 16, (uint32_t)cd_start);
	if (wbytes(w, eocd, sizeof(eocd))) {
		rc = wfail(w, err, "end record");
		goto fail;
	}
	rc = iap_atomic_commit(&w->af, err);
	for (int i = 0; i < w->n; i++)
		free(w->e[i].name);
	free(w->e);
	free(w->path);
	free(w);
	return rc;
fail:
	iap_npz_writer_abort(w);
	return rc;
}
