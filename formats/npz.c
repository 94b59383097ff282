/*
 * .npz reader (see include/iaprune/npz.h): a zip central-directory walker,
 * a member reader that inflates (raw deflate, zlib windowBits -15) straight
 * into the destination while computing the CRC-32, and a parser for the
 * Python-literal header of .npy arrays.
 *
 * The archive is mapped once; every offset and length read from it is
 * checked against the mapping before use.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include <iaprune/npz.h>

#include "file.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define EOCD_LEN 22
#define CENTRAL_LEN 46
#define LOCAL_LEN 30
/* Deflate cannot expand data by more than ~1032:1; a larger claim is a lie. */
#define DEFLATE_MAX_RATIO 1032u

static const struct {
	const char *name;
	char code;       /* 'b', 'u', 'i', 'f' */
	unsigned size;
} dtypes[IAP_NPY_DTYPE_COUNT] = {
	[IAP_NPY_NONE] = { "none", 0, 0 },
	[IAP_NPY_B1] = { "bool", 'b', 1 },
	[IAP_NPY_U1] = { "uint8", 'u', 1 },
	[IAP_NPY_I1] = { "int8", 'i', 1 },
	[IAP_NPY_U2] = { "uint16", 'u', 2 },
	[IAP_NPY_I2] = { "int16", 'i', 2 },
	[IAP_NPY_U4] = { "uint32", 'u', 4 },
	[IAP_NPY_I4] = { "int32", 'i', 4 },
	[IAP_NPY_U8] = { "uint64", 'u', 8 },
	[IAP_NPY_I8] = { "int64", 'i', 8 },
	[IAP_NPY_F4] = { "float32", 'f', 4 },
	[IAP_NPY_F8] = { "float64", 'f', 8 },
};

const char *iap_npy_dtype_name(enum iap_npy_dtype dtype)
{
	return (unsigned)dtype < IAP_NPY_DTYPE_COUNT ? dtypes[dtype].name : "?";
}

size_t iap_npy_dtype_size(enum iap_npy_dtype dtype)
{
	return (unsigned)dtype < IAP_NPY_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* ---- the central directory ------------------------------------------------------ */

static int zip_fail(const struct iap_npz *z, struct iap_error *err, const char *what)
{
	return iap_error_set(err, IAP_EFORMAT, "%s: corrupt zip archive: %s", z->path, what);
}

/* Apply a zip64 extended-information extra field to the fields that overflowed. */
static int central_zip64(const struct iap_npz *z, struct iap_npz_member *m,
			 const unsigned char *ex, size_t exlen, int need_size, int need_csize,
			 int need_offset, struct iap_error *err)
{
	while (exlen >= 4) {
		uint16_t id = le16(ex), sz = le16(ex + 2);
		const unsigned char *p = ex + 4;
		size_t want = 8u * (size_t)(need_size + need_csize + need_offset);

		if (sz > exlen - 4)
			return zip_fail(z, err, "extra field runs past its entry");
		if (id == 0x0001) {
			if (sz < want)
				return zip_fail(z, err, "zip64 extra field too short");
			/* The order is fixed: size, compressed size, offset, each only when needed. */
			if (need_size) {
				m->size = le64(p);
				p += 8;
			}
			if (need_csize) {
				m->comp_size = le64(p);
				p += 8;
			}
			if (need_offset)
				m->local_offset = le64(p);
			return IAP_OK;
		}
		ex += 4 + sz;
		exlen -= 4 + (size_t)sz;
	}
	if (need_size || need_csize || need_offset)
		return zip_fail(z, err, "32-bit field marked zip64 but no zip64 extra field");
	return IAP_OK;
}

static int zip_parse(struct iap_npz *z, struct iap_error *err)
{
	const unsigned char *d = z->data, *eocd = NULL;
	uint64_t entries, cd_size, cd_offset, cd_limit;
	size_t lo, pos;

	if (z->len < EOCD_LEN)
		return iap_error_set(err, IAP_EFORMAT, "%s: not a zip archive (%zu bytes)", z->path,
				     z->len);
	/* The end record sits in the last 22 + 65535 (comment) bytes; take the last one found. */
	lo = z->len - EOCD_LEN > 65535 ? z->len - EOCD_LEN - 65535 : 0;
	for (pos = z->len - EOCD_LEN + 1; pos-- > lo;) {
		if (le32(d + pos) == SIG_EOCD && pos + EOCD_LEN + le16(d + pos + 20) <= z->len) {
			eocd = d + pos;
			break;
		}
	}
	if (!eocd)
		return iap_error_set(err, IAP_EFORMAT,
				     "%s: not a zip archive (no end of central directory record)",
				     z->path);
	if (le16(eocd + 4) != 0 || le16(eocd + 6) != 0)
		return iap_error_set(err, IAP_EUNSUPPORTED, "%s: multi-disk zip archives are not supported",
				     z->path);
	entries = le16(eocd + 10);
	cd_size = le32(eocd + 12);
	cd_offset = le32(eocd + 16);
	cd_limit = pos;
	if (pos >= 20 && le32(d + pos - 20) == SIG_LOCATOR64) {
		uint64_t off = le64(d + pos - 20 + 8);

		if (off > pos - 20 || pos - 20 - off < 56 || le32(d + off) != SIG_EOCD64)
			return zip_fail(z, err, "bad zip64 end of central directory locator");
		if (le32(d + off + 16) != 0 || le32(d + off + 20) != 0)
			return iap_error_set(err, IAP_EUNSUPPORTED,
					     "%s: multi-disk zip archives are not supported", z->path);
		entries = le64(d + off + 32);
		cd_size = le64(d + off + 40);
		cd_offset = le64(d + off + 48);
		cd_limit = off;
	} else if (entries == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
		return zip_fail(z, err, "zip64 end of central directory record missing");
	}
	if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
		return zip_fail(z, err, "central directory outside the file");
	if (entries > IAP_NPZ_MAX_MEMBERS)
		return iap_error_set(err, IAP_ELIMIT, "%s: too many members (%" PRIu64 "; limit %d)",
				     z->path, entries, IAP_NPZ_MAX_MEMBERS);
	if (entries * CENTRAL_LEN > cd_size)
		return zip_fail(z, err, "central directory too small for its entries");

	z->members = calloc(entries ? entries : 1, sizeof(*z->members));
	if (!z->members)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", z->path);
	pos = cd_offset;
	for (uint64_t i = 0; i < entries; i++) {
		const unsigned char *e = d + pos;
		struct iap_npz_member *m = &z->members[i];
		size_t left = cd_offset + cd_size - pos, nlen, xlen, clen;
		int rc;

		if (left < CENTRAL_LEN || le32(e) != SIG_CENTRAL)
			return zip_fail(z, err, "bad central directory entry");
		nlen = le16(e + 28);
		xlen = le16(e + 30);
		clen = le16(e + 32);
		if (CENTRAL_LEN + nlen + xlen + clen > left)
			return zip_fail(z, err, "central directory entry runs past the directory");
		if (nlen == 0 || memchr(e + CENTRAL_LEN, 0, nlen))
			return zip_fail(z, err, "empty or NUL-containing member name");
		m->name = malloc(nlen + 1);
		if (!m->name)
			return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", z->path);
		memcpy(m->name, e + CENTRAL_LEN, nlen);
		m->name[nlen] = '\0';
		z->n_members++;
		m->flags = le16(e + 8);
		m->method = le16(e + 10);
		m->crc32 = le32(e + 16);
		m->comp_size = le32(e + 20);
		m->size = le32(e + 24);
		m->local_offset = le32(e + 42);
		rc = central_zip64(z, m, e + CENTRAL_LEN + nlen, xlen, m->size == 0xffffffffu,
				   m->comp_size == 0xffffffffu, m->local_offset == 0xffffffffu, err);
		if (rc)
			return rc;
		/* The member's data is checked when it is read; here only that its header can exist. */
		if (m->local_offset > cd_offset || cd_offset - m->local_offset < LOCAL_LEN)
			return iap_error_set(err, IAP_EFORMAT,
					     "%s: %s: corrupt zip archive: local header offset %" PRIu64
					     " outside the file", z->path, m->name, m->local_offset);
		pos += CENTRAL_LEN + nlen + xlen + clen;
	}
	return IAP_OK;
}

static int npz_alloc(const char *name, struct iap_npz **out, struct iap_error *err)
{
	struct iap_npz *z = calloc(1, sizeof(*z));

	if (z)
		z->path = strdup(name);
	if (!z || !z->path) {
		free(z);
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
	}
	*out = z;
	return IAP_OK;
}

int iap_npz_open_mem(const void *buf, size_t len, const char *name, struct iap_npz **out,
		     struct iap_error *err)
{
	struct iap_npz *z;
	int rc;

	*out = NULL;
	if (!name)
		name = "<memory>";
	if (!buf && len)
		return iap_error_set(err, IAP_EINVAL, "%s: no buffer", name);
	rc = npz_alloc(name, &z, err);
	if (rc)
		return rc;
	z->data = buf;
	z->len = len;
	rc = zip_parse(z, err);
	if (rc) {
		iap_npz_close(z);
		return rc;
	}
	*out = z;
	return IAP_OK;
}

int iap_npz_open(const char *path, struct iap_npz **out, struct iap_error *err)
{
	struct iap_npz *z;
	struct stat st;
	int fd, rc;

	*out = NULL;
	rc = iap_file_open(path, &fd, &st, err);
	if (rc)
		return rc;
	rc = npz_alloc(path, &z, err);
	if (rc)
		goto out_close;
	if (st.st_size > 0) {
		z->map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (z->map == MAP_FAILED) {
			z->map = NULL;
			rc = iap_error_set(err, IAP_EIO, "%s: cannot map: %s", path, strerror(errno));
			goto out_free;
		}
		z->map_len = (size_t)st.st_size;
		z->data = z->map;
		z->len = z->map_len;
	}
	rc = zip_parse(z, err);
	if (rc)
		goto out_free;
	*out = z;
	close(fd);
	return IAP_OK;

out_free:
	iap_npz_close(z);
out_close:
	close(fd);
	return rc;
}

void iap_npz_close(struct iap_npz *z)
{
	if (!z)
		return;
	for (int i = 0; i < z->n_members; i++)
		free(z->members[i].name);
	free(z->members);
	if (z->map)
		munmap(z->map, z->map_len);
	free(z->path);
	free(z);
}

const struct iap_npz_member *iap_npz_find(const struct iap_npz *z, const char *name)
{
	size_t n = strlen(name);

	for (int i = 0; i < z->n_members; i++) {
		const char *m = z->members[i].name;

		if (!strcmp(m, name))
			return &z->members[i];
		if (!strncmp(m, name, n) && !strcmp(m + n, ".npy"))
			return &z->members[i];
	}
	return NULL;
}

/* ---- reading a member ----------------------------------------------------------- */

struct mreader {
	const struct iap_npz *z;
	const struct iap_npz_member *m;
	const unsigned char *src;
	uint64_t src_len, src_pos;  /* stored members */
	z_stream zs;
	int z_init, z_end;
	uint32_t crc;
	uint64_t produced;
	struct iap_error *err;
};

static int member_fail(const struct mreader *r, int code, const char *fmt, const char *what)
{
	return iap_error_set(r->err, code, "%s: %s: %s%s", r->z->path, r->m->name, fmt, what);
}

/*
 * Read exactly n bytes of the member's uncompressed data into dst. Running
 * out is "truncated"; zlib's complaints are "corrupt deflate data".
 */
static int mread(struct mreader *r, void *dst, uint64_t n)
{
	unsigned char *out = dst;
	uint64_t done = 0;

	if (n > r->m->size - r->produced)
		return member_fail(r, IAP_EFORMAT, "member shorter than its .npy header says", "");
	if (r->m->method == 0) {
		memcpy(out, r->src + r->src_pos, n);
		r->src_pos += n;
		done = n;
	}
	while (done < n) {
		/* zlib counts in uInt: feed at most 1 GiB per call. */
		uint64_t chunk = n - done > (1u << 30) ? 1u << 30 : n - done;
		uint64_t in_left = r->src_len - r->src_pos;
		uInt before_in, before_out;
		int zr;

		if (r->z_end)
			return member_fail(r, IAP_EFORMAT, "truncated: deflate stream ends early", "");
		before_in = r->zs.avail_in = (uInt)(in_left > (1u << 30) ? 1u << 30 : in_left);
		r->zs.next_in = (Bytef *)(uintptr_t)(r->src + r->src_pos);
		before_out = r->zs.avail_out = (uInt)chunk;
		r->zs.next_out = out + done;
		zr = inflate(&r->zs, Z_NO_FLUSH);
		r->src_pos += before_in - r->zs.avail_in;
		done += before_out - r->zs.avail_out;
		if (zr == Z_STREAM_END) {
			r->z_end = 1;
		} else if (zr == Z_BUF_ERROR || (zr == Z_OK && before_in == r->zs.avail_in &&
						 before_out == r->zs.avail_out)) {
			return member_fail(r, IAP_EFORMAT, "truncated deflate data", "");
		} else if (zr != Z_OK) {
			return member_fail(r, IAP_EFORMAT, "corrupt deflate data: ",
					   r->zs.msg ? r->zs.msg : "inflate failed");
		}
	}
	/* crc32() takes uInt lengths too. */
	for (uint64_t off = 0; off < n;) {
		uInt c = (uInt)(n - off > (1u << 30) ? 1u << 30 : n - off);

		r->crc = (uint32_t)crc32(r->crc, out + off, c);
		off += c;
	}
	r->produced += n;
	return IAP_OK;
}

/* After the last byte: the deflate stream must end here, and the CRC must match. */
static int mfinish(struct mreader *r)
{
	char buf[96];

	if (r->m->method == 8 && !r->z_end) {
		unsigned char extra;
		int zr;

		r->zs.next_in = (Bytef *)(uintptr_t)(r->src + r->src_pos);
		r->zs.avail_in = (uInt)(r->src_len - r->src_pos > (1u << 30) ? 1u << 30
									   : r->src_len - r->src_pos);
		r->zs.next_out = &extra;
		r->zs.avail_out = 1;
		zr = inflate(&r->zs, Z_NO_FLUSH);
		if (zr == Z_OK && r->zs.avail_out == 0)
			return member_fail(r, IAP_EFORMAT,
					   "deflate data longer than the declared size", "");
		if (zr != Z_STREAM_END)
			return member_fail(r, IAP_EFORMAT, "truncated deflate data", "");
	}
	if (r->crc != r->m->crc32) {
		snprintf(buf, sizeof(buf), "(stored 0x%08" PRIx32 ", computed 0x%08" PRIx32 ")",
			 r->m->crc32, r->crc);
		return member_fail(r, IAP_EFORMAT, "CRC-32 mismatch ", buf);
	}
	return IAP_OK;
}

/* ---- the .npy header ------------------------------------------------------------ */

struct npy_hdr {
	enum iap_npy_dtype dtype;
	int swap;               /* data in the other byte order */
	int fortran;
	int ndim;
	int64_t shape[IAP_NPY_MAX_DIMS];
	int seen;               /* bit per key */
};

struct lit {
	const char *s, *p, *end;
	const char *why;
};

static void lit_ws(struct lit *l)
{
	while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r'))
		l->p++;
}

static int lit_char(struct lit *l, char c)
{
	lit_ws(l);
	if (l->p < l->end && *l->p == c) {
		l->p++;
		return 1;
	}
	return 0;
}

/* A quoted Python string without escapes (all npy keys and descrs are plain). */
static int lit_string(struct lit *l, char *buf, size_t cap)
{
	char q;
	size_t n = 0;

	lit_ws(l);
	if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) {
		l->why = "expected a string";
		return -1;
	}
	q = *l->p++;
	while (l->p < l->end && *l->p != q) {
		if (*l->p == '\\' || n + 1 >= cap) {
			l->why = "unexpected string";
			return -1;
		}
		buf[n++] = *l->p++;
	}
	if (l->p >= l->end) {
		l->why = "unterminated string";
		return -1;
	}
	l->p++;
	buf[n] = '\0';
	return 0;
}

static int lit_word(struct lit *l, const char *w)
{
	size_t n = strlen(w);

	lit_ws(l);
	if ((size_t)(l->end - l->p) >= n && !memcmp(l->p, w, n)) {
		l->p += n;
		return 1;
	}
	return 0;
}

static int parse_descr(const char *s, struct npy_hdr *h)
{
	const int little_host = (union { uint16_t u; unsigned char c[2]; }){ .u = 1 }.c[0] == 1;
	char order = s[0];

	if (order != '<' && order != '>' && order != '|' && order != '=')
		return -1;
	for (int t = IAP_NPY_B1; t < IAP_NPY_DTYPE_COUNT; t++) {
		char want[4];

		snprintf(want, sizeof(want), "%c%u", dtypes[t].code, dtypes[t].size);
		if (strcmp(s + 1, want))
			continue;
		if (dtypes[t].size > 1) {
			if (order == '|')
				return -1;
			h->swap = (order == '<' && !little_host) || (order == '>' && little_host);
		}
		h->dtype = (enum iap_npy_dtype)t;
		return 0;
	}
	return -1;
}

/* Parse "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" plus padding. */
static int parse_header(struct lit *l, struct npy_hdr *h, char *descr, size_t dcap)
{
	if (!lit_char(l, '{')) {
		l->why = "expected '{'";
		return -1;
	}
	for (;;) {
		char key[32];

		if (lit_char(l, '}'))
			break;
		if (lit_string(l, key, sizeof(key)))
			return -1;
		if (!lit_char(l, ':')) {
			l->why = "expected ':'";
			return -1;
		}
		if (!strcmp(key, "descr") && !(h->seen & 1)) {
			if (lit_string(l, descr, dcap)) {
				if (l->p < l->end && (*l->p == '[' || *l->p == '{'))
					l->why = "structured dtypes are not supported";
				return -1;
			}
			h->seen |= 1;
		} else if (!strcmp(key, "fortran_order") && !(h->seen & 2)) {
			if (lit_word(l, "True"))
				h->fortran = 1;
			else if (lit_word(l, "False"))
				h->fortran = 0;
			else {
				l->why = "fortran_order is not True or False";
				return -1;
			}
			h->seen |= 2;
		} else if (!strcmp(key, "shape") && !(h->seen & 4)) {
			if (!lit_char(l, '(')) {
				l->why = "shape is not a tuple";
				return -1;
			}
			while (!lit_char(l, ')')) {
				int64_t v = 0;
				int digits = 0;

				if (h->ndim >= IAP_NPY_MAX_DIMS) {
					l->why = "too many dimensions";
					return -1;
				}
				lit_ws(l);
				while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
					if (v > (INT64_MAX - 9) / 10) {
						l->why = "dimension too large";
						return -1;
					}
					v = v * 10 + (*l->p++ - '0');
					digits++;
				}
				if (!digits) {
					l->why = "bad dimension in shape";
					return -1;
				}
				if (l->p < l->end && *l->p == 'L')
					l->p++;  /* Python 2 long */
				h->shape[h->ndim++] = v;
				if (!lit_char(l, ',')) {
					if (!lit_char(l, ')')) {
						l->why = "expected ',' or ')' in shape";
						return -1;
					}
					break;
				}
			}
			h->seen |= 4;
		} else {
			l->why = "unknown or repeated key";
			return -1;
		}
		if (!lit_char(l, ',')) {
			if (!lit_char(l, '}')) {
				l->why = "expected ',' or '}'";
				return -1;
			}
			break;
		}
	}
	lit_ws(l);
	if (l->p != l->end) {
		l->why = "text after the dictionary";
		return -1;
	}
	if (h->seen != 7) {
		l->why = "'descr', 'fortran_order' or 'shape' missing";
		return -1;
	}
	return 0;
}

/* ---- conversion ------------------------------------------------------------------ */

struct num {
	int kind;               /* 'i' signed, 'u' unsigned, 'f' float */
	int64_t s;
	uint64_t u;
	double f;
};

static struct num num_load(const void *p, enum iap_npy_dtype t, size_t i)
{
	struct num n = { .kind = dtypes[t].code == 'b' ? 'u' : dtypes[t].code };

	switch (t) {
	case IAP_NPY_B1:
	case IAP_NPY_U1: n.u = ((const uint8_t *)p)[i]; break;
	case IAP_NPY_U2: n.u = ((const uint16_t *)p)[i]; break;
	case IAP_NPY_U4: n.u = ((const uint32_t *)p)[i]; break;
	case IAP_NPY_U8: n.u = ((const uint64_t *)p)[i]; break;
	case IAP_NPY_I1: n.s = ((const int8_t *)p)[i]; break;
	case IAP_NPY_I2: n.s = ((const int16_t *)p)[i]; break;
	case IAP_NPY_I4: n.s = ((const int32_t *)p)[i]; break;
	case IAP_NPY_I8: n.s = ((const int64_t *)p)[i]; break;
	case IAP_NPY_F4: n.f = ((const float *)p)[i]; break;
	case IAP_NPY_F8: n.f = ((const double *)p)[i]; break;
	default: break;
	}
	return n;
}

/* Range of the integer types as (min, max). */
static void int_range(enum iap_npy_dtype t, int64_t *lo, uint64_t *hi)
{
	switch (t) {
	case IAP_NPY_B1: *lo = 0; *hi = 1; break;
	case IAP_NPY_U1: *lo = 0; *hi = UINT8_MAX; break;
	case IAP_NPY_I1: *lo = INT8_MIN; *hi = INT8_MAX; break;
	case IAP_NPY_U2: *lo = 0; *hi = UINT16_MAX; break;
	case IAP_NPY_I2: *lo = INT16_MIN; *hi = INT16_MAX; break;
	case IAP_NPY_U4: *lo = 0; *hi = UINT32_MAX; break;
	case IAP_NPY_I4: *lo = INT32_MIN; *hi = INT32_MAX; break;
	case IAP_NPY_U8: *lo = 0; *hi = UINT64_MAX; break;
	default: *lo = INT64_MIN; *hi = INT64_MAX; break;
	}
}

/* Store n as type t at index i; returns 0, or -1 when n does not fit. */
static int num_store(void *p, enum iap_npy_dtype t, size_t i, struct num n)
{
	int64_t lo;
	uint64_t hi;

	if (dtypes[t].code == 'f') {
		double v = n.kind == 'f' ? n.f : n.kind == 'i' ? (double)n.s : (double)n.u;

		if (t == IAP_NPY_F4) {
			if (isfinite(v) && fabs(v) > FLT_MAX)
				return -1;
			((float *)p)[i] = (float)v;
		} else {
			((double *)p)[i] = v;
		}
		return 0;
	}
	int_range(t, &lo, &hi);
	if (n.kind == 'f') {
		/* Integral and inside int64 / uint64 first, then the same checks as for integers. */
		if (!isfinite(n.f) || n.f != floor(n.f))
			return -1;
		if (n.f < 0) {
			if (n.f < -9223372036854775808.0)
				return -1;
			n.kind = 'i';
			n.s = (int64_t)n.f;
		} else {
			if (n.f >= 18446744073709551616.0)
				return -1;
			n.kind = 'u';
			n.u = (uint64_t)n.f;
		}
	}
	if (n.kind == 'i') {
		if (n.s < lo || (n.s > 0 && (uint64_t)n.s > hi))
			return -1;
	} else if (n.u > hi) {
		return -1;
	}
	/* In range: the value is the same whether taken from s or u. */
	if (n.kind == 'u')
		n.s = (int64_t)(n.u > (uint64_t)INT64_MAX ? 0 : n.u);
	switch (t) {
	case IAP_NPY_B1:
	case IAP_NPY_U1: ((uint8_t *)p)[i] = (uint8_t)n.s; break;
	case IAP_NPY_U2: ((uint16_t *)p)[i] = (uint16_t)n.s; break;
	case IAP_NPY_U4: ((uint32_t *)p)[i] = (uint32_t)n.s; break;
	case IAP_NPY_U8: ((uint64_t *)p)[i] = n.kind == 'u' ? n.u : (uint64_t)n.s; break;
	case IAP_NPY_I1: ((int8_t *)p)[i] = (int8_t)n.s; break;
	case IAP_NPY_I2: ((int16_t *)p)[i] = (int16_t)n.s; break;
	case IAP_NPY_I4: ((int32_t *)p)[i] = (int32_t)n.s; break;
	case IAP_NPY_I8: ((int64_t *)p)[i] = n.s; break;
	default: return -1;
	}
	return 0;
}

static void byteswap(unsigned char *p, size_t numel, unsigned size)
{
	for (size_t i = 0; i < numel; i++, p += size)
		for (unsigned a = 0, b = size - 1; a < b; a++, b--) {
			unsigned char t = p[a];

			p[a] = p[b];
			p[b] = t;
		}
}

static void describe_value(char *buf, size_t cap, struct num n)
{
	if (n.kind == 'f')
		snprintf(buf, cap, "%.17g", n.f);
	else if (n.kind == 'i')
		snprintf(buf, cap, "%" PRId64, n.s);
	else
		snprintf(buf, cap, "%" PRIu64, n.u);
}

/* ---- iap_npz_read ---------------------------------------------------------------- */

static int missing_member(const struct iap_npz *z, const char *name, struct iap_error *err)
{
	char list[512];
	size_t used = 0;

	list[0] = '\0';
	for (int i = 0; i < z->n_members && used < sizeof(list); i++) {
		int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
				 z->members[i].name);

		if (n < 0 || (size_t)n >= sizeof(list) - used) {
			strcpy(list + (sizeof(list) - 4), "...");
			break;
		}
		used += (size_t)n;
	}
	return iap_error_set(err, IAP_EINVAL, "%s: no member '%s' (has: %s)", z->path, name,
			     z->n_members ? list : "nothing");
}

/* Locate the member's data via its local header. */
static int member_data(struct mreader *r)
{
	const struct iap_npz_member *m = r->m;
	const struct iap_npz *z = r->z;
	const unsigned char *lh = z->data + m->local_offset;
	uint64_t start;

	if (m->local_offset > z->len || z->len - m->local_offset < LOCAL_LEN ||
	    le32(lh) != SIG_LOCAL)
		return member_fail(r, IAP_EFORMAT, "corrupt zip archive: bad local header", "");
	if (m->flags & 1)
		return member_fail(r, IAP_EUNSUPPORTED, "encrypted members are not supported", "");
	if (m->method != 0 && m->method != 8) {
		char buf[48];

		snprintf(buf, sizeof(buf), "%u (only stored and deflated)", m->method);
		return member_fail(r, IAP_EUNSUPPORTED, "unsupported compression method ", buf);
	}
	start = m->local_offset + LOCAL_LEN + le16(lh + 26) + le16(lh + 28);
	if (start > z->len || m->comp_size > z->len - start)
		return member_fail(r, IAP_EFORMAT, "truncated: data runs past the end of the archive",
				   "");
	if (m->method == 0 && m->comp_size != m->size)
		return member_fail(r, IAP_EFORMAT,
				   "corrupt zip archive: stored member with two different sizes", "");
	if (m->method == 8 && m->size / DEFLATE_MAX_RATIO > m->comp_size + 1)
		return member_fail(r, IAP_EFORMAT,
				   "corrupt zip archive: declared size impossible for its compressed size",
				   "");
	r->src = z->data + start;
	r->src_len = m->comp_size;
	if (m->method == 8) {
		if (inflateInit2(&r->zs, -15) != Z_OK)
			return member_fail(r, IAP_ENOMEM, "cannot initialise zlib", "");
		r->z_init = 1;
	}
	return IAP_OK;
}

/* Read the .npy preamble and header; on return *data_bytes is what must follow. */
static int read_npy_header(struct mreader *r, struct npy_hdr *h, uint64_t *data_bytes)
{
	unsigned char pre[12];
	char *text = NULL, descr[64], why[96];
	uint64_t hlen, numel = 1;
	unsigned lsize;
	struct lit l;
	int rc;

	if (r->m->size < 10)
		return member_fail(r, IAP_EFORMAT, "not a .npy array (too short)", "");
	rc = mread(r, pre, 8);
	if (rc)
		return rc;
	if (memcmp(pre, "\x93NUMPY", 6) || pre[6] < 1 || pre[6] > 3) {
		return member_fail(r, IAP_EFORMAT, memcmp(pre, "\x93NUMPY", 6)
				   ? "not a .npy array (bad magic)" : "unsupported .npy version", "");
	}
	lsize = pre[6] == 1 ? 2 : 4;
	rc = mread(r, pre + 8, lsize);
	if (rc)
		return rc;
	hlen = lsize == 2 ? le16(pre + 8) : le32(pre + 8);
	if (hlen > IAP_NPY_MAX_HEADER)
		return member_fail(r, IAP_EFORMAT, ".npy header too long", "");
	if (hlen > r->m->size - r->produced)
		return member_fail(r, IAP_EFORMAT, "member shorter than its .npy header", "");
	text = malloc(hlen ? hlen : 1);
	if (!text)
		return member_fail(r, IAP_ENOMEM, "out of memory", "");
	rc = mread(r, text, hlen);
	if (rc)
		goto out;
	memset(h, 0, sizeof(*h));
	l = (struct lit){ .s = text, .p = text, .end = text + hlen, .why = "malformed" };
	descr[0] = '\0';
	if (parse_header(&l, h, descr, sizeof(descr))) {
		snprintf(why, sizeof(why), "%s at offset %td", l.why, l.p - l.s);
		rc = member_fail(r, IAP_EFORMAT, "malformed .npy header: ", why);
		goto out;
	}
	if (parse_descr(descr, h)) {
		snprintf(why, sizeof(why), "'%s'", descr);
		rc = member_fail(r, IAP_EUNSUPPORTED, "unsupported dtype ", why);
		goto out;
	}
	if (h->fortran) {
		rc = member_fail(r, IAP_EUNSUPPORTED,
				 "array is in Fortran order (fortran_order: True); save it C-contiguous",
				 "");
		goto out;
	}
	for (int i = 0; i < h->ndim; i++) {
		if (h->shape[i] && numel > IAP_NPZ_MAX_BYTES / (uint64_t)h->shape[i]) {
			rc = member_fail(r, IAP_ELIMIT, "array larger than the limit", "");
			goto out;
		}
		numel *= (uint64_t)h->shape[i];
	}
	*data_bytes = numel * dtypes[h->dtype].size;
	if (*data_bytes > IAP_NPZ_MAX_BYTES) {
		rc = member_fail(r, IAP_ELIMIT, "array larger than the limit", "");
		goto out;
	}
	if (*data_bytes != r->m->size - r->produced) {
		snprintf(why, sizeof(why), "(header says %" PRIu64 " data bytes, member holds %" PRIu64 ")",
			 *data_bytes, r->m->size - r->produced);
		rc = member_fail(r, IAP_EFORMAT, "size mismatch ", why);
	}
out:
	free(text);
	return rc;
}

int iap_npz_read(struct iap_npz *z, const char *name, enum iap_npy_dtype want,
		 struct iap_npy *arr, struct iap_error *err)
{
	struct mreader r = { .z = z, .err = err };
	struct npy_hdr h;
	uint64_t nbytes = 0;
	void *raw = NULL, *conv = NULL;
	int rc;

	iap_npy_free(arr);
	if ((unsigned)want >= IAP_NPY_DTYPE_COUNT)
		return iap_error_set(err, IAP_EINVAL, "%s: %s: bad target dtype %d", z->path, name,
				     (int)want);
	r.m = iap_npz_find(z, name);
	if (!r.m)
		return missing_member(z, name, err);
	rc = member_data(&r);
	if (rc)
		goto out;
	rc = read_npy_header(&r, &h, &nbytes);
	if (rc)
		goto out;
	raw = malloc(nbytes ? nbytes : 1);
	if (!raw) {
		rc = member_fail(&r, IAP_ENOMEM, "out of memory for the array", "");
		goto out;
	}
	rc = mread(&r, raw, nbytes);
	if (!rc)
		rc = mfinish(&r);
	if (rc)
		goto out;
	if (h.swap)
		byteswap(raw, nbytes / dtypes[h.dtype].size, dtypes[h.dtype].size);

	arr->ndim = h.ndim;
	memcpy(arr->shape, h.shape, sizeof(h.shape));
	arr->numel = (int64_t)(nbytes / dtypes[h.dtype].size);
	if (want == IAP_NPY_NONE || want == h.dtype) {
		arr->dtype = h.dtype;
		arr->data = raw;
		raw = NULL;
		goto out;
	}
	conv = malloc(arr->numel ? (size_t)arr->numel * dtypes[want].size : 1);
	if (!conv) {
		rc = member_fail(&r, IAP_ENOMEM, "out of memory for the array", "");
		goto out;
	}
	for (int64_t i = 0; i < arr->numel; i++) {
		struct num n = num_load(raw, h.dtype, (size_t)i);

		if (num_store(conv, want, (size_t)i, n)) {
			char val[48];

			describe_value(val, sizeof(val), n);
			rc = iap_error_set(err, IAP_EFORMAT,
					   "%s: %s: element %" PRId64 " (%s) does not fit %s", z->path,
					   r.m->name, i, val, dtypes[want].name);
			goto out;
		}
	}
	arr->dtype = want;
	arr->data = conv;
	conv = NULL;
out:
	if (r.z_init)
		inflateEnd(&r.zs);
	free(raw);
	free(conv);
	if (rc)
		iap_npy_free(arr);
	return rc;
}

void iap_npy_free(struct iap_npy *arr)
{
	if (!arr)
		return;
	free(arr->data);
	memset(arr, 0, sizeof(*arr));
}
