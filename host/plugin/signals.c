/* Signal names for the guard's crash line and the scanner's diagnostics (see signals.h). */
#include "config.h"

#include <signal.h>
#include <stddef.h>

#include "signals.h"

/* A switch over constants, no table lookup or locale: safe inside a signal handler. */
const char *iap_signal_name(int sig)
{
	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGFPE: return "SIGFPE";
	case SIGILL: return "SIGILL";
	case SIGABRT: return "SIGABRT";
	case SIGALRM: return "SIGALRM";
	case SIGKILL: return "SIGKILL";
	case SIGTERM: return "SIGTERM";
	case SIGINT: return "SIGINT";
	case SIGPIPE: return "SIGPIPE";
	case SIGSYS: return "SIGSYS";
	case SIGTRAP: return "SIGTRAP";
	default: return NULL;
	}
}
