/*
 * tu_registry_load (testutil.h), apart from the other helpers: it is the one
 * that needs the host, so a test that links the SDK's objects instead of the
 * host and libiaprune.so (test_winograd) can still use the rest.
 */
#include "config.h"

#include <stdio.h>

#include <iaprune/registry.h>

#include "testutil.h"

struct iap_registry *tu_registry_load(const char *dir, const char *const *names, int n)
{
	struct iap_error err;
	struct iap_registry *reg = iap_registry_new(&err);
	char path[4096];

	if (!reg)
		return NULL;
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s.so", dir, names[i]);
		if (iap_registry_load(reg, path, &err)) {
			fprintf(stderr, "%s\n", err.msg);
			iap_registry_free(reg);
			return NULL;
		}
	}
	return reg;
}
