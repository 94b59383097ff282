/*
 * The part of the crash and exit guard (guard.h) that a forked child can
 * switch off: which signals the guard takes over, and whether this process
 * is a child that reads plugins (the scanner), where a crash or an exit() is
 * the parent's to report, not the guard's. Below both the guard, which reads
 * it, and the scanner, which switches it off, so neither calls into the other.
 */
#ifndef IAP_PLUGIN_GUARD_CHILD_H
#define IAP_PLUGIN_GUARD_CHILD_H

#include <stddef.h>

/* SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT: the ones a crashing plugin raises. */
#define IAP_GUARD_FATAL_COUNT 5
extern const int iap_guard_fatal_signals[IAP_GUARD_FATAL_COUNT];

/* Nonzero once iap_plugin_guard_child ran in this process. Async-signal-safe. */
int iap_guard_in_child(void);

/* iap_plugin_guard_child itself is declared in guard.h, where the host's programs find it. */

#endif /* IAP_PLUGIN_GUARD_CHILD_H */
