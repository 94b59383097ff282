/* Atomic outputs: the file gets 0666 less the umask (mkstemp alone gives 0600), and the umask is left as it was. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/atomic.h>

/* Write path atomically under umask mask; the resulting file mode. */
static mode_t written_mode(const char *path, mode_t mask)
{
	struct iap_atomic_file af;
	struct iap_error err;
	struct stat st;
	mode_t old = umask(mask), now;

	if (iap_atomic_open(&af, path, &err))
		fail_msg("open: %s", err.msg);
	fputs("x\n", af.fp);
	if (iap_atomic_commit(&af, &err))
		fail_msg("commit: %s", err.msg);
	now = umask(old);
	assert_int_equal(now, mask);
	assert_int_equal(stat(path, &st), 0);
	unlink(path);
	return st.st_mode & 07777;
}

static void test_mode_follows_umask(void **state)
{
	char dir[] = "/tmp/iap-atomic.XXXXXX", path[64];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/out.bin", dir);
	assert_int_equal(written_mode(path, 022), 0644);
	assert_int_equal(written_mode(path, 002), 0664);
	assert_int_equal(written_mode(path, 077), 0600);
	assert_int_equal(written_mode(path, 0), 0666);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mode_follows_umask),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
