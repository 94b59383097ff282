/*
 * Helpers shared by the pipeline sources (host/pipeline/); not installed
 * and not exported (no iap_ prefix, so the library's export list skips them).
 */
#ifndef IAP_CFG_INTERNAL_H
#define IAP_CFG_INTERNAL_H

#include <stdio.h>

#include <iaprune/pipeline.h>

struct iap_cfg_node *cfgi_node_new(enum iap_cfg_kind kind, const char *file, int line, int col);
void cfgi_node_free(struct iap_cfg_node *n);
int cfgi_append(struct iap_cfg_node *parent, struct iap_cfg_node *child);
/* Intern a file name for the tree's lifetime (NULL when out of memory). */
const char *cfgi_file(struct iap_cfg *cfg, const char *name);
/* Name of the file the tree was loaded from. */
const char *cfgi_name(const struct iap_cfg *cfg);
struct iap_cfg_node *cfgi_root_mut(struct iap_cfg *cfg);
void cfgi_set_root(struct iap_cfg *cfg, struct iap_cfg_node *root);
/* iap_error_set with "file:line:col: " of node n (or of its key) in front. */
int cfgi_at(struct iap_error *err, int code, const struct iap_cfg_node *n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int cfgi_at_key(struct iap_error *err, int code, const struct iap_cfg_node *n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * iap_cfg_dump with hooks (iap_pipeline_dump): skip(entry) leaves a map
 * entry or list item out; after(map) may add lines (comments) at the end of
 * a map's entries, indented as they are. Either may be NULL.
 */
struct cfgi_dump_hooks {
	int (*skip)(const struct iap_cfg_node *entry, void *user);
	void (*after)(const struct iap_cfg_node *map, FILE *f, int indent, void *user);
	void *user;
};
void cfgi_dump(const struct iap_cfg_node *node, FILE *f, const struct cfgi_dump_hooks *h);
/* A scalar as YAML reads it back: plain when it can be, double-quoted otherwise; NULL is null. */
void cfgi_dump_scalar(const char *v, FILE *f);

/*
 * Validation (schema.c) that keeps every plugin it resolves: refs gets one
 * entry per plugin reference, in the order they were checked (refs NULL:
 * each is let go, as iap_pipeline_validate does). Free with cfgi_refs_free.
 */
struct cfgi_refs {
	struct iap_pipeline_ref *items;
	int n, cap;
};
int cfgi_validate(struct iap_cfg *cfg, const struct iap_registry *reg, struct cfgi_refs *refs,
		  struct iap_error *err);
void cfgi_refs_free(struct cfgi_refs *refs);

#endif
