/*
 * `iaprune attribute`: per-unit scores, input relevance and completeness
 * gaps of one attribution method on chosen samples, written as a NumPy
 * .npz archive for comparison with other tools (see iaprune(1)).
 *
 * The command lives outside cli/iaprune.c; what it needs of the main
 * program (loading plugins, the plugin search path, loading a pipeline) it
 * gets through struct cli_env.
 */
#ifndef IAP_CLI_CMD_ATTRIBUTE_H
#define IAP_CLI_CMD_ATTRIBUTE_H

#include <iaprune/pipeline.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

struct cli_env {
	/* Scan the plugin search path; prints its own messages; NULL on failure. */
	struct iap_registry *(*load_plugins)(void *user);
	/* --plugin-path DIR after the command name; non-zero (after a message) when refused. */
	int (*add_plugin_path)(void *user, const char *dir);
	/* Load, override and validate a pipeline; prints the message and returns the exit code. */
	int (*load_pipeline)(const char *path, const char *const *sets, int n_sets,
			     const struct iap_registry *reg, struct iap_cfg **out);
	void *user;
};

/* argv[0] is "attribute". Returns the exit status (0, 1 run failed, 2 usage or input). */
int cli_attribute(const struct cli_env *env, int argc, char **argv);

/* The usage line and description, for the main program's --help. */
extern const char cli_attribute_args[];
extern const char cli_attribute_summary[];

#endif
