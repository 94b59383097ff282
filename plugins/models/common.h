/*
 * What the three model plugins share: resolving the input shape and class
 * count from the options and, when a dataset is given, from the data.
 */
#ifndef IAP_MODELS_COMMON_H
#define IAP_MODELS_COMMON_H

#include <iaprune/plugin.h>

/*
 * Fill *classes, *channels and *size: an option set in the pipeline wins but
 * must agree with the data; otherwise the data decides; without data the
 * torchvision defaults (1000 classes, 3 channels, 224 pixels) apply. Images
 * must be square.
 */
int iap_model_input(const char *model, const struct iap_opts *opts,
		    const struct iap_dataset_info *data, int *classes, int *channels, int *size,
		    struct iap_error *err);

#endif
