/*
 * Names of the signals that can end a plugin's process: the guard writes
 * them in its crash line, the scanner in a broken plugin's diagnostic. Below
 * both, so neither has to reach into the other for them.
 */
#ifndef IAP_PLUGIN_SIGNALS_H
#define IAP_PLUGIN_SIGNALS_H

/*
 * "SIGSEGV", "SIGBUS", ...; NULL for a signal without a name here ("signal N"
 * style text is then the caller's). Async-signal-safe: the guard calls it in
 * its handler.
 */
const char *iap_signal_name(int sig);

#endif /* IAP_PLUGIN_SIGNALS_H */
