/*
 * libFuzzer target: the .npz reader over a buffer. Every member is read in
 * its own type and converted to float32 and to uint8 (the value-checked
 * conversions are where a wrong element count would read past the end).
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include <iaprune/npz.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum iap_npy_dtype want[] = { IAP_NPY_NONE, IAP_NPY_F4, IAP_NPY_U1 };
	struct iap_error err = { 0, "" };
	struct iap_npy arr = { 0 };
	struct iap_npz *npz = NULL;

	if (iap_npz_open_mem(data, size, "fuzz.npz", &npz, &err))
		return 0;
	for (int i = 0; i < npz->n_members && i < 8; i++)
		for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++)
			iap_npz_read(npz, npz->members[i].name, want[k], &arr, &err);
	iap_npz_read(npz, "no-such-member", IAP_NPY_NONE, &arr, &err);
	iap_npy_free(&arr);
	iap_npz_close(npz);
	return 0;
}
