/*
 * Scan records (see scan_rec.h): freeing and copying one, and the text form
 * in which the scanner child answers and the cache file stores them. Here,
 * below both the scanner and the cache, because both speak this format.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scan_rec.h"

/* ---- records ---------------------------------------------------------------- */

static void free_options(struct iap_option *opts)
{
	for (struct iap_option *o = opts; o && o->name; o++) {
		free((char *)o->name);
		free((char *)o->def);
		free((char *)o->help);
		for (const char *const *c = o->choices; c && *c; c++)
			free((char *)*c);
		free((void *)o->choices);
	}
	free(opts);
}

void iap_scan_rec_clear(struct iap_scan_rec *rec)
{
	free(rec->path);
	free(rec->msg);
	free((char *)rec->desc.name);
	free((char *)rec->desc.version);
	free((char *)rec->desc.license);
	free((char *)rec->desc.summary);
	free_options((struct iap_option *)rec->desc.options);
	memset(rec, 0, sizeof(*rec));
}

/* strdup that keeps NULL; *fail is set when a copy could not be made. */
static char *dup_or_null(const char *s, int *fail)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*fail = 1;
	return d;
}

/* Heap copy of a schema (ended by a NULL name); NULL stays NULL. */
static struct iap_option *copy_options(const struct iap_option *src, int *fail)
{
	struct iap_option *dst;
	int n = 0;

	if (!src)
		return NULL;
	while (src[n].name)
		n++;
	dst = calloc((size_t)n + 1, sizeof(*dst));
	if (!dst) {
		*fail = 1;
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		dst[i] = src[i];
		dst[i].name = dup_or_null(src[i].name, fail);
		dst[i].def = dup_or_null(src[i].def, fail);
		dst[i].help = dup_or_null(src[i].help, fail);
		dst[i].choices = NULL;
		if (src[i].choices) {
			int m = 0;
			const char **ch;

			while (src[i].choices[m])
				m++;
			ch = calloc((size_t)m + 1, sizeof(*ch));
			if (!ch) {
				*fail = 1;
			} else {
				for (int k = 0; k < m; k++)
					ch[k] = dup_or_null(src[i].choices[k], fail);
				dst[i].choices = ch;
			}
		}
		if (!dst[i].name) {     /* keep the array terminated where the copy failed */
			*fail = 1;
			break;
		}
	}
	return dst;
}

/* Metadata of d into out: strings and schema copied, no code pointers. */
static void copy_desc_meta(struct iap_plugin_desc *out, const struct iap_plugin_desc *d, int *fail)
{
	memset(out, 0, sizeof(*out));
	out->abi_major = d->abi_major;
	out->abi_minor = d->abi_minor;
	out->size = (uint32_t)sizeof(*out);
	out->kind = d->kind;
	out->name = dup_or_null(d->name, fail);
	out->version = dup_or_null(d->version, fail);
	out->license = dup_or_null(d->license, fail);
	out->summary = dup_or_null(d->summary, fail);
	out->options = copy_options(d->options, fail);
}

int iap_scan_rec_copy(struct iap_scan_rec *dst, const struct iap_scan_rec *src)
{
	int fail = 0;

	*dst = *src;
	dst->path = dup_or_null(src->path, &fail);
	dst->msg = dup_or_null(src->msg, &fail);
	if (src->status == IAP_OK)
		copy_desc_meta(&dst->desc, &src->desc, &fail);
	else
		memset(&dst->desc, 0, sizeof(dst->desc));
	if (fail) {
		iap_scan_rec_clear(dst);
		return IAP_ENOMEM;
	}
	return IAP_OK;
}

/* ---- the wire format (the pipe and the cache file) ------------------------------------- */

/* A string field: "\-" for NULL, else the text with \, tab, LF and CR escaped. */
static void put_str(FILE *f, const char *s)
{
	fputc('\t', f);
	if (!s) {
		fputs("\\-", f);
		return;
	}
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\t')
			fputs("\\t", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (*s == '\r')
			fputs("\\r", f);
		else
			fputc(*s, f);
	}
}

void iap_scan_rec_write(FILE *f, const struct iap_scan_rec *rec)
{
	const struct iap_plugin_desc *d = &rec->desc;

	fputs("R", f);
	put_str(f, rec->path);
	fprintf(f, "\t%lld\t%lld\t%lld\t%016llx\t%d\t%d", (long long)rec->size, (long long)rec->mtime_sec,
		(long long)rec->mtime_nsec, (unsigned long long)rec->hash, rec->status, rec->signal);
	put_str(f, rec->msg);
	fputc('\n', f);
	if (rec->status == IAP_OK) {
		fprintf(f, "D\t%u\t%u\t%d", d->abi_major, d->abi_minor, (int)d->kind);
		put_str(f, d->name);
		put_str(f, d->version);
		put_str(f, d->license);
		put_str(f, d->summary);
		fputc('\n', f);
		for (const struct iap_option *o = d->options; o && o->name; o++) {
			fputs("O", f);
			put_str(f, o->name);
			fprintf(f, "\t%d", (int)o->type);
			put_str(f, o->def);
			fprintf(f, "\t%d\t%a\t%a", o->has_range, o->min, o->max);
			put_str(f, o->help);
			for (const char *const *c = o->choices; c && *c; c++)
				put_str(f, *c);
			fputc('\n', f);
		}
	}
	fputs("E\n", f);
}

/* Split line (modified in place) at tabs into at most max fields; returns the count. */
static int split_fields(char *line, char **fields, int max)
{
	int n = 0;

	while (n < max) {
		fields[n++] = line;
		line = strchr(line, '\t');
		if (!line)
			break;
		*line++ = '\0';
	}
	return n;
}

/* Unescape a field into a heap string; NULL for "\-". *fail on bad escapes or no memory. */
static char *get_str(const char *s, int *fail)
{
	char *out, *o;

	if (!strcmp(s, "\\-"))
		return NULL;
	out = malloc(strlen(s) + 1);
	if (!out) {
		*fail = 1;
		return NULL;
	}
	for (o = out; *s; s++) {
		if (*s != '\\') {
			*o++ = *s;
			continue;
		}
		s++;
		if (*s == '\\')
			*o++ = '\\';
		else if (*s == 't')
			*o++ = '\t';
		else if (*s == 'n')
			*o++ = '\n';
		else if (*s == 'r')
			*o++ = '\r';
		else {
			*fail = 1;
			break;
		}
	}
	*o = '\0';
	return out;
}

#define MAX_FIELDS 80

int iap_scan_rec_parse(char **pos, struct iap_scan_rec *rec)
{
	char *fields[MAX_FIELDS];
	struct iap_option *opts = NULL;
	int n_opts = 0, fail = 0, seen_r = 0;

	memset(rec, 0, sizeof(*rec));
	while (**pos) {
		char *line = *pos, *nl = strchr(line, '\n');
		int nf;

		if (!nl)
			break;                       /* an unfinished last line: the writer was cut off */
		*nl = '\0';
		*pos = nl + 1;
		nf = split_fields(line, fields, MAX_FIELDS);
		if (!seen_r) {
			if (strcmp(fields[0], "R") || nf != 9)
				goto bad;
			rec->path = get_str(fields[1], &fail);
			rec->size = strtoll(fields[2], NULL, 10);
			rec->mtime_sec = strtoll(fields[3], NULL, 10);
			rec->mtime_nsec = strtoll(fields[4], NULL, 10);
			rec->hash = strtoull(fields[5], NULL, 16);
			rec->status = atoi(fields[6]);
			rec->signal = atoi(fields[7]);
			rec->msg = get_str(fields[8], &fail);
			seen_r = 1;
		} else if (!strcmp(fields[0], "D") && nf == 8) {
			rec->desc.abi_major = (uint32_t)strtoul(fields[1], NULL, 10);
			rec->desc.abi_minor = (uint32_t)strtoul(fields[2], NULL, 10);
			rec->desc.size = (uint32_t)sizeof(rec->desc);
			rec->desc.kind = (enum iap_plugin_kind)atoi(fields[3]);
			rec->desc.name = get_str(fields[4], &fail);
			rec->desc.version = get_str(fields[5], &fail);
			rec->desc.license = get_str(fields[6], &fail);
			rec->desc.summary = get_str(fields[7], &fail);
		} else if (!strcmp(fields[0], "O") && nf >= 8) {
			struct iap_option *grown = realloc(opts, ((size_t)n_opts + 2) * sizeof(*opts));
			struct iap_option *o;
			const char **ch;

			if (!grown)
				goto bad;
			opts = grown;
			o = &opts[n_opts];
			memset(o, 0, 2 * sizeof(*o));
			rec->desc.options = opts;
			o->name = get_str(fields[1], &fail);
			if (!o->name)
				goto bad;
			n_opts++;
			o->type = (enum iap_opt_type)atoi(fields[2]);
			o->def = get_str(fields[3], &fail);
			o->has_range = atoi(fields[4]);
			o->min = strtod(fields[5], NULL);
			o->max = strtod(fields[6], NULL);
			o->help = get_str(fields[7], &fail);
			if (nf > 8) {
				ch = calloc((size_t)(nf - 8) + 1, sizeof(*ch));
				if (!ch)
					goto bad;
				for (int k = 8; k < nf; k++)
					ch[k - 8] = get_str(fields[k], &fail);
				o->choices = ch;
			}
		} else if (!strcmp(fields[0], "E") && nf == 1) {
			if (fail || !rec->path || (rec->status == IAP_OK && !rec->desc.name) ||
			    (rec->status != IAP_OK && !rec->msg) || (unsigned)rec->desc.kind >= IAP_PLUGIN_KIND_COUNT)
				goto bad;
			return 1;
		} else {
			goto bad;
		}
	}
	if (!seen_r)
		return 0;
bad:
	rec->desc.options = opts;
	iap_scan_rec_clear(rec);
	return -1;
}
