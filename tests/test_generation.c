/*
 * Generation directories (stage, one rename, clean-up after a crash), the
 * output folder lock, and the errno text of a failed write.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/atomic.h>
#include <iaprune/generation.h>
#include <iaprune/lock.h>

static void put(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static int has(const char *dir, const char *name, const char *text)
{
	char path[512], buf[256] = "";
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "r");
	if (!fp)
		return 0;
	if (!fgets(buf, sizeof(buf), fp))
		buf[0] = '\0';
	fclose(fp);
	return !strcmp(buf, text);
}

/* Entries of dir other than . and .. */
static int count_entries(const char *dir)
{
	char cmd[512];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

static void test_commit_replaces_the_whole_set(void **state)
{
	char top[] = "/tmp/iap-gen-XXXXXX", dir[256], path[512];
	struct iap_generation gen;
	struct iap_error err;
	int carried = -1;

	(void)state;
	assert_non_null(mkdtemp(top));
	snprintf(dir, sizeof(dir), "%s/report", top);
	/* First generation: the directory does not exist yet. */
	assert_int_equal(iap_generation_begin(&gen, dir, &err), IAP_OK);
	assert_int_equal(access(dir, F_OK), -1);
	put(iap_generation_path(&gen, "a.txt", path, sizeof(path)), "one");
	put(iap_generation_path(&gen, "old-only.txt", path, sizeof(path)), "x");
	assert_int_equal(access(dir, F_OK), -1);
	assert_int_equal(iap_generation_commit(&gen, &err), IAP_OK);
	assert_true(has(dir, "a.txt", "one"));
	/* Second: staged files stay invisible until the commit; then the old set is gone entirely. */
	assert_int_equal(iap_generation_begin(&gen, dir, &err), IAP_OK);
	put(iap_generation_path(&gen, "a.txt", path, sizeof(path)), "two");
	assert_int_equal(iap_generation_carry(&gen, "old-only.txt", &carried, &err), IAP_OK);
	assert_int_equal(carried, 1);
	assert_int_equal(iap_generation_carry(&gen, "missing.txt", &carried, &err), IAP_OK);
	assert_int_equal(carried, 0);
	assert_true(has(dir, "a.txt", "one"));
	assert_int_equal(iap_generation_commit(&gen, &err), IAP_OK);
	assert_true(has(dir, "a.txt", "two"));
	assert_true(has(dir, "old-only.txt", "x"));
	/* Nothing but the visible directory is left next to it. */
	assert_int_equal(count_entries(top), 1);
	/* An aborted generation leaves the visible one as it was. */
	assert_int_equal(iap_generation_begin(&gen, dir, &err), IAP_OK);
	put(iap_generation_path(&gen, "a.txt", path, sizeof(path)), "three");
	iap_generation_abort(&gen);
	assert_true(has(dir, "a.txt", "two"));
	assert_int_equal(count_entries(top), 1);
	assert_int_equal(iap_remove_tree(top, &err), IAP_OK);
	assert_int_equal(access(top, F_OK), -1);
}

/* File systems without an atomic exchange: the old set is moved aside, then the new one renamed in. */
static void test_commit_without_exchange(void **state)
{
	char top[] = "/tmp/iap-gen-XXXXXX", dir[256], path[512];
	struct iap_generation gen;
	struct iap_error err;

	(void)state;
	assert_non_null(mkdtemp(top));
	snprintf(dir, sizeof(dir), "%s/report", top);
	setenv("IAP_TEST_NO_EXCHANGE", "1", 1);
	for (int i = 0; i < 3; i++) {
		char text[8];

		snprintf(text, sizeof(text), "%d", i);
		assert_int_equal(iap_generation_begin(&gen, dir, &err), IAP_OK);
		put(iap_generation_path(&gen, "a.txt", path, sizeof(path)), text);
		assert_int_equal(iap_generation_commit(&gen, &err), IAP_OK);
		assert_true(has(dir, "a.txt", text));
		assert_int_equal(count_entries(top), 1);
	}
	unsetenv("IAP_TEST_NO_EXCHANGE");
	assert_int_equal(iap_remove_tree(top, &err), IAP_OK);
}

static void test_clean_after_a_crash(void **state)
{
	char top[] = "/tmp/iap-gen-XXXXXX", dir[256], path[512];
	struct iap_error err;
	int removed = -1;

	(void)state;
	assert_non_null(mkdtemp(top));
	snprintf(dir, sizeof(dir), "%s/checkpoints", top);
	/* A half-written stage (with a subfolder) and a stray name that only looks similar. */
	snprintf(path, sizeof(path), "%s/.checkpoints.new.AbC123", top);
	assert_int_equal(mkdir(path, 0777), 0);
	snprintf(path, sizeof(path), "%s/.checkpoints.new.AbC123/sub", top);
	assert_int_equal(mkdir(path, 0777), 0);
	snprintf(path, sizeof(path), "%s/.checkpoints.new.AbC123/sub/w", top);
	put(path, "partial");
	snprintf(path, sizeof(path), "%s/.checkpoints.newer", top);
	put(path, "keep");
	/* A commit without an exchange died after moving the previous generation aside. */
	snprintf(path, sizeof(path), "%s/.checkpoints.old.Zz9Yy8", top);
	assert_int_equal(mkdir(path, 0777), 0);
	snprintf(path, sizeof(path), "%s/.checkpoints.old.Zz9Yy8/last", top);
	put(path, "epoch 2");
	assert_int_equal(iap_generation_clean(dir, &removed, &err), IAP_OK);
	assert_int_equal(removed, 1);
	assert_true(has(dir, "last", "epoch 2"));
	assert_int_equal(count_entries(top), 2);
	assert_int_equal(iap_remove_tree(top, &err), IAP_OK);
}

static void test_lock_names_the_holder(void **state)
{
	char top[] = "/tmp/iap-lock-XXXXXX", want[256];
	struct iap_error err;
	int fd = -1, pipefd[2], status;
	pid_t child;
	char c;

	(void)state;
	assert_non_null(mkdtemp(top));
	assert_int_equal(pipe(pipefd), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		int cfd;

		if (iap_dir_lock(top, &cfd, NULL))
			_exit(3);
		(void)!write(pipefd[1], "x", 1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	assert_int_equal(iap_dir_lock(top, &fd, &err), IAP_EBUSY);
	snprintf(want, sizeof(want),
		 "%s: output folder in use by another iaprune (pid %ld); wait for it to finish or choose another "
		 "'output'", top, (long)child);
	assert_string_equal(err.msg, want);
	assert_int_equal(fd, -1);
	/* The kernel drops the lock with its holder, however it dies. */
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	assert_int_equal(iap_dir_lock(top, &fd, &err), IAP_OK);
	assert_true(fd >= 0);
	iap_dir_unlock(fd);
	close(pipefd[0]);
	close(pipefd[1]);
	assert_int_equal(iap_remove_tree(top, &err), IAP_OK);
}

/* A write that fails says why (here the file size limit: "File too large"; a full disk the same way). */
static void test_write_failure_names_errno(void **state)
{
	char top[] = "/tmp/iap-wr-XXXXXX", path[256];
	struct iap_atomic_file af;
	struct iap_error err;
	struct rlimit old, small = { 4096, 0 };
	char buf[1024];
	int rc = IAP_OK;

	(void)state;
	assert_non_null(mkdtemp(top));
	snprintf(path, sizeof(path), "%s/big.bin", top);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small.rlim_max = old.rlim_max;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	assert_int_equal(iap_atomic_open(&af, path, &err), IAP_OK);
	for (int i = 0; i < 64; i++)
		fwrite(buf, 1, sizeof(buf), af.fp);
	rc = iap_atomic_commit(&af, &err);
	setrlimit(RLIMIT_FSIZE, &old);
	assert_int_equal(rc, IAP_EWRITE);
	snprintf(buf, sizeof(buf), "%s: cannot write: %s", path, strerror(EFBIG));
	assert_string_equal(err.msg, buf);
	assert_int_equal(count_entries(top), 0);
	assert_int_equal(iap_remove_tree(top, &err), IAP_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commit_replaces_the_whole_set),
		cmocka_unit_test(test_commit_without_exchange),
		cmocka_unit_test(test_clean_after_a_crash),
		cmocka_unit_test(test_lock_names_the_holder),
		cmocka_unit_test(test_write_failure_names_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
