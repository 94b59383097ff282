/* Memory limits and estimates (see include/iaprune/memory.h). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iaprune/memory.h>

static uint64_t limit_set;

uint64_t iap_memory_physical(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || size <= 0)
		return 0;
	return (uint64_t)pages * (uint64_t)size;
}

uint64_t iap_memory_limit(void)
{
	uint64_t phys;

	if (limit_set)
		return limit_set;
	phys = iap_memory_physical();
	/* Three quarters: the rest is for the system, the page cache and iaprune's own estimate error. */
	return phys ? phys / 4 * 3 : UINT64_MAX;
}

void iap_memory_limit_set(uint64_t bytes)
{
	limit_set = bytes;
}

int iap_memory_parse(const char *text, uint64_t *bytes, struct iap_error *err)
{
	static const char units[] = "KMGT";
	double v, scale = 1;
	char *end;

	errno = 0;
	v = strtod(text, &end);
	if (end == text || errno || !isfinite(v) || v <= 0)
		goto bad;
	/* strtod also reads hex, "inf" and "nan": only plain decimals are sizes. */
	for (const char *c = text; c < end; c++)
		if (strchr("xXnNiI", *c))
			goto bad;
	if (*end == '%') {
		uint64_t phys = iap_memory_physical();

		if (end[1] || v > 100 || !phys)
			goto bad;
		*bytes = (uint64_t)((double)phys * (v / 100.0));
		return *bytes ? IAP_OK : iap_error_set(err, IAP_EINVAL, "memory size '%s' is zero", text);
	}
	if (*end) {
		const char *u = strchr(units, end[0] >= 'a' ? end[0] - 32 : end[0]);

		if (!u || !*u || (end[1] && strcmp(end + 1, "B") && strcmp(end + 1, "iB")))
			goto bad;
		for (long k = 0; k <= u - units; k++)
			scale *= 1024.0;
	}
	/* 2^63: above it the product does not fit (and no machine has that much). */
	if (v * scale >= 9.2e18 || v * scale < 1)
		goto bad;
	*bytes = (uint64_t)(v * scale);
	return IAP_OK;
bad:
	return iap_error_set(err, IAP_EINVAL,
			     "memory size '%s': expected bytes or a number with K, M, G or T (like 8G), or a "
			     "percentage of physical memory (like 50%%)", text);
}

void iap_memory_format(uint64_t bytes, char *buf, size_t len)
{
	static const char *const names[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	int k = -1;

	while (v >= 1024.0 && k < 5) {
		v /= 1024.0;
		k++;
	}
	if (k < 0)
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	else
		snprintf(buf, len, v < 10 ? "%.1f %s" : "%.0f %s", v, names[k]);
}

int iap_memory_check(const char *what, uint64_t need, struct iap_error *err)
{
	uint64_t limit = iap_memory_limit();
	char a[32], b[32];

	if (need <= limit)
		return IAP_OK;
	iap_memory_format(need, a, sizeof(a));
	iap_memory_format(limit, b, sizeof(b));
	return iap_error_set(err, IAP_ELIMIT,
			     "%s needs about %s of memory, more than the limit of %s (--max-memory; the default "
			     "is 3/4 of physical memory)", what, a, b);
}

/* a*b, saturating at UINT64_MAX (estimates of absurd inputs must not wrap to small numbers). */
static uint64_t mul(uint64_t a, uint64_t b)
{
	return a && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

static uint64_t add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t iap_graph_memory(const struct iap_graph *g, int batch, int training, int backward)
{
	int64_t buffers = 0;
	uint64_t params = (uint64_t)iap_graph_param_count(g, &buffers), acts = 1, total;

	for (int d = 0; d < g->in_ndim; d++)
		acts = mul(acts, (uint64_t)g->in_shape[d]);
	for (int i = 0; i < g->n_nodes; i++) {
		uint64_t n = 1;

		for (int d = 0; d < g->nodes[i].out_ndim; d++)
			n = mul(n, (uint64_t)(g->nodes[i].out_shape[d] > 0 ? g->nodes[i].out_shape[d] : 1));
		acts = add(acts, n);
	}
	total = mul(add(mul(params, training ? 4 : 1), (uint64_t)buffers), sizeof(float));
	return add(total, mul(mul(mul(acts, (uint64_t)(batch > 0 ? batch : 1)), backward ? 3 : 1), sizeof(float)));
}
