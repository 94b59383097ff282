/*
 * libFuzzer target: the safetensors reader from memory, then every tensor
 * converted to float32 and every metadata key looked up, so the offsets the
 * header claims are really used.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <iaprune/safetensors.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct iap_error err = { 0, "" };
	struct iap_safetensors *st = NULL;

	if (iap_safetensors_open_mem(data, size, "fuzz.safetensors", &st, &err))
		return 0;
	for (int i = 0; i < st->n_tensors; i++) {
		const struct iap_st_tensor *t = &st->tensors[i];
		float *buf;

		if (!iap_safetensors_find(st, t->name))
			abort();   /* a tensor the reader listed must be found by its name */
		if (t->dtype == IAP_ST_I64 || t->numel > (1 << 22))
			continue;
		buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
		if (buf)
			iap_safetensors_read_f32(st, t, buf, &err);
		free(buf);
	}
	for (int i = 0; i < st->n_meta; i++)
		if (!iap_safetensors_meta(st, st->meta[i].key))
			abort();
	iap_safetensors_close(st);
	return 0;
}
