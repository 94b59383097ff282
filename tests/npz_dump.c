/*
 * Test helper for the shell tests: `npz_dump FILE.npz` lists the members
 * ("name dtype d0xd1..."); `npz_dump FILE NAME` prints that array's values
 * one per line (%.9g), from an .npz member or a safetensors tensor.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/npz.h>
#include <iaprune/safetensors.h>

int main(int argc, char **argv)
{
	struct iap_error err;
	size_t len;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: npz_dump FILE [NAME]\n");
		return 2;
	}
	len = strlen(argv[1]);
	if (len > 12 && !strcmp(argv[1] + len - 12, ".safetensors")) {
		struct iap_safetensors *st;
		const struct iap_st_tensor *t;
		float *v;

		if (argc != 3 || iap_safetensors_open(argv[1], &st, &err)) {
			fprintf(stderr, "%s\n", argc != 3 ? "a tensor name is needed" : err.msg);
			return 1;
		}
		t = iap_safetensors_find(st, argv[2]);
		v = t ? malloc((size_t)(t->numel + 1) * sizeof(float)) : NULL;
		if (!t || !v || iap_safetensors_read_f32(st, t, v, &err)) {
			fprintf(stderr, "%s: no tensor %s\n", argv[1], argv[2]);
			return 1;
		}
		for (int64_t i = 0; i < t->numel; i++)
			printf("%.9g\n", v[i]);
		free(v);
		iap_safetensors_close(st);
		return 0;
	}
	struct iap_npz *z;
	struct iap_npy a = { 0 };

	if (iap_npz_open(argv[1], &z, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	if (argc == 2) {
		for (int i = 0; i < z->n_members; i++) {
			char name[1024];

			snprintf(name, sizeof(name), "%s", z->members[i].name);
			if (strlen(name) > 4)
				name[strlen(name) - 4] = '\0';
			if (iap_npz_read(z, name, IAP_NPY_NONE, &a, &err)) {
				fprintf(stderr, "%s\n", err.msg);
				return 1;
			}
			printf("%s %s ", name, iap_npy_dtype_name(a.dtype));
			for (int d = 0; d < a.ndim; d++)
				printf("%s%lld", d ? "x" : "", (long long)a.shape[d]);
			printf("\n");
		}
	} else {
		if (iap_npz_read(z, argv[2], IAP_NPY_F8, &a, &err)) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		for (int64_t i = 0; i < a.numel; i++)
			printf("%.9g\n", ((double *)a.data)[i]);
	}
	iap_npy_free(&a);
	iap_npz_close(z);
	return 0;
}
