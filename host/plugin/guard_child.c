/*
 * The guard switched off in a forked child (see guard_child.h): the
 * scanner's child must die of a plugin's signal, and keep the plugin's exit
 * status, so the parent can tell what the plugin did.
 */
#include "config.h"

#include <signal.h>

#include <iaprune/guard.h>

#include "guard_child.h"

const int iap_guard_fatal_signals[IAP_GUARD_FATAL_COUNT] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };

static volatile sig_atomic_t in_child;

int iap_guard_in_child(void)
{
	return in_child;
}

void iap_plugin_guard_child(void)
{
	in_child = 1;
	for (size_t i = 0; i < IAP_GUARD_FATAL_COUNT; i++)
		signal(iap_guard_fatal_signals[i], SIG_DFL);
}
