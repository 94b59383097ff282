/*
 * The names of the plugin kinds, as pipelines, descriptors and messages
 * write them. They belong to the ABI (plugin.h), not to the host's registry,
 * so a plugin can name a kind without linking the host.
 */
#include "config.h"

#include <string.h>

#include <iaprune/plugin.h>

static const char *const kind_names[IAP_PLUGIN_KIND_COUNT] = {
	[IAP_PLUGIN_MODEL] = "model",
	[IAP_PLUGIN_ATTRIBUTION] = "attribution",
	[IAP_PLUGIN_SAMPLER] = "sampler",
	[IAP_PLUGIN_POLICY] = "policy",
	[IAP_PLUGIN_DATASET] = "dataset",
};

const char *iap_plugin_kind_name(int kind)
{
	if (kind < 0 || kind >= IAP_PLUGIN_KIND_COUNT)
		return NULL;
	return kind_names[kind];
}

int iap_plugin_kind_parse(const char *name)
{
	for (int k = 0; name && k < IAP_PLUGIN_KIND_COUNT; k++)
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	return -1;
}
