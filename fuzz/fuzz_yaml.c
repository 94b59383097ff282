/*
 * libFuzzer target: the YAML pipeline parser and the schema validation.
 * Any input must come back as IAP_OK or an error with a message; never a
 * crash, a leak, an out-of-bounds read or a hang.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <iaprune/pipeline.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *sink;
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = NULL;

	if (!sink)
		sink = fopen("/dev/null", "w");
	if (iap_cfg_load_string((const char *)data, size, "fuzz.yaml", &cfg, &err))
		return 0;
	/* Validation fills defaults in; dumping afterwards walks the whole tree. */
	if (iap_pipeline_validate(cfg, NULL, &err) == IAP_OK && sink)
		iap_cfg_dump(iap_cfg_root(cfg), sink);
	iap_cfg_free(cfg);
	return 0;
}
