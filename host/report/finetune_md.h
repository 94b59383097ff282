/* report.md's section on the fine-tuned rows (internal to libiaprune). */
#ifndef IAP_REPORT_FINETUNE_MD_H
#define IAP_REPORT_FINETUNE_MD_H

#include <stdio.h>

#include <iaprune/report.h>

/*
 * "## After fine-tuning": one line per fine-tuned row with the accuracy of
 * the pruned model before and after, both changes from the baseline in
 * points, and the balanced accuracy before and after. Writes nothing when r
 * has no fine-tuned rows.
 */
void iap_report_md_finetuned(FILE *f, const struct iap_report *r);

#endif
