/* Escaping names from files for printing (see include/iaprune/escape.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <iaprune/escape.h>

/*
 * The escape for the byte(s) at s, or "" when they print as they are; *used
 * is how many bytes it covers. C0 controls, DEL and the C1 controls (UTF-8
 * U+0080..U+009F, which include the 8-bit CSI some terminals obey) are
 * escaped. A backslash stays as it is: messages quote paths and JSON with
 * them, and the point is harmless output, not a reversible encoding.
 */
static const char *escape_one(const unsigned char *s, size_t *used, char buf[8])
{
	*used = 1;
	switch (*s) {
	case '\n': return "\\n";
	case '\t': return "\\t";
	case '\r': return "\\r";
	case 0x1b: return "\\e";
	default: break;
	}
	if (*s < 0x20 || *s == 0x7f) {
		snprintf(buf, 8, "\\x%02x", *s);
		return buf;
	}
	if (*s == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f) {
		*used = 2;
		snprintf(buf, 8, "\\u%04x", s[1]);
		return buf;
	}
	return "";
}

size_t iap_escape(const char *s, char *out, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t need = 0, at = 0;

	while (*p) {
		char buf[8];
		size_t used, n;
		const char *e = escape_one(p, &used, buf);

		n = *e ? strlen(e) : 1;
		if (len && at + n < len) {
			if (*e)
				memcpy(out + at, e, n);
			else
				out[at] = (char)*p;
			at += n;
		} else {
			len = at + 1;   /* full: stop writing, keep counting */
		}
		need += n;
		p += used;
	}
	if (len)
		out[at] = '\0';
	return need;
}

void iap_fputs_escaped(const char *s, FILE *f)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		char buf[8];
		size_t used;
		const char *e = escape_one(p, &used, buf);

		if (*e)
			fputs(e, f);
		else
			fputc(*p, f);
		p += used;
	}
}
