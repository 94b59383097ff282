/*
 * The crash and exit guard (see host/include/iaprune/guard.h).
 *
 * The signal handler may only use async-signal-safe calls: it reads the
 * current thread's call record (initial-exec TLS, so reading it never
 * allocates), formats the line by hand into a stack buffer and write(2)s
 * it, then _exit(1)s. A worker thread that faults while the main thread is
 * inside a plugin call (an OpenMP loop the plugin started) has no record of
 * its own; it falls back to the main thread's innermost call. Which
 * signals are fatal, and the switch a forked child turns the guard off
 * with, are guard_child.c's.
 */
#include "config.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iaprune/guard.h>
#include <iaprune/registry.h>

#include "guard_child.h"
#include "signals.h"

static _Thread_local const struct iap_plugin_call *current __attribute__((tls_model("initial-exec")));
static _Thread_local int is_main __attribute__((tls_model("initial-exec")));
/* The main thread's innermost call, for threads without a record of their own. */
static const struct iap_plugin_call *volatile main_current;
static const char *volatile guard_prog = "iaprune";
static volatile sig_atomic_t installed, finished;

void iap_plugin_call_enter(struct iap_plugin_call *call, const struct iap_plugin *p, const char *entry)
{
	call->plugin = p;
	call->entry = entry;
	call->prev = current;
	current = call;
	if (is_main)
		main_current = call;
}

void iap_plugin_call_leave(struct iap_plugin_call *call)
{
	current = call->prev;
	if (is_main)
		main_current = call->prev;
}

/* ---- async-signal-safe formatting -------------------------------------------------- */

struct line {
	char buf[1536];
	size_t n;
};

static void put(struct line *l, const char *s)
{
	while (s && *s && l->n < sizeof(l->buf) - 2)
		l->buf[l->n++] = *s++;
}

static void put_int(struct line *l, long v)
{
	char tmp[24];
	int i = 0;
	unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;

	if (v < 0)
		put(l, "-");
	do {
		tmp[i++] = (char)('0' + u % 10);
		u /= 10;
	} while (u && i < (int)sizeof(tmp));
	while (i > 0 && l->n < sizeof(l->buf) - 2)
		l->buf[l->n++] = tmp[--i];
}

static void emit(struct line *l)
{
	ssize_t w;
	size_t off = 0;

	l->buf[l->n++] = '\n';
	while (off < l->n) {
		w = write(STDERR_FILENO, l->buf + off, l->n - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

/* "prog: plugin 'NAME' (KIND, FILE)" */
static void put_plugin(struct line *l, const struct iap_plugin_call *c)
{
	const struct iap_plugin *p = c->plugin;

	put(l, guard_prog);
	put(l, ": plugin '");
	put(l, p && p->desc ? p->desc->name : "?");
	put(l, "' (");
	put(l, p && p->desc ? iap_plugin_kind_name((int)p->desc->kind) : "?");
	put(l, ", ");
	put(l, p && p->path ? p->path : "?");
	put(l, ")");
}

static const struct iap_plugin_call *innermost(void)
{
	return current ? current : main_current;
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	const struct iap_plugin_call *c = innermost();
	struct line l = { .n = 0 };
	const char *name;

	(void)si;
	(void)uc;
	/* Outside a plugin call (or in the scanner child) the default action follows (SA_RESETHAND). */
	if (!c || iap_guard_in_child())
		return;
	put_plugin(&l, c);
	put(&l, " crashed in ");
	put(&l, c->entry);
	put(&l, " with ");
	name = iap_signal_name(sig);
	if (name) {
		put(&l, name);
	} else {
		put(&l, "signal ");
		put_int(&l, sig);
	}
	emit(&l);
	_exit(1);
}

#if defined(__GLIBC__)
static void on_exit_check(int status, void *arg)
#else
static void on_exit_check(void)
#endif
{
	const struct iap_plugin_call *c = innermost();
	struct line l = { .n = 0 };

#if defined(__GLIBC__)
	(void)arg;
#endif
	if (finished || iap_guard_in_child() || !installed)
		return;
	if (c) {
		put_plugin(&l, c);
		put(&l, " called exit(");
#if defined(__GLIBC__)
		put_int(&l, status);
#endif
		put(&l, ") in ");
		put(&l, c->entry);
		put(&l, " before the run finished");
	} else {
		put(&l, guard_prog);
		put(&l, ": exit(");
#if defined(__GLIBC__)
		put_int(&l, status);
#endif
		put(&l, ") was called before the run finished (by a plugin or a library it uses)");
	}
	emit(&l);
	_exit(1);
}

int iap_plugin_guard_install(const char *prog, struct iap_error *err)
{
	static char altstack[65536];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0 };
	struct sigaction sa;

	if (installed)
		return IAP_OK;
	guard_prog = prog ? prog : "iaprune";
	is_main = 1;
	/* Without an alternate stack, a stack overflow inside a plugin could not be reported. */
	sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fatal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < IAP_GUARD_FATAL_COUNT; i++)
		if (sigaction(iap_guard_fatal_signals[i], &sa, NULL) != 0)
			return iap_error_set(err, IAP_EINVAL, "cannot install the plugin crash handler");
#if defined(__GLIBC__)
	if (on_exit(on_exit_check, NULL) != 0)
#else
	if (atexit(on_exit_check) != 0)
#endif
		return iap_error_set(err, IAP_ENOMEM, "cannot install the plugin exit check");
	installed = 1;
	return IAP_OK;
}

void iap_plugin_guard_finish(void)
{
	finished = 1;
}
