/*
 * The run journal (see journal.h). OUT/journal/<key>.rec, one per finished
 * item:
 *
 *   "IAPJRN1\n"  key u64  length u64  label length u32  0 u32  checksum u64
 *   label bytes  result bytes                     (integers little-endian)
 *
 * The checksum (FNV-1a, as the score cache's) covers the key, both lengths,
 * the reserved word, the label and the result. Records are published by rename, so a kill
 * leaves a whole record or none; the checks catch what rename cannot
 * (a disk that lost the tail, a file edited or copied under another name),
 * and such a record is removed and its item run again: a stale result
 * would silently change the report.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iaprune/atomic.h>

#include "journal.h"
#include "run_internal.h"

#define MAGIC "IAPJRN1\n"
#define HEADER 40
/* Labels are short item names; a longer one marks a damaged header. */
#define LABEL_MAX 4096

struct iap_journal {
	char *dir;
};

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Over the header's key, lengths and reserved word (bytes 8..32), the label and the result. */
static uint64_t checksum(const unsigned char *head, const char *label, size_t label_len, const void *blob,
			 size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h = iap_key_bytes(h, head + 8, 24);
	h = iap_key_bytes(h, label, label_len);
	return iap_key_bytes(h, blob, len);
}

uint64_t iap_journal_key(uint64_t run_key, const char *label)
{
	unsigned char le[8];

	put_le(le, run_key, 8);
	return iap_key_bytes(iap_key_bytes(0xcbf29ce484222325ULL, le, 8), label, strlen(label) + 1);
}

int iap_journal_open(struct iap_journal **jp, const char *out, struct iap_error *err)
{
	struct iap_journal *j = calloc(1, sizeof(*j));
	size_t n = strlen(out) + sizeof(IAP_JOURNAL_DIR) + 2;
	int rc;

	*jp = NULL;
	if (!j || !(j->dir = malloc(n))) {
		free(j);
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	}
	snprintf(j->dir, n, "%s/%s", out, IAP_JOURNAL_DIR);
	if (mkdir(j->dir, 0777) != 0 && errno != EEXIST) {
		rc = iap_error_set(err, IAP_EWRITE, "%s: cannot create: %s", j->dir, strerror(errno));
		goto out_free;
	}
	rc = iap_atomic_clean(j->dir, NULL, err);
	if (rc)
		goto out_free;
	*jp = j;
	return IAP_OK;
out_free:
	free(j->dir);
	free(j);
	return rc;
}

void iap_journal_close(struct iap_journal *j)
{
	if (!j)
		return;
	free(j->dir);
	free(j);
}

int iap_journal_path(const struct iap_journal *j, uint64_t key, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/%016" PRIx64 ".rec", j->dir, key);

	return n < 0 || (size_t)n >= size ? -1 : 0;
}

int iap_journal_put(struct iap_journal *j, uint64_t key, const char *label, const void *blob, size_t len,
		    struct iap_error *err)
{
	struct iap_atomic_file af;
	unsigned char head[HEADER];
	size_t label_len = strlen(label);
	char path[4096];
	int rc;

	if (label_len > LABEL_MAX)
		return iap_error_set(err, IAP_EINVAL, "journal: label of %zu bytes (at most %d)", label_len, LABEL_MAX);
	if (iap_journal_path(j, key, path, sizeof(path)))
		return iap_error_set(err, IAP_EINVAL, "%s: path too long", j->dir);
	memcpy(head, MAGIC, 8);
	put_le(head + 8, key, 8);
	put_le(head + 16, (uint64_t)len, 8);
	put_le(head + 24, (uint64_t)label_len, 4);
	put_le(head + 28, 0, 4);
	put_le(head + 32, checksum(head, label, label_len, blob, len), 8);
	rc = iap_atomic_open(&af, path, err);
	if (rc)
		return rc;
	if (fwrite(head, 1, HEADER, af.fp) != HEADER || fwrite(label, 1, label_len, af.fp) != label_len ||
	    (len && fwrite(blob, 1, len, af.fp) != len))
		return iap_atomic_fail(&af, err);
	return iap_atomic_commit(&af, err);
}

/* Name and remove a record that cannot be used. */
static int discard(const char *path, struct iap_error *note, const char *why)
{
	iap_error_set(note, IAP_EFORMAT, "%s: %s; removed, the item will be run again", path, why);
	unlink(path);
	return 0;
}

int iap_journal_get(struct iap_journal *j, uint64_t key, void **blob, size_t *len, struct iap_error *note)
{
	unsigned char head[HEADER];
	char path[4096], *label = NULL;
	uint64_t n, label_len;
	struct stat st;
	void *data = NULL;
	FILE *fp;
	int rc = 0;

	*blob = NULL;
	*len = 0;
	iap_error_clear(note);
	if (iap_journal_path(j, key, path, sizeof(path)))
		return 0;
	fp = fopen(path, "rb");
	if (!fp)
		return errno == ENOENT ? 0 : discard(path, note, strerror(errno));
	if (fstat(fileno(fp), &st) != 0 || fread(head, 1, HEADER, fp) != HEADER) {
		fclose(fp);
		return discard(path, note, "shorter than a record's header");
	}
	n = get_le(head + 16, 8);
	label_len = get_le(head + 24, 4);
	if (memcmp(head, MAGIC, 8)) {
		rc = discard(path, note, "not an iaprune journal record");
	} else if (get_le(head + 8, 8) != key) {
		rc = discard(path, note, "the record of another key");
	} else if (label_len > LABEL_MAX || n > (uint64_t)st.st_size ||
		   (uint64_t)st.st_size != HEADER + label_len + n) {   /* n first: the sum must not wrap */
		rc = discard(path, note, "truncated (its size is not the one its header gives)");
	} else if (!(label = malloc(label_len + 1)) || !(data = malloc(n ? n : 1))) {
		rc = -1;
		iap_error_set(note, IAP_ENOMEM, "%s: out of memory", path);
	} else if (fread(label, 1, label_len, fp) != label_len || (n && fread(data, 1, n, fp) != n)) {
		rc = discard(path, note, "cannot be read whole");
	} else if (get_le(head + 32, 8) != checksum(head, label, label_len, data, n)) {
		rc = discard(path, note, "checksum mismatch (changed after it was written)");
	} else {
		rc = 1;
	}
	fclose(fp);
	free(label);
	if (rc == 1 && n) {
		*blob = data;
		*len = n;
	} else {
		free(data);
	}
	return rc;
}
