/*
 * iaprune — telling the user which plugin brought the process down.
 *
 * The host marks every call into a plugin with a call record (which plugin,
 * which entry point). A program that installs the guard gets, when a fatal
 * signal arrives inside such a call, one line
 *
 *   iaprune: plugin 'NAME' (KIND, FILE) crashed in ENTRY with SIGSEGV
 *
 * and exit status 1 instead of a bare "Segmentation fault"; and when a
 * plugin calls exit() before the program said it was done, a line naming
 * it and status 1 instead of a silent (possibly zero) exit. Outputs are
 * written atomically (atomic.h), so in both cases nothing is half-written.
 * A fatal signal outside any plugin call keeps its default action (a core
 * dump for a core bug).
 */
#ifndef IAPRUNE_GUARD_H
#define IAPRUNE_GUARD_H

#include <iaprune/error.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One call into a plugin; lives on the caller's stack between enter and leave. */
struct iap_plugin_call {
	const struct iap_plugin *plugin;
	const char *entry;                      /* "select", "score", ... (static) */
	const struct iap_plugin_call *prev;     /* the call this one is nested in */
};

/* Mark the start and the end of a call (per thread; calls nest). Async-signal-safe to read. */
void iap_plugin_call_enter(struct iap_plugin_call *call, const struct iap_plugin *p, const char *entry);
void iap_plugin_call_leave(struct iap_plugin_call *call);

/*
 * Install the handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT (on
 * an alternate stack) and the exit check, with prog as the message prefix
 * (kept, not copied). From here on an exit() before iap_plugin_guard_finish
 * is reported. Call once, from the program, after plugins are scanned.
 */
int iap_plugin_guard_install(const char *prog, struct iap_error *err);

/* The program is done: exit() is normal from now on. */
void iap_plugin_guard_finish(void);

/* In a forked child that reads plugins (the scanner): default signal actions, no exit check. */
void iap_plugin_guard_child(void);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_GUARD_H */
