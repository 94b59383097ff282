/* The plain float32 tensor (see include/iaprune/tensor.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/tensor.h>

/* 64 bytes: a cache line, and enough for any AVX-512 load. */
#define IAP_ALIGN 64

float *iap_alloc_floats(size_t n)
{
	void *p = NULL;
	size_t bytes = n * sizeof(float);

	if (n > SIZE_MAX / sizeof(float))
		return NULL;
	bytes = (bytes + IAP_ALIGN - 1) / IAP_ALIGN * IAP_ALIGN;
	if (bytes == 0)
		bytes = IAP_ALIGN;
	if (posix_memalign(&p, IAP_ALIGN, bytes) != 0)
		return NULL;
	return p;
}

void iap_free(void *p)
{
	free(p);
}

int64_t iap_tensor_numel(const struct iap_tensor *t)
{
	int64_t n = 1;

	for (int i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n;
}

static int shape_numel(int ndim, const int64_t *shape, int64_t *numel, struct iap_error *err)
{
	char buf[96];
	int64_t n = 1;

	if (ndim < 0 || ndim > IAP_MAX_DIMS)
		return iap_error_set(err, IAP_EINVAL, "tensor rank %d is outside 0..%d", ndim,
				     IAP_MAX_DIMS);
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return iap_error_set(err, IAP_EINVAL, "tensor shape %s has a negative dimension",
					     iap_shape_str(ndim, shape, buf, sizeof(buf)));
		/* Checked before multiplying so an absurd shape cannot overflow. */
		if (shape[i] > 0 && n > IAP_TENSOR_MAX_ELEMS / shape[i])
			return iap_error_set(err, IAP_ENOMEM,
					     "tensor shape %s exceeds the limit of %lld elements",
					     iap_shape_str(ndim, shape, buf, sizeof(buf)),
					     (long long)IAP_TENSOR_MAX_ELEMS);
		n *= shape[i];
	}
	*numel = n;
	return IAP_OK;
}

int iap_tensor_alloc(struct iap_tensor *t, int ndim, const int64_t *shape, struct iap_error *err)
{
	int64_t n = 0;
	int rc = shape_numel(ndim, shape, &n, err);
	float *data;
	char buf[96];

	if (rc)
		return rc;
	data = iap_alloc_floats((size_t)n);
	if (!data)
		return iap_error_set(err, IAP_ENOMEM, "cannot allocate tensor %s",
				     iap_shape_str(ndim, shape, buf, sizeof(buf)));
	memset(data, 0, (size_t)n * sizeof(float));
	iap_tensor_free(t);
	t->ndim = ndim;
	for (int i = 0; i < IAP_MAX_DIMS; i++)
		t->shape[i] = i < ndim ? shape[i] : 0;
	t->data = data;
	t->owns = 1;
	t->cap = n;
	return IAP_OK;
}

int iap_tensor_ensure(struct iap_tensor *t, int ndim, const int64_t *shape, struct iap_error *err)
{
	int same = t->data && t->ndim == ndim;
	int64_t n = 0;
	int rc;

	for (int i = 0; same && i < ndim; i++)
		same = t->shape[i] == shape[i];
	if (same)
		return IAP_OK;
	rc = shape_numel(ndim, shape, &n, err);
	if (rc)
		return rc;
	if (t->owns && t->data && n <= t->cap) {
		t->ndim = ndim;
		for (int i = 0; i < IAP_MAX_DIMS; i++)
			t->shape[i] = i < ndim ? shape[i] : 0;
		memset(t->data, 0, (size_t)n * sizeof(float));
		return IAP_OK;
	}
	return iap_tensor_alloc(t, ndim, shape, err);
}

void iap_tensor_free(struct iap_tensor *t)
{
	if (!t)
		return;
	if (t->owns)
		iap_free(t->data);
	memset(t, 0, sizeof(*t));
}

int iap_tensor_copy(struct iap_tensor *dst, const struct iap_tensor *src, struct iap_error *err)
{
	int rc;

	if (dst == src)
		return IAP_OK;
	rc = iap_tensor_ensure(dst, src->ndim, src->shape, err);
	if (rc)
		return rc;
	memcpy(dst->data, src->data, (size_t)iap_tensor_numel(src) * sizeof(float));
	return IAP_OK;
}

void iap_tensor_zero(struct iap_tensor *t)
{
	if (t->data)
		memset(t->data, 0, (size_t)iap_tensor_numel(t) * sizeof(float));
}

int iap_tensor_same_shape(const struct iap_tensor *a, const struct iap_tensor *b)
{
	if (a->ndim != b->ndim)
		return 0;
	for (int i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return 0;
	return 1;
}

char *iap_shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
	size_t used = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	used += (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < ndim && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? ", " : "",
					 (long long)shape[i]);
	if (used < len)
		snprintf(buf + used, len - used, "]");
	return buf;
}

char *iap_tensor_shape_str(const struct iap_tensor *t, char *buf, size_t len)
{
	return iap_shape_str(t->ndim, t->shape, buf, len);
}
