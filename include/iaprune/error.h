/*
 * iaprune — status codes and the error message slot.
 *
 * Library code never prints and never exits: it returns one of these codes and,
 * when the caller passed a struct iap_error, leaves a one-line message there
 * (naming the file, line, key or tensor involved). Only the CLI chooses what to
 * print and which exit status to use.
 */
#ifndef IAPRUNE_ERROR_H
#define IAPRUNE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum iap_status {
	IAP_OK = 0,
	IAP_EINVAL,      /* bad argument or option value */
	IAP_ENOMEM,      /* allocation failed or a size limit was hit */
	IAP_EIO,         /* file system error */
	IAP_EFORMAT,     /* malformed input file */
	IAP_ESHAPE,      /* tensor shapes do not fit together */
	IAP_EUNSUPPORTED,/* valid request we do not implement (e.g. a rule set lacks an op) */
	IAP_EABI,        /* plugin ABI mismatch */
	IAP_ENUMERIC,    /* NaN or Inf where finite numbers are required */
	IAP_EWRITE,      /* an output could not be written (disk full, permissions) */
	IAP_EBUSY,       /* the output folder is in use by another process */
	IAP_ELIMIT,      /* the input asks for more than a configured limit (memory, classes) */
	IAP_EPLUGIN,     /* a plugin broke its contract (what it returned is not what it promised) */
	IAP_ESTATUS_COUNT
};

#define IAP_ERROR_MSG_MAX 1024

struct iap_error {
	int code;                      /* enum iap_status of the last failure */
	char msg[IAP_ERROR_MSG_MAX];   /* one line, no trailing newline */
};

/*
 * Record a failure in err (which may be NULL) and return code, so call sites
 * can write `return iap_error_set(err, IAP_EINVAL, "...", ...);`.
 */
int iap_error_set(struct iap_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Prefix the message already in err with "prefix: " (context added on the way up).
 * Returns err->code; never IAP_OK: IAP_EINVAL when err is NULL or holds no
 * failure. Callers holding the real code return it themselves.
 */
int iap_error_prefix(struct iap_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Clear err (may be NULL). */
void iap_error_clear(struct iap_error *err);

/* Short name of a status code ("invalid argument", ...). */
const char *iap_status_name(int code);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_ERROR_H */
