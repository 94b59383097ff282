/*
 * What every stage says and where it writes: messages through the caller's
 * log callback, progress through its progress callback, and paths inside
 * the output folder. Below the stages and the runner alike, so a stage never
 * calls back up into the orchestration.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "stages.h"

void run_say(const struct run *r, enum iap_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!r->o->log)
		return;
	va_start(ap, fmt);
	r->o->log(r->o->log_user, level, fmt, ap);
	va_end(ap);
}

void run_progress(const struct run *r, const char *stage, int64_t done, int64_t total)
{
	if (r->o->progress)
		r->o->progress(r->o->progress_user, stage, done, total);
}

const char *run_outpath(struct run *r, const char *name)
{
	snprintf(r->path, sizeof(r->path), "%s/%s", r->out, name);
	return r->path;
}
