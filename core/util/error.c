/* Status codes and the error message slot (see include/iaprune/error.h). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <iaprune/error.h>
#include <iaprune/escape.h>

static const char *const status_names[IAP_ESTATUS_COUNT] = {
	[IAP_OK] = "ok",
	[IAP_EINVAL] = "invalid argument",
	[IAP_ENOMEM] = "out of memory or over a size limit",
	[IAP_EIO] = "input/output error",
	[IAP_EFORMAT] = "malformed input",
	[IAP_ESHAPE] = "shape mismatch",
	[IAP_EUNSUPPORTED] = "unsupported",
	[IAP_EABI] = "ABI mismatch",
	[IAP_ENUMERIC] = "non-finite value",
	[IAP_EWRITE] = "cannot write output",
	[IAP_EBUSY] = "in use by another process",
	[IAP_ELIMIT] = "over a limit",
	[IAP_EPLUGIN] = "plugin broke its contract",
};

const char *iap_status_name(int code)
{
	if (code < 0 || code >= IAP_ESTATUS_COUNT)
		return "unknown error";
	return status_names[code];
}

int iap_error_set(struct iap_error *err, int code, const char *fmt, ...)
{
	char raw[IAP_ERROR_MSG_MAX];
	va_list ap;

	if (!err)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/*
	 * One line, and nothing a terminal obeys: messages quote names from
	 * files (tensor names, YAML keys), which may hold newlines or escapes.
	 */
	iap_escape(raw, err->msg, sizeof(err->msg));
	return code;
}

/*
 * Only called on a failure path, so it never answers IAP_OK: without a slot
 * (or with one no failure was recorded in) there is no code to read, and
 * IAP_EINVAL stands in. Callers that hold the real code return that.
 */
static int prefix_code(const struct iap_error *err)
{
	return err && err->code != IAP_OK ? err->code : IAP_EINVAL;
}

int iap_error_prefix(struct iap_error *err, const char *fmt, ...)
{
	char raw[256], prefix[256];
	size_t plen, mlen;
	va_list ap;
	int n;

	if (!err)
		return prefix_code(err);
	va_start(ap, fmt);
	n = vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	if (n < 0)
		return prefix_code(err);
	iap_escape(raw, prefix, sizeof(prefix));
	plen = strlen(prefix);
	if (plen + 2 >= sizeof(err->msg))
		return prefix_code(err);
	/* Shift the old message right (dropping its tail if needed), then write the prefix. */
	mlen = strnlen(err->msg, sizeof(err->msg) - 1);
	if (plen + 2 + mlen > sizeof(err->msg) - 1)
		mlen = sizeof(err->msg) - 1 - plen - 2;
	memmove(err->msg + plen + 2, err->msg, mlen);
	err->msg[plen + 2 + mlen] = '\0';
	memcpy(err->msg, prefix, plen);
	err->msg[plen] = ':';
	err->msg[plen + 1] = ' ';
	return prefix_code(err);
}

void iap_error_clear(struct iap_error *err)
{
	if (!err)
		return;
	err->code = IAP_OK;
	err->msg[0] = '\0';
}
