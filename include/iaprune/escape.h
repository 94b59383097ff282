/*
 * iaprune — printing names that come from files. A tensor name, YAML key or
 * metadata value can hold newlines or terminal escape sequences; printed raw
 * they forge extra output lines or drive the user's terminal. Everything
 * iaprune prints from a file goes through here: control characters become
 * visible escapes (\n, \t, \r, \e, \xNN), printable text and UTF-8 stay.
 */
#ifndef IAPRUNE_ESCAPE_H
#define IAPRUNE_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Write s escaped into out (len bytes, always terminated; an escape that
 * does not fit is left out whole). Returns the length the whole escaped text
 * needs (without the terminator), like snprintf.
 */
size_t iap_escape(const char *s, char *out, size_t len);

/* fputs(s, f) with the same escapes. */
void iap_fputs_escaped(const char *s, FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_ESCAPE_H */
