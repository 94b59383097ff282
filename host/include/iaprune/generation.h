/*
 * iaprune — output directories that change as a unit. A generation of a
 * directory (a report, a checkpoint) is staged in a hidden sibling
 * directory, every file is written there, and one rename makes the whole
 * set visible: a reader, or a run that starts after a crash, sees the
 * previous set or the new one, never a mix. Whatever an interrupted run
 * left behind is removed by iap_generation_clean on the next start.
 *
 * Any file written under iap_generation_path() belongs to the generation,
 * so writers added later need nothing else to be kill-safe.
 */
#ifndef IAPRUNE_GENERATION_H
#define IAPRUNE_GENERATION_H

#include <stddef.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iap_generation {
	char *dir;       /* the visible directory, e.g. results/x/report */
	char *stage;     /* the hidden sibling being filled: results/x/.report.new.XXXXXX */
};

/* Create an empty staging directory for a new generation of dir (its parent must exist). */
int iap_generation_begin(struct iap_generation *gen, const char *dir, struct iap_error *err);

/*
 * The staging path of name (which may contain '/', e.g. "heatmaps/a.png";
 * iap_mkdir_p its folder first) in buf; NULL when it does not fit.
 */
const char *iap_generation_path(const struct iap_generation *gen, const char *name, char *buf, size_t len);

/*
 * Carry file name over from the visible generation into the new one (a
 * hard link, or a copy where links are refused). *carried is 0 when the
 * visible generation has no such file.
 */
int iap_generation_carry(const struct iap_generation *gen, const char *name, int *carried,
			 struct iap_error *err);

/*
 * Make the staged generation visible as dir with one rename (an atomic
 * exchange where the kernel has it; otherwise the old directory is moved
 * aside first and a crash in between is repaired by iap_generation_clean),
 * then remove the previous generation. Frees gen, also on failure.
 */
int iap_generation_commit(struct iap_generation *gen, struct iap_error *err);

/* Remove the staging directory; the visible generation is untouched. Frees gen. */
void iap_generation_abort(struct iap_generation *gen);

/*
 * Clean up after interrupted generations of dir: staging directories are
 * removed, and a previous generation moved aside by a commit that did not
 * finish is put back. Only call it while no other process writes dir (hold
 * the output folder's lock). *removed (may be NULL) counts what was removed.
 */
int iap_generation_clean(const char *dir, int *removed, struct iap_error *err);

/* Remove path and everything under it (symbolic links are removed, never followed). */
int iap_remove_tree(const char *path, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_GENERATION_H */
