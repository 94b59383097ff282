/*
 * Reading a plugin without trusting it (see scan.h): the ELF and size
 * checks made before dlopen, the content hash, the descriptor checks, and
 * the scanner child (the records it answers with are scan_rec.c's). GStreamer's registry is the model: descriptors are read
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
#include "signals.h"

static const char *const kind_text[IAP_PLUGIN_KIND_COUNT] = {
	"model", "attribution", "sampler", "policy", "dataset",
};

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
