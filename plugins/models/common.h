/*
 * What the three model plugins share: resolving the input shape and class
 * count from the options and, when a dataset is given, from the data.
 */
#ifndef IAP_MODELS_COMMON_H
#define IAP_MODELS_COMMON_H

#include <iaprune/plugin.h>

/* The input options every model plugin has; 0 means "from the dataset". */
#define IAP_MODEL_INPUT_OPTIONS \
	{ .name = "num_classes", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 1000000, \
	  .help = "classifier outputs (0: from the dataset, else 1000)" }, \
	{ .name = "in_channels", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 64, \
	  .help = "input channels (0: from the dataset, else 3)" }, \
	{ .name = "image_size", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 4096, \
	  .help = "input height and width (0: from the dataset, else 224)" }

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
