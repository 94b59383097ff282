/* Reading input files whole, with a size limit checked before allocating (library-internal). */
#ifndef IAP_CORE_IO_FILE_H
#define IAP_CORE_IO_FILE_H

#include <stddef.h>
#include <sys/stat.h>

#include <iaprune/error.h>

#include "../core/util/visibility.h"

/*
 * Open path for reading and check it is a regular file; *fd and *st are
 * filled. Errors name the file ("scan.png: No such file or directory",
 * "dir: not a regular file").
 */
IAP_INTERNAL
int iap_file_open(const char *path, int *fd, struct stat *st, struct iap_error *err);

/*
 * Read a whole regular file into a new buffer (free with free()). A file
 * larger than limit is refused before allocating, with "<path>: <what> too
 * large (N bytes; limit L)". A file that shrinks while being read yields what
 * was there.
 */
IAP_INTERNAL
int iap_file_read(const char *path, size_t limit, const char *what, unsigned char **buf, size_t *len,
		  struct iap_error *err);

#endif
