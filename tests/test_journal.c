/*
 * The run journal: records read back as written; a truncated, changed or
 * misnamed record is named, removed and reported missing; keys follow the
 * run key and the label; and SIGKILL at a random moment of a writer leaves
 * every record whole or absent.
 */
#include "config.h"

#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "journal.h"

static char out[] = "/tmp/test_journal.XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(out) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[256];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", out);
	return system(cmd);
}

/* The content of item i's record: its size and bytes follow from i alone. */
static size_t fill(unsigned char *b, uint64_t i, size_t max)
{
	size_t n = (size_t)(i * 7919 % max);

	for (size_t k = 0; k < n; k++)
		b[k] = (unsigned char)(i * 31 + k * 17);
	return n;
}

static void test_put_get(void **state)
{
	struct iap_error err = { 0 }, note = { 0 };
	struct iap_journal *j;
	uint64_t k1 = iap_journal_key(42, "row lrp/uniform@0.30");
	void *blob;
	size_t len;

	(void)state;
	assert_int_equal(iap_journal_open(&j, out, &err), IAP_OK);
	assert_int_equal(iap_journal_get(j, k1, &blob, &len, &note), 0);
	assert_int_equal(note.code, IAP_OK);
	assert_int_equal(iap_journal_put(j, k1, "row lrp/uniform@0.30", "hello", 5, &err), IAP_OK);
	assert_int_equal(iap_journal_get(j, k1, &blob, &len, &note), 1);
	assert_int_equal(len, 5);
	assert_memory_equal(blob, "hello", 5);
	free(blob);
	/* An empty result is a result. */
	assert_int_equal(iap_journal_put(j, 7, "empty", NULL, 0, &err), IAP_OK);
	assert_int_equal(iap_journal_get(j, 7, &blob, &len, &note), 1);
	assert_int_equal(len, 0);
	assert_null(blob);
	/* Keys: the same item of another run, another item of the same run. */
	assert_int_equal(iap_journal_key(42, "row lrp/uniform@0.30"), k1);
	assert_int_not_equal(iap_journal_key(43, "row lrp/uniform@0.30"), k1);
	assert_int_not_equal(iap_journal_key(42, "row lrp/uniform@0.35"), k1);
	assert_int_equal(iap_journal_get(j, iap_journal_key(43, "row lrp/uniform@0.30"), &blob, &len, &note), 0);
	iap_journal_close(j);
}

static void damage(const char *path, long truncate_to, long flip_at)
{
	FILE *fp;

	if (truncate_to >= 0)
		assert_int_equal(truncate(path, truncate_to), 0);
	if (flip_at >= 0) {
		int c;

		fp = fopen(path, "r+b");
		assert_non_null(fp);
		fseek(fp, flip_at, SEEK_SET);
		c = fgetc(fp);
		fseek(fp, flip_at, SEEK_SET);
		fputc(c ^ 0x01, fp);
		fclose(fp);
	}
}

static void test_damaged_records(void **state)
{
	struct iap_error err = { 0 }, note = { 0 };
	struct iap_journal *j;
	char path[4096], other[4096];
	unsigned char data[300];
	void *blob;
	size_t len;
	struct {
		long truncate_to, flip_at;
		const char *why;
	} cases[] = {
		{ 100, -1, "truncated" },          /* the tail lost */
		{ 20, -1, "shorter than a record's header" },
		{ -1, 200, "checksum mismatch" },  /* a result byte changed */
		{ -1, 17, "truncated" },           /* a length byte changed: the size no longer fits */
		{ -1, 30, "checksum mismatch" },   /* the reserved word changed */
		{ -1, 2, "not an iaprune journal record" },
	};

	(void)state;
	assert_int_equal(iap_journal_open(&j, out, &err), IAP_OK);
	memset(data, 0xab, sizeof(data));
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		assert_int_equal(iap_journal_put(j, 1000 + c, "item", data, sizeof(data), &err), IAP_OK);
		assert_int_equal(iap_journal_path(j, 1000 + c, path, sizeof(path)), 0);
		damage(path, cases[c].truncate_to, cases[c].flip_at);
		assert_int_equal(iap_journal_get(j, 1000 + c, &blob, &len, &note), 0);
		assert_null(blob);
		assert_int_equal(note.code, IAP_EFORMAT);
		assert_non_null(strstr(note.msg, path));
		assert_non_null(strstr(note.msg, cases[c].why));
		assert_int_equal(access(path, F_OK), -1);
	}
	/*
	 * A length so large that header + label + length wraps around to the
	 * size of a file cut inside its label: discarded as truncated, not taken
	 * for an allocation that fails (which would stop the run).
	 */
	assert_int_equal(iap_journal_put(j, 3000, "item", data, sizeof(data), &err), IAP_OK);
	assert_int_equal(iap_journal_path(j, 3000, path, sizeof(path)), 0);
	damage(path, 42, -1);
	{
		FILE *fp = fopen(path, "r+b");
		const uint64_t n = UINT64_MAX - 1;   /* 40 + 4 + n = 42 (mod 2^64) */

		assert_non_null(fp);
		fseek(fp, 16, SEEK_SET);
		for (int k = 0; k < 8; k++)
			fputc((int)((n >> (8 * k)) & 0xff), fp);
		fclose(fp);
	}
	assert_int_equal(iap_journal_get(j, 3000, &blob, &len, &note), 0);
	assert_null(blob);
	assert_non_null(strstr(note.msg, "truncated"));
	/* A whole record copied under another key's name is not that key's. */
	assert_int_equal(iap_journal_put(j, 2000, "item", data, sizeof(data), &err), IAP_OK);
	assert_int_equal(iap_journal_path(j, 2000, path, sizeof(path)), 0);
	assert_int_equal(iap_journal_path(j, 2001, other, sizeof(other)), 0);
	assert_int_equal(rename(path, other), 0);
	assert_int_equal(iap_journal_get(j, 2001, &blob, &len, &note), 0);
	assert_non_null(strstr(note.msg, "another key"));
	iap_journal_close(j);
}

/* A writer killed at random moments: on reopen every record is whole or absent. */
static void test_kill_while_writing(void **state)
{
	static unsigned char buf[1 << 20], got[1 << 20];
	struct iap_error err = { 0 }, note = { 0 };
	int whole = 0, leftovers = 0;
	char kout[4096];

	(void)state;
	/* A folder of its own: only the killed writers' records are in it. */
	snprintf(kout, sizeof(kout), "%s/kill", out);
	assert_int_equal(mkdir(kout, 0777), 0);
	srand((unsigned)time(NULL));
	for (int round = 0; round < 6; round++) {
		struct iap_journal *j;
		int fds[2], wst;
		char c;
		pid_t pid;
		DIR *d;
		struct dirent *de;
		char dir[4200];

		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			if (iap_journal_open(&j, kout, &err))
				_exit(2);
			for (uint64_t i = (uint64_t)round * 1000;; i++) {
				size_t n = fill(buf, i, sizeof(buf));

				if (iap_journal_put(j, i, "kill test", buf, n, &err))
					_exit(2);
				if (write(fds[1], "x", 1) != 1)
					_exit(2);
			}
		}
		close(fds[1]);
		/* Let a few records land, then kill at a random point of the next ones. */
		for (int k = 0; k < 3; k++)
			assert_int_equal(read(fds[0], &c, 1), 1);
		usleep((useconds_t)(rand() % 20000));
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &wst, 0), pid);
		assert_true(WIFSIGNALED(wst));
		close(fds[0]);

		snprintf(dir, sizeof(dir), "%s/%s", kout, IAP_JOURNAL_DIR);
		d = opendir(dir);
		assert_non_null(d);
		while ((de = readdir(d)))
			leftovers += strstr(de->d_name, ".tmp.") != NULL;
		closedir(d);
		/* Reopen (cleans the killed writer's temporary file), then check every record. */
		assert_int_equal(iap_journal_open(&j, kout, &err), IAP_OK);
		d = opendir(dir);
		assert_non_null(d);
		while ((de = readdir(d))) {
			uint64_t key;
			void *blob;
			size_t len, n;

			if (de->d_name[0] == '.')
				continue;
			assert_null(strstr(de->d_name, ".tmp."));
			assert_int_equal(sscanf(de->d_name, "%16" SCNx64 ".rec", &key), 1);
			assert_int_equal(iap_journal_get(j, key, &blob, &len, &note), 1);
			n = fill(got, key, sizeof(got));
			assert_int_equal(len, n);
			assert_memory_equal(blob, got, n);
			free(blob);
			whole++;
		}
		closedir(d);
		iap_journal_close(j);
	}
	/* At least three records a round came back whole. */
	assert_true(whole >= 18);
	print_message("# %d whole records; %d kills landed mid-write\n", whole, leftovers);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get),
		cmocka_unit_test(test_damaged_records),
		cmocka_unit_test(test_kill_while_writing),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
