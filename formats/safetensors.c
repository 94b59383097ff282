/*
 * safetensors reader and writer (see include/iaprune/safetensors.h).
 *
 * The header is parsed by a small JSON reader that knows exactly the shapes
 * the format allows; every size and offset is checked before it is used, so
 * a hostile file can make us refuse it but never read out of bounds.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iaprune/atomic.h>
#include <iaprune/safetensors.h>

#include "file.h"

#define MAX_JSON_DEPTH 64

static const struct {
	const char *name;
	unsigned size;
} dtypes[] = {
	[IAP_ST_F32] = { "F32", 4 },
	[IAP_ST_F16] = { "F16", 2 },
	[IAP_ST_BF16] = { "BF16", 2 },
	[IAP_ST_I64] = { "I64", 8 },
};

const char *iap_st_dtype_name(enum iap_st_dtype dtype)
{
	return (unsigned)dtype < sizeof(dtypes) / sizeof(dtypes[0]) ? dtypes[dtype].name : "?";
}

/* ---- a JSON reader for the header ------------------------------------------ */

struct json {
	const char *start, *p, *end;
	const char *file;
	struct iap_error *err;
};

static void json_ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int json_fail(struct json *j, const char *what)
{
	/* Offsets count from the start of the file (the header follows 8 length bytes). */
	return iap_error_set(j->err, IAP_EFORMAT, "%s: malformed header: %s at byte %td", j->file,
			     what, j->p - j->start + 8);
}

static int json_expect(struct json *j, char c)
{
	json_ws(j);
	if (j->p >= j->end || *j->p != c) {
		char what[32];

		snprintf(what, sizeof(what), "expected '%c'", c);
		return json_fail(j, what);
	}
	j->p++;
	return IAP_OK;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse a string into a new NUL-terminated UTF-8 buffer (escapes decoded). */
static int json_string(struct json *j, char **out)
{
	const char *start;
	char *buf, *w;

	*out = NULL;
	if (json_expect(j, '"'))
		return IAP_EFORMAT;
	start = j->p;
	/* Decoded text is never longer than its escaped form. */
	while (j->p < j->end && *j->p != '"') {
		if (*j->p == '\\')
			j->p++;
		j->p++;
	}
	if (j->p >= j->end)
		return json_fail(j, "unterminated string");
	buf = malloc((size_t)(j->p - start) + 1);
	if (!buf)
		return iap_error_set(j->err, IAP_ENOMEM, "%s: out of memory", j->file);
	w = buf;
	for (const char *s = start; s < j->p; s++) {
		unsigned cp;

		if ((unsigned char)*s < 0x20) {
			free(buf);
			return json_fail(j, "control character in string");
		}
		if (*s != '\\') {
			*w++ = *s;
			continue;
		}
		s++;
		switch (*s) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '/': *w++ = '/'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 't': *w++ = '\t'; break;
		case 'u':
			if (j->p - s < 5 || hexval(s[1]) < 0 || hexval(s[2]) < 0 || hexval(s[3]) < 0 ||
			    hexval(s[4]) < 0) {
				free(buf);
				return json_fail(j, "bad \\u escape");
			}
			cp = (unsigned)(hexval(s[1]) << 12 | hexval(s[2]) << 8 | hexval(s[3]) << 4 | hexval(s[4]));
			s += 4;
			/* Surrogates are written as-is (3 bytes): names are compared byte-wise only. */
			if (cp < 0x80) {
				*w++ = (char)cp;
			} else if (cp < 0x800) {
				*w++ = (char)(0xc0 | cp >> 6);
				*w++ = (char)(0x80 | (cp & 0x3f));
			} else {
				*w++ = (char)(0xe0 | cp >> 12);
				*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
				*w++ = (char)(0x80 | (cp & 0x3f));
			}
			break;
		default:
			free(buf);
			return json_fail(j, "bad escape");
		}
	}
	*w = '\0';
	j->p++;
	if ((size_t)(w - buf) != strlen(buf)) {
		free(buf);
		return json_fail(j, "NUL in string");
	}
	*out = buf;
	return IAP_OK;
}

/* A non-negative integer (no sign, fraction or exponent), at most 2^63 - 1. */
static int json_uint(struct json *j, uint64_t *v)
{
	uint64_t x = 0;
	int digits = 0;

	json_ws(j);
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
		unsigned d = (unsigned)(*j->p - '0');

		if (x > (UINT64_C(0x7fffffffffffffff) - d) / 10)
			return json_fail(j, "integer too large");
		x = x * 10 + d;
		j->p++;
		digits++;
	}
	if (!digits)
		return json_fail(j, "expected a non-negative integer");
	if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
		return json_fail(j, "expected an integer");
	*v = x;
	return IAP_OK;
}

/* Skip any value (unknown fields are ignored), bounded in depth. */
static int json_skip(struct json *j, int depth)
{
	json_ws(j);
	if (depth > MAX_JSON_DEPTH)
		return json_fail(j, "nesting too deep");
	if (j->p >= j->end)
		return json_fail(j, "unexpected end");
	if (*j->p == '"') {
		char *s;
		int rc = json_string(j, &s);

		free(s);
		return rc;
	}
	if (*j->p == '{' || *j->p == '[') {
		char close = *j->p == '{' ? '}' : ']';
		int obj = *j->p == '{';

		j->p++;
		json_ws(j);
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return IAP_OK;
		}
		for (;;) {
			if (obj) {
				char *k;

				if (json_string(j, &k))
					return IAP_EFORMAT;
				free(k);
				if (json_expect(j, ':'))
					return IAP_EFORMAT;
			}
			if (json_skip(j, depth + 1))
				return IAP_EFORMAT;
			json_ws(j);
			if (j->p < j->end && *j->p == ',') {
				j->p++;
				continue;
			}
			return json_expect(j, close);
		}
	}
	/* Literals and numbers: a run of their characters. */
	{
		const char *s = j->p;

		while (j->p < j->end && strchr("+-0123456789.eEtruefalsn", *j->p))
			j->p++;
		if (j->p == s)
			return json_fail(j, "unexpected character");
	}
	return IAP_OK;
}

/* Iterate "key": value pairs of an object; fn parses each value. */
static int json_object(struct json *j, int (*fn)(struct json *j, const char *key, void *user),
		       void *user)
{
	if (json_expect(j, '{'))
		return IAP_EFORMAT;
	json_ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		return IAP_OK;
	}
	for (;;) {
		char *key;
		int rc;

		if (json_string(j, &key))
			return j->err ? j->err->code : IAP_EFORMAT;
		rc = json_expect(j, ':');
		if (!rc)
			rc = fn(j, key, user);
		free(key);
		if (rc)
			return rc;
		json_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		return json_expect(j, '}');
	}
}

/* ---- the header ---------------------------------------------------------------- */

struct tensor_parse {
	struct iap_st_tensor *t;
	int have_dtype, have_shape, have_offsets;
};

static int parse_uint_array(struct json *j, uint64_t *vals, int max, int *n)
{
	*n = 0;
	if (json_expect(j, '['))
		return IAP_EFORMAT;
	json_ws(j);
	if (j->p < j->end && *j->p == ']') {
		j->p++;
		return IAP_OK;
	}
	for (;;) {
		if (*n == max)
			return json_fail(j, "array too long");
		if (json_uint(j, &vals[(*n)++]))
			return IAP_EFORMAT;
		json_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		return json_expect(j, ']');
	}
}

static int tensor_field(struct json *j, const char *key, void *user)
{
	struct tensor_parse *tp = user;
	struct iap_st_tensor *t = tp->t;

	if (strcmp(key, "dtype") == 0) {
		char *s;
		size_t k;

		if (json_string(j, &s))
			return IAP_EFORMAT;
		for (k = 0; k < sizeof(dtypes) / sizeof(dtypes[0]); k++)
			if (strcmp(s, dtypes[k].name) == 0)
				break;
		if (k == sizeof(dtypes) / sizeof(dtypes[0])) {
			iap_error_set(j->err, IAP_EFORMAT,
				      "%s: tensor '%s' has dtype %s (supported: F32, F16, BF16, I64)",
				      j->file, t->name, s);
			free(s);
			return IAP_EFORMAT;
		}
		free(s);
		t->dtype = (enum iap_st_dtype)k;
		tp->have_dtype = 1;
	} else if (strcmp(key, "shape") == 0) {
		uint64_t v[IAP_ST_MAX_DIMS + 1];
		int n;

		if (parse_uint_array(j, v, IAP_ST_MAX_DIMS, &n))
			return IAP_EFORMAT;
		t->ndim = n;
		for (int i = 0; i < n; i++)
			t->shape[i] = (int64_t)v[i];
		tp->have_shape = 1;
	} else if (strcmp(key, "data_offsets") == 0) {
		uint64_t v[3];
		int n;

		if (parse_uint_array(j, v, 2, &n))
			return IAP_EFORMAT;
		if (n != 2)
			return iap_error_set(j->err, IAP_EFORMAT, "%s: tensor '%s': data_offsets needs 2 values",
					     j->file, t->name);
		t->begin = v[0];
		t->end = v[1];
		tp->have_offsets = 1;
	} else {
		return json_skip(j, 1);
	}
	return IAP_OK;
}

struct header_parse {
	struct iap_safetensors *st;
	int cap_tensors, cap_meta;
};

static int meta_field(struct json *j, const char *key, void *user)
{
	struct header_parse *hp = user;
	struct iap_safetensors *st = hp->st;
	char *value;

	json_ws(j);
	if (j->p >= j->end || *j->p != '"')
		return iap_error_set(j->err, IAP_EFORMAT, "%s: __metadata__ value of '%s' is not a string",
				     j->file, key);
	if (json_string(j, &value))
		return IAP_EFORMAT;
	if (st->n_meta == hp->cap_meta) {
		int cap = hp->cap_meta ? 2 * hp->cap_meta : 8;
		struct iap_st_meta *m = realloc(st->meta, (size_t)cap * sizeof(*m));

		if (!m) {
			free(value);
			return iap_error_set(j->err, IAP_ENOMEM, "%s: out of memory", j->file);
		}
		st->meta = m;
		hp->cap_meta = cap;
	}
	st->meta[st->n_meta].key = strdup(key);
	st->meta[st->n_meta].value = value;
	if (!st->meta[st->n_meta].key) {
		free(value);
		return iap_error_set(j->err, IAP_ENOMEM, "%s: out of memory", j->file);
	}
	st->n_meta++;
	return IAP_OK;
}

static int header_field(struct json *j, const char *key, void *user)
{
	struct header_parse *hp = user;
	struct iap_safetensors *st = hp->st;
	struct tensor_parse tp = { 0 };
	struct iap_st_tensor *t;
	int rc;

	if (strcmp(key, "__metadata__") == 0)
		return json_object(j, meta_field, hp);
	if (st->n_tensors == hp->cap_tensors) {
		int cap = hp->cap_tensors ? 2 * hp->cap_tensors : 64;
		struct iap_st_tensor *ts = realloc(st->tensors, (size_t)cap * sizeof(*ts));

		if (!ts)
			return iap_error_set(j->err, IAP_ENOMEM, "%s: out of memory", j->file);
		st->tensors = ts;
		hp->cap_tensors = cap;
	}
	t = &st->tensors[st->n_tensors];
	memset(t, 0, sizeof(*t));
	t->name = strdup(key);
	if (!t->name)
		return iap_error_set(j->err, IAP_ENOMEM, "%s: out of memory", j->file);
	st->n_tensors++;
	tp.t = t;
	rc = json_object(j, tensor_field, &tp);
	if (rc)
		return rc;
	if (!tp.have_dtype || !tp.have_shape || !tp.have_offsets)
		return iap_error_set(j->err, IAP_EFORMAT, "%s: tensor '%s' lacks %s", j->file, key,
				     !tp.have_dtype ? "dtype" : !tp.have_shape ? "shape" : "data_offsets");
	return IAP_OK;
}

static int cmp_begin(const void *a, const void *b)
{
	const struct iap_st_tensor *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Offsets: sizes match dtype × shape, no holes, no overlaps, exact cover; names unique. */
static int check_layout(struct iap_safetensors *st, struct iap_error *err)
{
	uint64_t pos = 0;
	char **names;
	int rc = IAP_OK;

	for (int i = 0; i < st->n_tensors; i++) {
		struct iap_st_tensor *t = &st->tensors[i];
		uint64_t numel = 1, bytes;

		for (int d = 0; d < t->ndim; d++) {
			uint64_t s = (uint64_t)t->shape[d];

			if (s && numel > (uint64_t)IAP_TENSOR_MAX_ELEMS / s)
				return iap_error_set(err, IAP_EFORMAT, "%s: tensor '%s' is too large",
						     st->path, t->name);
			numel *= s;
		}
		t->numel = (int64_t)numel;
		bytes = numel * dtypes[t->dtype].size;
		if (t->end < t->begin || t->end - t->begin != bytes)
			return iap_error_set(err, IAP_EFORMAT,
					     "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] do not hold %" PRIu64 " bytes of %s",
					     st->path, t->name, t->begin, t->end, bytes,
					     dtypes[t->dtype].name);
		if (t->end > st->data_len)
			return iap_error_set(err, IAP_EFORMAT,
					     "%s: tensor '%s' ends at byte %" PRIu64 " past the data (%" PRIu64 " bytes; file truncated?)",
					     st->path, t->name, t->end, st->data_len);
	}
	/* A header of metadata only ("{}") has no tensor array: qsort(NULL, 0) is undefined. */
	if (st->n_tensors > 1)
		qsort(st->tensors, (size_t)st->n_tensors, sizeof(*st->tensors), cmp_begin);
	for (int i = 0; i < st->n_tensors; i++) {
		const struct iap_st_tensor *t = &st->tensors[i];

		if (t->begin != pos)
			return iap_error_set(err, IAP_EFORMAT, "%s: tensor '%s' %s at byte %" PRIu64 " (expected %" PRIu64 ")",
					     st->path, t->name, t->begin < pos ? "overlaps the previous tensor" : "leaves a hole",
					     t->begin, pos);
		pos = t->end;
	}
	if (pos != st->data_len)
		return iap_error_set(err, IAP_EFORMAT, "%s: %" PRIu64 " bytes after the last tensor are not described by the header",
				     st->path, st->data_len - pos);
	if (st->n_tensors < 2)
		return IAP_OK;
	names = calloc((size_t)st->n_tensors, sizeof(*names));
	if (!names)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	for (int i = 0; i < st->n_tensors; i++)
		names[i] = st->tensors[i].name;
	qsort(names, (size_t)st->n_tensors, sizeof(*names), cmp_name);
	for (int i = 1; i < st->n_tensors; i++)
		if (strcmp(names[i - 1], names[i]) == 0) {
			rc = iap_error_set(err, IAP_EFORMAT, "%s: tensor '%s' appears twice", st->path, names[i]);
			break;
		}
	free(names);
	return rc;
}

/* Validate the buffer st->map of st->map_len bytes. */
static int parse(struct iap_safetensors *st, struct iap_error *err)
{
	const unsigned char *b = st->map;
	struct header_parse hp = { .st = st };
	struct json j;
	uint64_t hlen = 0;
	int rc;

	if (st->map_len < 8)
		return iap_error_set(err, IAP_EFORMAT, "%s: %zu bytes is too short for a safetensors file",
				     st->path, st->map_len);
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | b[i];
	/*
	 * A length that cannot be right and no JSON object where the header
	 * would start: another format (an image, a .pth zip), not a broken file.
	 */
	if (st->map_len > 8 && b[8] != '{' && (hlen > IAP_ST_MAX_HEADER || hlen > st->map_len - 8))
		return iap_error_set(err, IAP_EFORMAT,
				     "%s: not a safetensors file (no JSON header after the 8-byte length)", st->path);
	if (hlen > IAP_ST_MAX_HEADER)
		return iap_error_set(err, IAP_EFORMAT, "%s: header length %" PRIu64 " exceeds the 100 MB limit",
				     st->path, hlen);
	if (hlen > st->map_len - 8)
		return iap_error_set(err, IAP_EFORMAT,
				     "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
				     st->path, hlen, st->map_len);
	if (hlen < 2 || b[8] != '{')
		return iap_error_set(err, IAP_EFORMAT, "%s: header is not a JSON object", st->path);
	j.start = j.p = (const char *)b + 8;
	j.end = j.p + hlen;
	j.file = st->path;
	j.err = err;
	st->data = b + 8 + hlen;
	st->data_len = st->map_len - 8 - hlen;
	rc = json_object(&j, header_field, &hp);
	if (rc)
		return rc;
	json_ws(&j);
	if (j.p != j.end)
		return iap_error_set(err, IAP_EFORMAT, "%s: malformed header: trailing bytes after the object",
				     st->path);
	return check_layout(st, err);
}

static struct iap_safetensors *st_new(const char *name, struct iap_error *err)
{
	struct iap_safetensors *st = calloc(1, sizeof(*st));

	if (st)
		st->path = strdup(name);
	if (!st || !st->path) {
		free(st);
		iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
		return NULL;
	}
	return st;
}

int iap_safetensors_open(const char *path, struct iap_safetensors **out, struct iap_error *err)
{
	struct iap_safetensors *st;
	struct stat sb;
	int fd, rc;

	*out = NULL;
	rc = iap_file_open(path, &fd, &sb, err);
	if (rc)
		return rc;
	st = st_new(path, err);
	if (!st) {
		close(fd);
		return IAP_ENOMEM;
	}
	st->map_len = (size_t)sb.st_size;
	if (st->map_len > 0) {
		/* Mapped read-only: weights are read once, straight from the page cache. */
		st->map = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (st->map == MAP_FAILED) {
			st->map = NULL;
			close(fd);
			iap_safetensors_close(st);
			return iap_error_set(err, IAP_EIO, "%s: cannot map: %s", path, strerror(errno));
		}
		st->mapped = 1;
	}
	close(fd);
	rc = parse(st, err);
	if (rc) {
		iap_safetensors_close(st);
		return rc;
	}
	*out = st;
	return IAP_OK;
}

int iap_safetensors_open_mem(const void *buf, size_t len, const char *name,
			     struct iap_safetensors **out, struct iap_error *err)
{
	struct iap_safetensors *st = st_new(name, err);
	int rc;

	*out = NULL;
	if (!st)
		return IAP_ENOMEM;
	st->map = malloc(len ? len : 1);
	if (!st->map) {
		iap_safetensors_close(st);
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
	}
	memcpy(st->map, buf, len);
	st->map_len = len;
	rc = parse(st, err);
	if (rc) {
		iap_safetensors_close(st);
		return rc;
	}
	*out = st;
	return IAP_OK;
}

void iap_safetensors_close(struct iap_safetensors *st)
{
	if (!st)
		return;
	for (int i = 0; i < st->n_tensors; i++)
		free(st->tensors[i].name);
	free(st->tensors);
	for (int i = 0; i < st->n_meta; i++) {
		free(st->meta[i].key);
		free(st->meta[i].value);
	}
	free(st->meta);
	if (st->mapped)
		munmap(st->map, st->map_len);
	else
		free(st->map);
	free(st->path);
	free(st);
}

const struct iap_st_tensor *iap_safetensors_find(const struct iap_safetensors *st, const char *name)
{
	for (int i = 0; i < st->n_tensors; i++)
		if (strcmp(st->tensors[i].name, name) == 0)
			return &st->tensors[i];
	return NULL;
}

const char *iap_safetensors_meta(const struct iap_safetensors *st, const char *key)
{
	for (int i = 0; i < st->n_meta; i++)
		if (strcmp(st->meta[i].key, key) == 0)
			return st->meta[i].value;
	return NULL;
}

static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
	float f;

	if (exp == 0) {
		/* Zero or subnormal: value = mant · 2^-24. */
		f = (float)mant * 0x1p-24f;
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (mant << 13);
	else
		bits = sign | ((exp + 112) << 23) | (mant << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

int iap_safetensors_read_f32(const struct iap_safetensors *st, const struct iap_st_tensor *t,
			     float *dst, struct iap_error *err)
{
	const unsigned char *src = st->data + t->begin;

	switch (t->dtype) {
	case IAP_ST_F32:
		for (int64_t i = 0; i < t->numel; i++) {
			uint32_t bits = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
					(uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;

			memcpy(&dst[i], &bits, sizeof(float));
		}
		return IAP_OK;
	case IAP_ST_F16:
		for (int64_t i = 0; i < t->numel; i++)
			dst[i] = half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
		return IAP_OK;
	case IAP_ST_BF16:
		for (int64_t i = 0; i < t->numel; i++) {
			uint32_t bits = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;

			memcpy(&dst[i], &bits, sizeof(float));
		}
		return IAP_OK;
	default:
		return iap_error_set(err, IAP_EFORMAT, "%s: tensor '%s' is %s, not a float type", st->path,
				     t->name, dtypes[t->dtype].name);
	}
}

int iap_safetensors_read_i64(const struct iap_safetensors *st, const struct iap_st_tensor *t, int64_t *dst,
			     struct iap_error *err)
{
	const unsigned char *src = st->data + t->begin;

	if (t->dtype != IAP_ST_I64)
		return iap_error_set(err, IAP_EFORMAT, "%s: tensor '%s' is %s, not I64", st->path, t->name,
				     dtypes[t->dtype].name);
	for (int64_t i = 0; i < t->numel; i++) {
		uint64_t v = 0;

		for (int k = 7; k >= 0; k--)
			v = v << 8 | src[8 * i + k];
		dst[i] = (int64_t)v;
	}
	return IAP_OK;
}

/* ---- writer ---------------------------------------------------------------------- */

struct sbuf {
	char *s;
	size_t len, cap;
	int oom;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->s, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void sb_json_string(struct sbuf *b, const char *s)
{
	sb_puts(b, "\"");
	for (; *s; s++) {
		char esc[8];

		if (*s == '"' || *s == '\\') {
			esc[0] = '\\';
			esc[1] = *s;
			sb_putn(b, esc, 2);
		} else if ((unsigned char)*s < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char)*s);
			sb_puts(b, esc);
		} else {
			sb_putn(b, s, 1);
		}
	}
	sb_puts(b, "\"");
}

int iap_safetensors_write(const char *path, const struct iap_st_entry *entries, int n,
			  const struct iap_st_meta *meta, int n_meta, struct iap_error *err)
{
	return iap_safetensors_write_ex(path, entries, n, NULL, 0, meta, n_meta, err);
}

int iap_safetensors_write_ex(const char *path, const struct iap_st_entry *entries, int n,
			     const struct iap_st_i64 *ints, int n_ints, const struct iap_st_meta *meta,
			     int n_meta, struct iap_error *err)
{
	struct iap_atomic_file af;
	struct sbuf h = { 0 };
	uint64_t off = 0, hlen;
	unsigned char len8[8];
	char num[64];
	int rc;

	sb_puts(&h, "{");
	if (n_meta > 0) {
		sb_puts(&h, "\"__metadata__\":{");
		for (int i = 0; i < n_meta; i++) {
			if (i)
				sb_puts(&h, ",");
			sb_json_string(&h, meta[i].key);
			sb_puts(&h, ":");
			sb_json_string(&h, meta[i].value);
		}
		sb_puts(&h, "}");
	}
	for (int i = 0; i < n; i++) {
		const struct iap_tensor *t = entries[i].tensor;
		uint64_t bytes = (uint64_t)iap_tensor_numel(t) * 4;

		if (i || n_meta > 0)
			sb_puts(&h, ",");
		sb_json_string(&h, entries[i].name);
		sb_puts(&h, ":{\"dtype\":\"F32\",\"shape\":[");
		for (int d = 0; d < t->ndim; d++) {
			snprintf(num, sizeof(num), "%s%lld", d ? "," : "", (long long)t->shape[d]);
			sb_puts(&h, num);
		}
		snprintf(num, sizeof(num), "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes);
		sb_puts(&h, num);
		off += bytes;
	}
	/* Scalars (shape []) after the floats, 8 bytes each. */
	for (int i = 0; i < n_ints; i++) {
		if (i || n || n_meta > 0)
			sb_puts(&h, ",");
		sb_json_string(&h, ints[i].name);
		snprintf(num, sizeof(num), ":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
			 off, off + 8);
		sb_puts(&h, num);
		off += 8;
	}
	sb_puts(&h, "}");
	/* The data buffer starts 8-byte aligned, as the format recommends. */
	while ((h.len + 8) % 8 != 0)
		sb_puts(&h, " ");
	if (h.oom) {
		free(h.s);
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
	}
	hlen = h.len;
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)(hlen >> (8 * i));
	rc = iap_atomic_open(&af, path, err);
	if (rc) {
		free(h.s);
		return rc;
	}
	fwrite(len8, 1, 8, af.fp);
	fwrite(h.s, 1, h.len, af.fp);
	free(h.s);
	for (int i = 0; i < n; i++) {
		const struct iap_tensor *t = entries[i].tensor;
		int64_t cnt = iap_tensor_numel(t);
		unsigned char buf[4096];
		int64_t k = 0;

		/* Little-endian on disk whatever the host. */
		while (k < cnt) {
			int m = 0;

			for (; m < (int)(sizeof(buf) / 4) && k < cnt; m++, k++) {
				uint32_t bits;

				memcpy(&bits, &t->data[k], 4);
				buf[4 * m] = (unsigned char)bits;
				buf[4 * m + 1] = (unsigned char)(bits >> 8);
				buf[4 * m + 2] = (unsigned char)(bits >> 16);
				buf[4 * m + 3] = (unsigned char)(bits >> 24);
			}
			fwrite(buf, 4, (size_t)m, af.fp);
		}
	}
	for (int i = 0; i < n_ints; i++) {
		unsigned char b8[8];
		uint64_t v = (uint64_t)ints[i].value;

		for (int k = 0; k < 8; k++)
			b8[k] = (unsigned char)(v >> (8 * k));
		fwrite(b8, 1, 8, af.fp);
	}
	if (ferror(af.fp))
		return iap_atomic_fail(&af, err);
	return iap_atomic_commit(&af, err);
}
