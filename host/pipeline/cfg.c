/*
 * The config tree: libyaml's document → our nodes with file:line:col, typed
 * getters, --set overrides and a YAML dump (see host/include/iaprune/pipeline.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include <iaprune/pipeline.h>
#include "cfg_internal.h"

/* Aliases are copied, so "billion laughs" documents and cycles must stop somewhere. */
#define MAX_NODES 200000
#define MAX_DEPTH 64

struct iap_cfg {
	struct iap_cfg_node *root;
	int n_files, cap_files;
	char **files;       /* names the nodes point at */
	long n_nodes;       /* made while loading (limit) */
};

static int grow_items(struct iap_cfg_node *n)
{
	struct iap_cfg_node **p;
	int cap;

	if (n->n_items < n->cap_items)
		return 0;
	cap = n->cap_items ? n->cap_items * 2 : 4;
	p = realloc(n->items, (size_t)cap * sizeof(*p));
	if (!p)
		return -1;
	n->items = p;
	n->cap_items = cap;
	return 0;
}

int cfgi_append(struct iap_cfg_node *parent, struct iap_cfg_node *child)
{
	if (grow_items(parent))
		return -1;
	parent->items[parent->n_items++] = child;
	return 0;
}

void cfgi_node_free(struct iap_cfg_node *n)
{
	if (!n)
		return;
	for (int i = 0; i < n->n_items; i++)
		cfgi_node_free(n->items[i]);
	free(n->items);
	free(n->key);
	free(n->value);
	free(n);
}

struct iap_cfg_node *cfgi_node_new(enum iap_cfg_kind kind, const char *file, int line, int col)
{
	struct iap_cfg_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->kind = kind;
	n->file = file;
	n->line = line;
	n->col = col;
	return n;
}

/* Intern a file name in cfg so nodes can point at it for the tree's life. */
const char *cfgi_file(struct iap_cfg *cfg, const char *name)
{
	char **p;

	for (int i = 0; i < cfg->n_files; i++)
		if (strcmp(cfg->files[i], name) == 0)
			return cfg->files[i];
	if (cfg->n_files == cfg->cap_files) {
		int cap = cfg->cap_files ? cfg->cap_files * 2 : 4;

		p = realloc(cfg->files, (size_t)cap * sizeof(*p));
		if (!p)
			return NULL;
		cfg->files = p;
		cfg->cap_files = cap;
	}
	cfg->files[cfg->n_files] = strdup(name);
	if (!cfg->files[cfg->n_files])
		return NULL;
	return cfg->files[cfg->n_files++];
}

const char *cfgi_name(const struct iap_cfg *cfg)
{
	return cfg->n_files ? cfg->files[0] : "pipeline";
}

struct iap_cfg_node *cfgi_root_mut(struct iap_cfg *cfg)
{
	return cfg->root;
}

void cfgi_set_root(struct iap_cfg *cfg, struct iap_cfg_node *root)
{
	cfg->root = root;
}

int cfgi_at(struct iap_error *err, int code, const struct iap_cfg_node *n, const char *fmt, ...)
{
	char msg[IAP_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!n)
		return iap_error_set(err, code, "%s", msg);
	/* Filled-in defaults were never written anywhere: no position to give. */
	if (!n->line)
		return iap_error_set(err, code, "%s: %s", n->file, msg);
	return iap_error_set(err, code, "%s:%d:%d: %s", n->file, n->line, n->col, msg);
}

/* The same, at the key of a map entry (where "unknown key" belongs). */
int cfgi_at_key(struct iap_error *err, int code, const struct iap_cfg_node *n, const char *fmt, ...)
{
	char msg[IAP_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return iap_error_set(err, code, "%s:%d:%d: %s", n->file, n->key ? n->key_line : n->line,
			     n->key ? n->key_col : n->col, msg);
}

/* ---- loading ------------------------------------------------------------------ */

struct loader {
	struct iap_cfg *cfg;
	yaml_document_t *doc;
	const char *file;
	struct iap_error *err;
};

static int is_null_scalar(const yaml_node_t *y)
{
	const char *v = (const char *)y->data.scalar.value;

	if (y->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

/* Only the YAML core schema's tags: anything else could mean "construct an object" elsewhere. */
static int tag_ok(const yaml_node_t *y)
{
	static const char *const ok[] = {
		YAML_STR_TAG, YAML_INT_TAG, YAML_FLOAT_TAG, YAML_BOOL_TAG, YAML_NULL_TAG,
		YAML_MAP_TAG, YAML_SEQ_TAG, NULL,
	};

	if (!y->tag)
		return 1;
	for (int i = 0; ok[i]; i++)
		if (!strcmp((const char *)y->tag, ok[i]))
			return 1;
	return 0;
}

static struct iap_cfg_node *convert(struct loader *L, int id, int depth);

static struct iap_cfg_node *find_entry(struct iap_cfg_node *map, const char *key)
{
	for (int i = 0; i < map->n_items; i++)
		if (!strcmp(map->items[i]->key, key))
			return map->items[i];
	return NULL;
}

/*
 * Add the entries of one "<<" source map that the target does not define.
 * Explicit keys win over merged ones whatever their order (YAML merge-key
 * semantics), which is why merges are applied after the explicit entries.
 */
static int merge_from(struct loader *L, struct iap_cfg_node *map, int src_id, int depth)
{
	yaml_node_t *src = yaml_document_get_node(L->doc, src_id);

	if (!src || src->type != YAML_MAPPING_NODE) {
		iap_error_set(L->err, IAP_EINVAL, "%s:%lu:%lu: '<<' needs a mapping or a list of mappings",
			      L->file, src ? (unsigned long)src->start_mark.line + 1 : 0UL,
			      src ? (unsigned long)src->start_mark.column + 1 : 0UL);
		return -1;
	}
	for (yaml_node_pair_t *p = src->data.mapping.pairs.start; p < src->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
		struct iap_cfg_node *v;

		if (!k || k->type != YAML_SCALAR_NODE || find_entry(map, (const char *)k->data.scalar.value))
			continue;
		v = convert(L, p->value, depth + 1);
		if (!v)
			return -1;
		v->key = strdup((const char *)k->data.scalar.value);
		v->key_line = (int)k->start_mark.line + 1;
		v->key_col = (int)k->start_mark.column + 1;
		if (!v->key || cfgi_append(map, v)) {
			cfgi_node_free(v);
			iap_error_set(L->err, IAP_ENOMEM, "%s: out of memory", L->file);
			return -1;
		}
	}
	return 0;
}

static int convert_map(struct loader *L, yaml_node_t *y, struct iap_cfg_node *map, int depth)
{
	yaml_node_pair_t *p;

	for (p = y->data.mapping.pairs.start; p < y->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
		const char *key;
		struct iap_cfg_node *v, *prev;

		if (!k || k->type != YAML_SCALAR_NODE) {
			iap_error_set(L->err, IAP_EINVAL, "%s:%lu:%lu: keys must be plain strings", L->file,
				      k ? (unsigned long)k->start_mark.line + 1 : 0UL,
				      k ? (unsigned long)k->start_mark.column + 1 : 0UL);
			return -1;
		}
		key = (const char *)k->data.scalar.value;
		if (!strcmp(key, "<<") && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			continue;  /* merged after the explicit keys */
		prev = find_entry(map, key);
		if (prev) {
			iap_error_set(L->err, IAP_EINVAL, "%s:%lu:%lu: duplicate key '%s' (first at line %d)",
				      L->file, (unsigned long)k->start_mark.line + 1,
				      (unsigned long)k->start_mark.column + 1, key, prev->key_line);
			return -1;
		}
		v = convert(L, p->value, depth + 1);
		if (!v)
			return -1;
		v->key = strdup(key);
		v->key_line = (int)k->start_mark.line + 1;
		v->key_col = (int)k->start_mark.column + 1;
		if (!v->key || cfgi_append(map, v)) {
			cfgi_node_free(v);
			iap_error_set(L->err, IAP_ENOMEM, "%s: out of memory", L->file);
			return -1;
		}
	}
	for (p = y->data.mapping.pairs.start; p < y->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(L->doc, p->value);

		if (strcmp((const char *)k->data.scalar.value, "<<") ||
		    k->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
			continue;
		if (v && v->type == YAML_SEQUENCE_NODE) {
			for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++)
				if (merge_from(L, map, *it, depth))
					return -1;
		} else if (merge_from(L, map, p->value, depth)) {
			return -1;
		}
	}
	return 0;
}

/* Our copy of libyaml node id (aliases were resolved by libyaml into shared ids). */
static struct iap_cfg_node *convert(struct loader *L, int id, int depth)
{
	yaml_node_t *y = yaml_document_get_node(L->doc, id);
	struct iap_cfg_node *n;
	int line, col;

	if (!y) {
		iap_error_set(L->err, IAP_EFORMAT, "%s: broken YAML document", L->file);
		return NULL;
	}
	line = (int)y->start_mark.line + 1;
	col = (int)y->start_mark.column + 1;
	if (depth > MAX_DEPTH || ++L->cfg->n_nodes > MAX_NODES) {
		iap_error_set(L->err, IAP_ELIMIT,
			      "%s:%d:%d: document too large or too deeply nested (recursive alias?)",
			      L->file, line, col);
		return NULL;
	}
	if (!tag_ok(y)) {
		iap_error_set(L->err, IAP_EINVAL,
			      "%s:%d:%d: tag '%s' is not supported (pipelines are plain data)",
			      L->file, line, col, (const char *)y->tag);
		return NULL;
	}
	switch (y->type) {
	case YAML_SCALAR_NODE:
		n = cfgi_node_new(IAP_CFG_SCALAR, L->file, line, col);
		if (!n)
			break;
		if (!is_null_scalar(y)) {
			n->value = strdup((const char *)y->data.scalar.value);
			if (!n->value) {
				cfgi_node_free(n);
				n = NULL;
			}
		}
		if (n)
			return n;
		break;
	case YAML_SEQUENCE_NODE:
		n = cfgi_node_new(IAP_CFG_SEQ, L->file, line, col);
		if (!n)
			break;
		for (yaml_node_item_t *it = y->data.sequence.items.start; it < y->data.sequence.items.top; it++) {
			struct iap_cfg_node *c = convert(L, *it, depth + 1);

			if (!c || cfgi_append(n, c)) {
				cfgi_node_free(c);
				cfgi_node_free(n);
				if (c)
					iap_error_set(L->err, IAP_ENOMEM, "%s: out of memory", L->file);
				return NULL;
			}
		}
		return n;
	case YAML_MAPPING_NODE:
		n = cfgi_node_new(IAP_CFG_MAP, L->file, line, col);
		if (!n)
			break;
		if (convert_map(L, y, n, depth)) {
			cfgi_node_free(n);
			return NULL;
		}
		return n;
	default:
		iap_error_set(L->err, IAP_EFORMAT, "%s:%d:%d: unexpected YAML node", L->file, line, col);
		return NULL;
	}
	iap_error_set(L->err, IAP_ENOMEM, "%s: out of memory", L->file);
	return NULL;
}

static int load(yaml_parser_t *parser, const char *name, struct iap_cfg **out, struct iap_error *err)
{
	struct iap_cfg *cfg;
	yaml_document_t doc;
	yaml_node_t *top;
	int rc = IAP_OK;

	*out = NULL;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
	if (!yaml_parser_load(parser, &doc)) {
		/* Reader errors (bad encoding, read failures) have a byte offset, not a line. */
		if (parser->error == YAML_READER_ERROR)
			rc = iap_error_set(err, IAP_EFORMAT, "%s: %s at byte %zu", name,
					   parser->problem ? parser->problem : "read error",
					   parser->problem_offset);
		else if (parser->context)
			rc = iap_error_set(err, IAP_EFORMAT, "%s:%lu:%lu: %s %s", name,
					   (unsigned long)parser->problem_mark.line + 1,
					   (unsigned long)parser->problem_mark.column + 1,
					   parser->problem ? parser->problem : "syntax error", parser->context);
		else
			rc = iap_error_set(err, IAP_EFORMAT, "%s:%lu:%lu: %s", name,
					   (unsigned long)parser->problem_mark.line + 1,
					   (unsigned long)parser->problem_mark.column + 1,
					   parser->problem ? parser->problem : "syntax error");
		goto out_free_cfg;
	}
	/* Interned even for an empty document: messages about it still name the file. */
	if (!cfgi_file(cfg, name)) {
		rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
		goto out_doc;
	}
	top = yaml_document_get_root_node(&doc);
	if (top) {
		struct loader L = { cfg, &doc, cfg->files[0], err };

		cfg->root = convert(&L, 1, 0);
		if (!cfg->root) {
			rc = err ? err->code : IAP_EINVAL;
			if (rc == IAP_OK)
				rc = IAP_EINVAL;
			goto out_doc;
		}
	}
	yaml_document_delete(&doc);
	*out = cfg;
	return IAP_OK;

out_doc:
	yaml_document_delete(&doc);
out_free_cfg:
	iap_cfg_free(cfg);
	return rc;
}

int iap_cfg_load_file(const char *path, struct iap_cfg **out, struct iap_error *err)
{
	yaml_parser_t parser;
	struct stat st;
	FILE *f;
	int rc;

	*out = NULL;
	f = fopen(path, "rb");
	if (!f)
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(errno));
	/* fopen opens directories too; reading one would only say "input error". */
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(EISDIR));
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
	}
	yaml_parser_set_input_file(&parser, f);
	rc = load(&parser, path, out, err);
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

int iap_cfg_load_string(const char *text, size_t len, const char *name, struct iap_cfg **out,
			struct iap_error *err)
{
	yaml_parser_t parser;
	int rc;

	*out = NULL;
	if (!yaml_parser_initialize(&parser))
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	rc = load(&parser, name, out, err);
	yaml_parser_delete(&parser);
	return rc;
}

void iap_cfg_free(struct iap_cfg *cfg)
{
	if (!cfg)
		return;
	cfgi_node_free(cfg->root);
	for (int i = 0; i < cfg->n_files; i++)
		free(cfg->files[i]);
	free(cfg->files);
	free(cfg);
}

const struct iap_cfg_node *iap_cfg_root(const struct iap_cfg *cfg)
{
	return cfg ? cfg->root : NULL;
}

/* ---- lookup and typed values ------------------------------------------------------ */

const struct iap_cfg_node *iap_cfg_child(const struct iap_cfg_node *map, const char *key)
{
	if (!map || map->kind != IAP_CFG_MAP)
		return NULL;
	for (int i = 0; i < map->n_items; i++)
		if (!strcmp(map->items[i]->key, key))
			return map->items[i];
	return NULL;
}

/* Parse a sequence index segment; -1 when seg is not all digits. */
static long seg_index(const char *seg, size_t len)
{
	long v = 0;

	if (!len || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)seg[i]))
			return -1;
		v = v * 10 + (seg[i] - '0');
	}
	return v;
}

const struct iap_cfg_node *iap_cfg_get(const struct iap_cfg_node *node, const char *path)
{
	const char *p = path;

	while (node && *p) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		const struct iap_cfg_node *next = NULL;

		if (node->kind == IAP_CFG_SEQ) {
			long i = seg_index(p, len);

			if (i >= 0 && i < node->n_items)
				next = node->items[i];
		} else if (node->kind == IAP_CFG_MAP) {
			for (int i = 0; i < node->n_items; i++)
				if (strlen(node->items[i]->key) == len && !memcmp(node->items[i]->key, p, len)) {
					next = node->items[i];
					break;
				}
		}
		node = next;
		p = dot ? dot + 1 : p + len;
	}
	return node;
}

static const char *what_of(const struct iap_cfg_node *n, const char *what)
{
	if (what)
		return what;
	return n->key ? n->key : "value";
}

int iap_cfg_str(const struct iap_cfg_node *n, const char *what, const char **out, struct iap_error *err)
{
	if (n->kind != IAP_CFG_SCALAR)
		return cfgi_at(err, IAP_EINVAL, n, "%s: expected a string, got a %s", what_of(n, what),
				   n->kind == IAP_CFG_MAP ? "mapping" : "list");
	*out = n->value ? n->value : "";
	return IAP_OK;
}

int iap_cfg_int(const struct iap_cfg_node *n, const char *what, long *out, struct iap_error *err)
{
	char *end;
	long v;

	if (n->kind != IAP_CFG_SCALAR || !n->value)
		goto bad;
	errno = 0;
	v = strtol(n->value, &end, 10);
	if (!*n->value || *end || errno)
		goto bad;
	*out = v;
	return IAP_OK;
bad:
	return cfgi_at(err, IAP_EINVAL, n, "%s: expected an integer, got %s%s%s", what_of(n, what),
			   n->kind != IAP_CFG_SCALAR ? "a " : "'",
			   n->kind == IAP_CFG_MAP ? "mapping" : n->kind == IAP_CFG_SEQ ? "list" :
			   n->value ? n->value : "null",
			   n->kind != IAP_CFG_SCALAR ? "" : "'");
}

int iap_cfg_float(const struct iap_cfg_node *n, const char *what, double *out, struct iap_error *err)
{
	char *end;
	double v;

	if (n->kind != IAP_CFG_SCALAR || !n->value)
		goto bad;
	errno = 0;
	v = strtod(n->value, &end);
	/* Finite decimal numbers only: no "nan", "inf" or hex floats from strtod's extensions. */
	if (!*n->value || *end || errno || !isfinite(v) || strpbrk(n->value, "xXnNiI"))
		goto bad;
	*out = v;
	return IAP_OK;
bad:
	return cfgi_at(err, IAP_EINVAL, n, "%s: expected a number, got %s%s%s", what_of(n, what),
			   n->kind != IAP_CFG_SCALAR ? "a " : "'",
			   n->kind == IAP_CFG_MAP ? "mapping" : n->kind == IAP_CFG_SEQ ? "list" :
			   n->value ? n->value : "null",
			   n->kind != IAP_CFG_SCALAR ? "" : "'");
}

int iap_cfg_bool(const struct iap_cfg_node *n, const char *what, int *out, struct iap_error *err)
{
	const char *v = n->kind == IAP_CFG_SCALAR ? n->value : NULL;

	if (v && (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))) {
		*out = 1;
		return IAP_OK;
	}
	if (v && (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))) {
		*out = 0;
		return IAP_OK;
	}
	return cfgi_at(err, IAP_EINVAL, n, "%s: expected true or false, got %s%s%s", what_of(n, what),
			   n->kind != IAP_CFG_SCALAR ? "a " : "'",
			   n->kind == IAP_CFG_MAP ? "mapping" : n->kind == IAP_CFG_SEQ ? "list" :
			   v ? v : "null",
			   n->kind != IAP_CFG_SCALAR ? "" : "'");
}

int iap_cfg_get_str(const struct iap_cfg_node *node, const char *path, const char *def,
		    const char **out, struct iap_error *err)
{
	const struct iap_cfg_node *n = iap_cfg_get(node, path);

	if (!n) {
		*out = def;
		return IAP_OK;
	}
	return iap_cfg_str(n, path, out, err);
}

int iap_cfg_get_int(const struct iap_cfg_node *node, const char *path, long def, long *out,
		    struct iap_error *err)
{
	const struct iap_cfg_node *n = iap_cfg_get(node, path);

	if (!n) {
		*out = def;
		return IAP_OK;
	}
	return iap_cfg_int(n, path, out, err);
}

int iap_cfg_get_float(const struct iap_cfg_node *node, const char *path, double def, double *out,
		      struct iap_error *err)
{
	const struct iap_cfg_node *n = iap_cfg_get(node, path);

	if (!n) {
		*out = def;
		return IAP_OK;
	}
	return iap_cfg_float(n, path, out, err);
}

int iap_cfg_get_bool(const struct iap_cfg_node *node, const char *path, int def, int *out,
		     struct iap_error *err)
{
	const struct iap_cfg_node *n = iap_cfg_get(node, path);

	if (!n) {
		*out = def;
		return IAP_OK;
	}
	return iap_cfg_bool(n, path, out, err);
}

/* ---- overrides ------------------------------------------------------------------ */

/* Re-point every node of a subtree at a file name and line (overrides keep their column). */
static void relocate(struct iap_cfg_node *n, const char *file, int line, int col_base)
{
	n->file = file;
	n->line = line;
	n->col += col_base;
	if (n->key) {
		n->key_line = line;
		n->key_col += col_base;
	}
	for (int i = 0; i < n->n_items; i++)
		relocate(n->items[i], file, line, col_base);
}

int iap_cfg_set(struct iap_cfg *cfg, const char *assignment, int index, struct iap_error *err)
{
	const char *eq = strchr(assignment, '='), *p, *file;
	struct iap_cfg *vcfg = NULL;
	struct iap_cfg_node *node, *value;
	int rc, vcol;

	if (!eq || eq == assignment)
		return iap_error_set(err, IAP_EINVAL, "--set '%s': expected path.to.key=value", assignment);
	file = cfgi_file(cfg, "--set");
	if (!file)
		return iap_error_set(err, IAP_ENOMEM, "--set: out of memory");
	/* The value is YAML of its own, so lists and maps can be given too. */
	rc = iap_cfg_load_string(eq + 1, strlen(eq + 1), "--set", &vcfg, err);
	if (rc) {
		iap_error_prefix(err, "--set '%s'", assignment);
		return rc;
	}
	value = vcfg->root;
	vcfg->root = NULL;
	iap_cfg_free(vcfg);
	if (!value) {
		value = cfgi_node_new(IAP_CFG_SCALAR, file, 1, 1);
		if (!value)
			return iap_error_set(err, IAP_ENOMEM, "--set: out of memory");
	}
	vcol = (int)(eq + 1 - assignment);
	relocate(value, file, index, vcol);

	if (!cfg->root) {
		cfg->root = cfgi_node_new(IAP_CFG_MAP, file, index, 1);
		if (!cfg->root)
			goto out_nomem;
	}
	node = cfg->root;
	for (p = assignment; p < eq;) {
		const char *dot = memchr(p, '.', (size_t)(eq - p));
		size_t len = dot ? (size_t)(dot - p) : (size_t)(eq - p);
		int last = !dot;
		struct iap_cfg_node *next = NULL;
		long idx;

		if (!len) {
			rc = iap_error_set(err, IAP_EINVAL, "--set '%s': empty key in path", assignment);
			goto out_free_value;
		}
		if (node->kind == IAP_CFG_SEQ) {
			idx = seg_index(p, len);
			if (idx < 0 || idx > node->n_items) {
				rc = iap_error_set(err, IAP_EINVAL,
						   "--set '%s': '%.*s' is not an index of a list of %d item(s)",
						   assignment, (int)len, p, node->n_items);
				goto out_free_value;
			}
			if (idx < node->n_items) {
				next = node->items[idx];
				if (last) {
					cfgi_node_free(next);
					node->items[idx] = value;
					return IAP_OK;
				}
			}
		} else if (node->kind == IAP_CFG_MAP) {
			for (int i = 0; i < node->n_items; i++)
				if (strlen(node->items[i]->key) == len && !memcmp(node->items[i]->key, p, len)) {
					next = node->items[i];
					if (last) {
						value->key = next->key;
						value->key_line = index;
						value->key_col = (int)(p - assignment) + 1;
						next->key = NULL;
						cfgi_node_free(next);
						node->items[i] = value;
						return IAP_OK;
					}
					break;
				}
		} else {
			rc = iap_error_set(err, IAP_EINVAL, "--set '%s': '%.*s' is not a mapping or list",
					   assignment, (int)(p - 1 - assignment), assignment);
			goto out_free_value;
		}
		if (!next) {
			/* Create what is missing: the value itself, or a map to go on in. */
			next = last ? value : cfgi_node_new(IAP_CFG_MAP, file, index, (int)(p - assignment) + 1);
			if (!next)
				goto out_nomem;
			if (node->kind == IAP_CFG_MAP) {
				next->key = strndup(p, len);
				next->key_line = index;
				next->key_col = (int)(p - assignment) + 1;
				if (!next->key)
					goto out_nomem_next;
			}
			if (cfgi_append(node, next))
				goto out_nomem_next;
			if (last)
				return IAP_OK;
		}
		node = next;
		p = dot + 1;
		continue;
out_nomem_next:
		if (next != value)
			cfgi_node_free(next);
		goto out_nomem;
	}
	rc = iap_error_set(err, IAP_EINVAL, "--set '%s': expected path.to.key=value", assignment);
	goto out_free_value;

out_nomem:
	rc = iap_error_set(err, IAP_ENOMEM, "--set: out of memory");
out_free_value:
	cfgi_node_free(value);
	return rc;
}

/* ---- dump ----------------------------------------------------------------------- */

/* Plain when YAML would read it back as the same string; double-quoted otherwise. */
void cfgi_dump_scalar(const char *v, FILE *f)
{
	int plain = 1;

	if (!v) {
		fputs("null", f);
		return;
	}
	if (!*v || isspace((unsigned char)v[0]) || isspace((unsigned char)v[strlen(v) - 1]) ||
	    strchr("-?:,[]{}#&*!|>'\"%@`~", v[0]) || strstr(v, ": ") || strstr(v, " #") ||
	    !strcmp(v, "null"))
		plain = 0;
	for (const char *c = v; *c && plain; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			plain = 0;
	if (plain) {
		fputs(v, f);
		return;
	}
	fputc('"', f);
	for (const char *c = v; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(f, "\\%c", *c);
		else if ((unsigned char)*c < 0x20)
			fprintf(f, "\\x%02x", (unsigned char)*c);
		else
			fputc(*c, f);
	}
	fputc('"', f);
}

static int is_simple_seq(const struct iap_cfg_node *n)
{
	for (int i = 0; i < n->n_items; i++)
		if (n->items[i]->kind != IAP_CFG_SCALAR)
			return 0;
	return 1;
}

static void dump_scalar(const struct iap_cfg_node *n, FILE *f)
{
	cfgi_dump_scalar(n->value, f);
}

static void dump(const struct iap_cfg_node *n, FILE *f, int indent, int inline_first,
		 const struct cfgi_dump_hooks *h)
{
	int first = 1;

	for (int i = 0; i < n->n_items; i++) {
		const struct iap_cfg_node *c = n->items[i];
		int pad = (first && inline_first) ? 0 : indent;

		if (h && h->skip && h->skip(c, h->user))
			continue;
		first = 0;
		fprintf(f, "%*s", pad, "");
		if (n->kind == IAP_CFG_MAP) {
			cfgi_dump_scalar(c->key, f);
			fputc(':', f);
		} else {
			fputc('-', f);
		}
		if (c->kind == IAP_CFG_SCALAR) {
			fputc(' ', f);
			dump_scalar(c, f);
			fputc('\n', f);
		} else if (c->n_items == 0) {
			fputs(c->kind == IAP_CFG_MAP ? " {}\n" : " []\n", f);
			if (h && h->after && c->kind == IAP_CFG_MAP)
				h->after(c, f, indent + 2, h->user);
		} else if (c->kind == IAP_CFG_SEQ && is_simple_seq(c)) {
			fputs(" [", f);
			for (int j = 0; j < c->n_items; j++) {
				if (j)
					fputs(", ", f);
				dump_scalar(c->items[j], f);
			}
			fputs("]\n", f);
		} else if (n->kind == IAP_CFG_SEQ && c->kind == IAP_CFG_MAP) {
			fputc(' ', f);
			dump(c, f, indent + 2, 1, h);
		} else {
			fputc('\n', f);
			dump(c, f, indent + 2, 0, h);
		}
	}
	if (h && h->after && n->kind == IAP_CFG_MAP && n->n_items)
		h->after(n, f, indent, h->user);
}

void cfgi_dump(const struct iap_cfg_node *node, FILE *f, const struct cfgi_dump_hooks *h)
{
	if (node->kind == IAP_CFG_SCALAR) {
		dump_scalar(node, f);
		fputc('\n', f);
	} else {
		dump(node, f, 0, 0, h);
	}
}

int iap_cfg_dump(const struct iap_cfg_node *node, FILE *f)
{
	if (!node)
		return IAP_OK;
	cfgi_dump(node, f, NULL);
	return ferror(f) ? IAP_EIO : IAP_OK;
}
