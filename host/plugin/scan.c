/*
 * Reading a plugin without trusting it (see scan.h): the ELF and size
 * checks made before dlopen, the content hash, the descriptor checks, and
 * the scanner child. GStreamer's registry is the model: descriptors are read
 * in a separate process, so a plugin that crashes while being loaded (a
 * constructor, its descriptor function) costs that plugin only.
 *
 * The child is a plain fork, not fork + exec of a helper: the host has no
 * worker threads running plugin code at scan time, and a fork needs no
 * helper program to be found at run time (installed, build tree, distcheck).
 */
#include "config.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iaprune/guard.h>

#include "scan.h"

static const char *const kind_text[IAP_PLUGIN_KIND_COUNT] = {
	"model", "attribution", "sampler", "policy", "dataset",
};

const char *iap_signal_name(int sig)
{
	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGFPE: return "SIGFPE";
	case SIGILL: return "SIGILL";
	case SIGABRT: return "SIGABRT";
	case SIGALRM: return "SIGALRM";
	case SIGKILL: return "SIGKILL";
	case SIGTERM: return "SIGTERM";
	case SIGINT: return "SIGINT";
	case SIGPIPE: return "SIGPIPE";
	case SIGSYS: return "SIGSYS";
	case SIGTRAP: return "SIGTRAP";
	default: return NULL;
	}
}

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

/* ---- checks before opening ------------------------------------------------------ */

#if UINTPTR_MAX > 0xffffffffu
#define IAP_ELF_CLASS ELFCLASS64
typedef Elf64_Ehdr iap_ehdr;
typedef Elf64_Phdr iap_phdr;
#else
#define IAP_ELF_CLASS ELFCLASS32
typedef Elf32_Ehdr iap_ehdr;
typedef Elf32_Phdr iap_phdr;
#endif

int iap_scan_check_elf(const char *path, const struct stat *st, struct iap_error *err)
{
	unsigned char ident[EI_NIDENT];
	iap_ehdr eh;
	uint64_t size = (uint64_t)st->st_size, need;
	int rc = IAP_OK;
	FILE *f = fopen(path, "rb");

	if (!f)
		return iap_error_set(err, IAP_EIO, "%s: cannot open: %s", path, strerror(errno));
	if (fread(ident, 1, sizeof(ident), f) != sizeof(ident) || memcmp(ident, ELFMAG, SELFMAG) != 0) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: not an ELF shared object (no ELF header)", path);
		goto out;
	}
	if (ident[EI_CLASS] != IAP_ELF_CLASS) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: ELF class %d does not match this iaprune's (%d-bit)",
				   path, ident[EI_CLASS], (int)(sizeof(void *) * 8));
		goto out;
	}
	rewind(f);
	if (size < sizeof(eh) || fread(&eh, 1, sizeof(eh), f) != sizeof(eh)) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: truncated: %llu bytes, shorter than an ELF header",
				   path, (unsigned long long)size);
		goto out;
	}
	if (eh.e_type != ET_DYN) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: not a shared object (ELF type %d)", path, (int)eh.e_type);
		goto out;
	}
	need = (uint64_t)eh.e_phoff + (uint64_t)eh.e_phnum * eh.e_phentsize;
	if (eh.e_shnum && (uint64_t)eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize > need)
		need = (uint64_t)eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
	if (need > size) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: truncated: %llu bytes, but its ELF tables need %llu",
				   path, (unsigned long long)size, (unsigned long long)need);
		goto out;
	}
	if (eh.e_phentsize != sizeof(iap_phdr) || fseek(f, (long)eh.e_phoff, SEEK_SET) != 0) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: malformed ELF program headers", path);
		goto out;
	}
	for (int i = 0; i < eh.e_phnum; i++) {
		iap_phdr ph;

		if (fread(&ph, 1, sizeof(ph), f) != sizeof(ph)) {
			rc = iap_error_set(err, IAP_EFORMAT, "%s: malformed ELF program headers", path);
			goto out;
		}
		if (ph.p_type == PT_LOAD && (uint64_t)ph.p_offset + ph.p_filesz > size) {
			rc = iap_error_set(err, IAP_EFORMAT,
					   "%s: truncated: %llu bytes, but segment %d ends at byte %llu",
					   path, (unsigned long long)size, i,
					   (unsigned long long)((uint64_t)ph.p_offset + ph.p_filesz));
			goto out;
		}
	}
out:
	fclose(f);
	return rc;
}

int iap_scan_hash_file(const char *path, uint64_t *hash, struct iap_error *err)
{
	unsigned char buf[65536];
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t n;
	FILE *f = fopen(path, "rb");

	if (!f)
		return iap_error_set(err, IAP_EIO, "%s: cannot open: %s", path, strerror(errno));
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		for (size_t i = 0; i < n; i++) {
			h ^= buf[i];
			h *= 0x100000001b3ULL;
		}
	if (ferror(f)) {
		fclose(f);
		return iap_error_set(err, IAP_EIO, "%s: read failed: %s", path, strerror(errno));
	}
	fclose(f);
	*hash = h;
	return IAP_OK;
}

/* ---- descriptor checks -------------------------------------------------------------- */

static int valid_name(const char *s)
{
	if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

/*
 * The first required vtable member a descriptor lacks, or NULL when it is
 * complete. Sizes are checked first: a vtable smaller than the members we
 * need would make us read past the plugin's struct.
 */
static const char *missing_entry(const struct iap_plugin_desc *d)
{
#define NEED(ops, member) \
	do { \
		if ((ops)->size < offsetof(__typeof__(*(ops)), member) + sizeof((ops)->member) || \
		    !(ops)->member) \
			return #member; \
	} while (0)
	switch (d->kind) {
	case IAP_PLUGIN_MODEL:
		NEED(d->ops.model, build);
		break;
	case IAP_PLUGIN_ATTRIBUTION: {
		const struct iap_attribution_ops *a = d->ops.attribution;

		NEED(a, create);
		NEED(a, destroy);
		if (a->size < offsetof(struct iap_attribution_ops, score) + sizeof(a->score) ||
		    (!a->ruleset && !a->score))
			return "ruleset or score";
		break;
	}
	case IAP_PLUGIN_SAMPLER:
		NEED(d->ops.sampler, select);
		break;
	case IAP_PLUGIN_POLICY:
		NEED(d->ops.policy, mask);
		break;
	case IAP_PLUGIN_DATASET:
		NEED(d->ops.dataset, open);
		NEED(d->ops.dataset, close);
		NEED(d->ops.dataset, count);
		NEED(d->ops.dataset, info);
		NEED(d->ops.dataset, load);
		break;
	default:
		return "kind";
	}
#undef NEED
	return NULL;
}

/* Check the schema once at load so later validation can trust it. */
static int check_schema(const struct iap_plugin_desc *d, const char *path, struct iap_error *err)
{
	const char *kn = kind_text[d->kind];

	for (const struct iap_option *o = d->options; o && o->name; o++) {
		if (!valid_name(o->name))
			return iap_error_set(err, IAP_EINVAL, "%s: %s plugin '%s': invalid option name '%s'",
					     path, kn, d->name, o->name);
		if ((unsigned)o->type >= IAP_OPT_TYPE_COUNT)
			return iap_error_set(err, IAP_EINVAL, "%s: %s plugin '%s': option '%s' has unknown type %d",
					     path, kn, d->name, o->name, (int)o->type);
		for (const struct iap_option *q = d->options; q < o; q++)
			if (strcmp(q->name, o->name) == 0)
				return iap_error_set(err, IAP_EINVAL, "%s: %s plugin '%s': option '%s' is declared twice",
						     path, kn, d->name, o->name);
		if (o->type == IAP_OPT_ENUM && (!o->choices || !o->choices[0]))
			return iap_error_set(err, IAP_EINVAL, "%s: %s plugin '%s': enum option '%s' has no choices",
					     path, kn, d->name, o->name);
		if (o->def) {
			struct iap_opts *tmp;
			const struct iap_option one[2] = { *o, { .name = NULL } };
			int rc = iap_opts_defaults(one, &tmp, err);

			if (rc) {
				iap_error_prefix(err, "%s: %s plugin '%s': bad default", path, kn, d->name);
				return rc;
			}
			iap_opts_free(tmp);
		}
	}
	return IAP_OK;
}

/* Everything about a descriptor that can be checked without calling into the plugin. */
static int check_desc(const struct iap_plugin_desc *d, const char *path, struct iap_error *err)
{
	const char *missing;

	/* All three zero: the designated initialiser never named IAP_PLUGIN_HEADER. */
	if (d->abi_major == 0 && d->abi_minor == 0 && d->size == 0)
		return iap_error_set(err, IAP_EABI,
				     "%s: descriptor has no ABI header (abi_major, abi_minor and size are 0): "
				     "begin it with IAP_PLUGIN_HEADER", path);
	if (d->abi_major != IAP_PLUGIN_ABI_MAJOR)
		return iap_error_set(err, IAP_EABI,
				     "%s: plugin ABI %u.%u is incompatible with this iaprune (ABI %d.%d): "
				     "major versions differ, rebuild the plugin",
				     path, d->abi_major, d->abi_minor, IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR);
	if (d->abi_minor > IAP_PLUGIN_ABI_MINOR)
		return iap_error_set(err, IAP_EABI,
				     "%s: plugin needs ABI %u.%u but this iaprune provides ABI %d.%d: "
				     "upgrade iaprune",
				     path, d->abi_major, d->abi_minor, IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR);
	/* Same major, minor ≤ ours: the struct may be older (shorter) but never shorter than x.0's. */
	if (d->size < offsetof(struct iap_plugin_desc, ops) + sizeof(d->ops))
		return iap_error_set(err, IAP_EABI, "%s: descriptor size %u is too small (expected %zu)",
				     path, d->size, sizeof(struct iap_plugin_desc));
	if ((unsigned)d->kind >= IAP_PLUGIN_KIND_COUNT)
		return iap_error_set(err, IAP_EFORMAT, "%s: unknown plugin kind %d", path, (int)d->kind);
	if (!valid_name(d->name))
		return iap_error_set(err, IAP_EFORMAT, "%s: invalid plugin name '%s' (want [a-z0-9][a-z0-9_-]*)",
				     path, d->name ? d->name : "(null)");
	if (!d->ops.any)
		return iap_error_set(err, IAP_EFORMAT, "%s: %s plugin '%s' has no ops table",
				     path, kind_text[d->kind], d->name);
	/* Every vtable begins with its size; 0 means the initialiser forgot it. */
	if (*(const uint32_t *)d->ops.any == 0)
		return iap_error_set(err, IAP_EABI,
				     "%s: %s plugin '%s': its ops table has size 0: set "
				     ".size = sizeof(struct iap_%s_ops)",
				     path, kind_text[d->kind], d->name, kind_text[d->kind]);
	missing = missing_entry(d);
	if (missing)
		return iap_error_set(err, IAP_EFORMAT, "%s: %s plugin '%s' lacks required entry point '%s'",
				     path, kind_text[d->kind], d->name, missing);
	return check_schema(d, path, err);
}

int iap_scan_open(const char *path, void **handle, const struct iap_plugin_desc **desc,
		  struct iap_error *err)
{
	const struct iap_plugin_desc *d;
	iap_plugin_descriptor_fn fn;
	const char *why;
	void *h;
	int rc;

	dlerror();
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		why = dlerror();
		return iap_error_set(err, IAP_EIO, "%s: cannot load: %s", path, why ? why : "unknown error");
	}
	dlerror();
	/* dlsym returns void *; going through a union avoids the ISO C object/function cast warning. */
	{
		union { void *obj; iap_plugin_descriptor_fn fn; } u;

		u.obj = dlsym(h, IAP_PLUGIN_SYMBOL);
		fn = u.fn;
	}
	if (!fn) {
		why = dlerror();
		rc = iap_error_set(err, IAP_EFORMAT, "%s: not an iaprune plugin: no '%s' symbol (%s)",
				   path, IAP_PLUGIN_SYMBOL, why ? why : "symbol is NULL");
		goto out_close;
	}
	d = fn();
	if (!d) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: %s() returned NULL", path, IAP_PLUGIN_SYMBOL);
		goto out_close;
	}
	rc = check_desc(d, path, err);
	if (rc)
		goto out_close;
	*handle = h;
	*desc = d;
	return IAP_OK;

out_close:
	dlclose(h);
	return rc;
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

/* ---- the scanner child ---------------------------------------------------------------------- */

/* In the child: read the descriptor, write the verdict to fd, never return. */
static void __attribute__((noreturn)) child_main(const struct iap_scan_rec *id, int fd)
{
	struct iap_scan_rec rec = *id;
	struct iap_error e = { 0, "" };
	const struct iap_plugin_desc *d = NULL;
	struct rlimit no_core = { 0, 0 };
	void *h = NULL;
	int devnull;
	FILE *f;

	iap_plugin_guard_child();
	/* A crashing plugin must not leave core files wherever iaprune ran. */
	setrlimit(RLIMIT_CORE, &no_core);
	/* What a constructor prints must not end up in `iaprune plugins` output. */
	devnull = open("/dev/null", O_WRONLY);
	if (devnull >= 0) {
		dup2(devnull, STDOUT_FILENO);
		close(devnull);
	}
	alarm(IAP_SCAN_TIMEOUT);
	f = fdopen(fd, "w");
	if (!f)
		_exit(3);
	rec.status = iap_scan_open(id->path, &h, &d, &e);
	rec.signal = 0;
	rec.msg = rec.status ? e.msg : NULL;
	memset(&rec.desc, 0, sizeof(rec.desc));
	if (!rec.status) {
		/* Only the fields every 1.0 descriptor has (check_desc made sure of its size). */
		rec.desc.abi_major = d->abi_major;
		rec.desc.abi_minor = d->abi_minor;
		rec.desc.kind = d->kind;
		rec.desc.name = d->name;
		rec.desc.version = d->version;
		rec.desc.license = d->license;
		rec.desc.summary = d->summary;
		rec.desc.options = d->options;
	}
	iap_scan_rec_write(f, &rec);
	if (fflush(f) != 0)
		_exit(4);
	/* _exit: no atexit handlers, no plugin destructors, no flush of the parent's stdio copies. */
	_exit(0);
}

int iap_scan_in_child(struct iap_scan_rec *rec, struct iap_error *err)
{
	char *buf = NULL, *pos;
	size_t len = 0, cap = 0;
	struct iap_scan_rec got;
	int fds[2], status = 0, parsed;
	pid_t pid;

	/* Unflushed output would be written twice if the child flushed its copy. */
	fflush(NULL);
	if (pipe(fds) != 0)
		return iap_error_set(err, IAP_EIO, "plugin scanner: pipe: %s", strerror(errno));
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return iap_error_set(err, IAP_EIO, "plugin scanner: fork: %s", strerror(errno));
	}
	if (pid == 0) {
		close(fds[0]);
		child_main(rec, fds[1]);
	}
	close(fds[1]);
	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			char *g = realloc(buf, cap ? 2 * cap : 16384);

			if (!g) {
				free(buf);
				close(fds[0]);
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
				return iap_error_set(err, IAP_ENOMEM, "plugin scanner: out of memory");
			}
			buf = g;
			cap = cap ? 2 * cap : 16384;
		}
		n = read(fds[0], buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fds[0]);
	buf[len] = '\0';
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	pos = buf;
	parsed = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		parsed = iap_scan_rec_parse(&pos, &got);
	free(rec->msg);
	rec->msg = NULL;
	if (parsed == 1) {
		rec->status = got.status;
		rec->signal = 0;
		rec->msg = got.msg;
		rec->desc = got.desc;
		got.msg = NULL;
		memset(&got.desc, 0, sizeof(got.desc));
		iap_scan_rec_clear(&got);
		free(buf);
		return IAP_OK;
	}
	free(buf);
	{
		char text[IAP_ERROR_MSG_MAX];

		rec->status = IAP_EFORMAT;
		rec->signal = 0;
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
			rec->signal = SIGALRM;
			snprintf(text, sizeof(text), "%s: broken: reading its descriptor took more than %d s "
				 "(the plugin scanner was stopped); skipped", rec->path, IAP_SCAN_TIMEOUT);
		} else if (WIFSIGNALED(status)) {
			const char *sn = iap_signal_name(WTERMSIG(status));

			rec->signal = WTERMSIG(status);
			if (sn)
				snprintf(text, sizeof(text), "%s: broken: crashed the plugin scanner with %s "
					 "while its descriptor was read; skipped", rec->path, sn);
			else
				snprintf(text, sizeof(text), "%s: broken: crashed the plugin scanner with signal %d "
					 "while its descriptor was read; skipped", rec->path, WTERMSIG(status));
		} else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
			snprintf(text, sizeof(text), "%s: broken: the plugin scanner exited with status %d while "
				 "its descriptor was read (does the plugin call exit()?); skipped", rec->path,
				 WEXITSTATUS(status));
		} else {
			snprintf(text, sizeof(text), "%s: broken: the plugin scanner gave no answer; skipped",
				 rec->path);
		}
		rec->msg = strdup(text);
		if (!rec->msg)
			return iap_error_set(err, IAP_ENOMEM, "plugin scanner: out of memory");
	}
	return IAP_OK;
}
