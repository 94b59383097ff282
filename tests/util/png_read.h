/* A PNG decoded as 8-bit RGB for tests that look at the pixels written (heatmaps). */
#ifndef IAP_TEST_PNG_READ_H
#define IAP_TEST_PNG_READ_H

#include <stdint.h>

/* Decode path as 8-bit RGB; returns the pixels (free them) and the size; fails the test otherwise. */
uint8_t *tu_read_png(const char *path, int *h, int *w);

#endif
