/*
 * A PNG decoded as 8-bit RGB (libpng's simplified API), for the tests that
 * check the pixels of a heatmap; listed in the SOURCES of those tests alone,
 * so the other tests need no libpng.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <png.h>

#include "png_read.h"

uint8_t *tu_read_png(const char *path, int *h, int *w)
{
	png_image img;
	uint8_t *px;

	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_file(&img, path))
		fail_msg("%s: %s", path, img.message);
	img.format = PNG_FORMAT_RGB;
	px = malloc(PNG_IMAGE_SIZE(img));
	assert_non_null(px);
	if (!png_image_finish_read(&img, NULL, px, 0, NULL))
		fail_msg("%s: %s", path, img.message);
	*h = (int)img.height;
	*w = (int)img.width;
	return px;
}
