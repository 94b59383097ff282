/*
 * libFuzzer target: the PNG and JPEG decoders as iaprune wraps them
 * (iap_image_decode from memory), into 0 (the file's own), 1 and 3 channels.
 * The first byte picks the channel count so one corpus covers all three.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include <iaprune/image.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int channels[] = { 0, 1, 3 };
	struct iap_error err = { 0, "" };
	struct iap_tensor out = { 0 };

	if (size < 1)
		return 0;
	iap_image_decode(data + 1, size - 1, "fuzz.img", channels[data[0] % 3], &out, &err);
	iap_tensor_free(&out);
	return 0;
}
