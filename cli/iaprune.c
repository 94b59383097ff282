/*
 * iaprune — the command-line front end (see iaprune(1)).
 *
 * The only place that prints and picks exit codes: 0 ok, 1 the run failed,
 * 2 usage or input error (bad option, unreadable or invalid pipeline).
 * Commands whose machinery arrives with later issues say so and exit 1;
 * they never pretend to have done something.
 */
#include "config.h"

#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <cblas.h>

#include <iaprune/attribute.h>
#include <iaprune/blas.h>
#include <iaprune/dist.h>
#include <iaprune/escape.h>
#include <iaprune/guard.h>
#include <iaprune/explain.h>
#include <iaprune/image.h>
#include <iaprune/memory.h>
#include <iaprune/model.h>
#include <iaprune/pipeline.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>
#include <iaprune/rng.h>
#include <iaprune/runner.h>
#include <iaprune/safetensors.h>
#include <iaprune/threads.h>
#include <iaprune/weights.h>

#include "cmd_attribute.h"
#include "model_load.h"
/* Plugin calls inside call records, so that a crash names the plugin (guard.h). */
#include "../host/run/calls.h"

#ifndef IAP_SYSCONFDIR
#define IAP_SYSCONFDIR "/usr/local/etc"
#endif

enum { EXIT_OK = 0, EXIT_RUN = 1, EXIT_USAGE = 2 };

/* Options every command accepts. */
struct common {
	const char *plugin_path[64];
	int n_plugin_path;
};

static const char *prog = "iaprune";

static void usage_main(FILE *f)
{
	fprintf(f,
		"usage: iaprune [--plugin-path DIR]... [--max-memory SIZE] COMMAND [ARGS]\n"
		"       iaprune --help | --version\n"
		"\n"
		"Interpretability-aware pruning of image classifiers.\n"
		"\n"
		"commands:\n"
		"  run       validate a pipeline and run it (--dry-run: validate and print it)\n"
		"  plugins   list plugins by kind; --describe NAME prints a plugin's options\n"
		"  info      version and search path; with WEIGHTS, the model's layer table\n"
		"  train     train the pipeline's model and save it\n"
		"  eval      evaluate the pipeline's model on its evaluation split\n"
		"  explain   heatmaps of images' relevance\n"
		"  prune     prune the pipeline's model at one rate and save it\n"
		"  attribute per-unit scores, input relevance and IG deltas as a NumPy .npz\n"
		"\n"
		"--max-memory SIZE (like 8G or 50%%; default 3/4 of physical memory) refuses runs\n"
		"estimated to need more.\n"
		"'iaprune COMMAND --help' describes a command; 'man iaprune' for details\n"
		"(from the source tree before installing: 'man ./man/iaprune.1').\n"
		"Exit status: 0 ok, 1 the run failed, 2 usage or input error.\n");
}

static int error_exit(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int error_exit(int code, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: ", prog);
	iap_fputs_escaped(msg, stderr);
	fputc('\n', stderr);
	return code;
}

/*
 * The exit status for a library failure (iaprune(1), EXIT STATUS): 2 when
 * the input is at fault (bad option or file, unreadable input, shapes, ABI,
 * over a limit), 1 when valid input could not be run (memory, a write, a
 * busy output folder, numerics, an unsupported combination).
 */
static int exit_for(int code)
{
	switch (code) {
	case IAP_EINVAL:
	case IAP_EIO:
	case IAP_EFORMAT:
	case IAP_ESHAPE:
	case IAP_EABI:
	case IAP_ELIMIT:
		return EXIT_USAGE;
	default:
		return EXIT_RUN;
	}
}

/* --max-memory SIZE (any command, before or after its name): the limit memory.h checks against. */
static int set_max_memory(const char *text)
{
	struct iap_error err = { 0, "" };
	uint64_t bytes;

	if (iap_memory_parse(text, &bytes, &err))
		return error_exit(EXIT_USAGE, "--max-memory: %s", err.msg);
	iap_memory_limit_set(bytes);
	return EXIT_OK;
}

static int add_plugin_path(struct common *c, const char *dir)
{
	if (c->n_plugin_path == (int)(sizeof(c->plugin_path) / sizeof(c->plugin_path[0])))
		return error_exit(EXIT_USAGE, "too many --plugin-path options");
	c->plugin_path[c->n_plugin_path++] = dir;
	return EXIT_OK;
}

/*
 * Scan for plugins; every file that could not be used is a warning (the
 * run goes on without it). NULL (after a message) when the registry fails.
 */
/*
 * 1 when this program runs from its build tree (not installed): then the
 * build tree's plugins and default pipeline are used, so `./cli/iaprune run`
 * works right after `make`.
 */
static int uninstalled(void)
{
#ifdef IAP_ABS_BUILDDIR
	char exe[4096], prefix[4200];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return 0;
	exe[n] = '\0';
	snprintf(prefix, sizeof(prefix), "%s/cli/", IAP_ABS_BUILDDIR);
	return strncmp(exe, prefix, strlen(prefix)) == 0;
#else
	return 0;
#endif
}

/*
 * From the build tree, its plugin folders stand in for the installed
 * directory, unless the environment says which system path to use (tests).
 */
static int from_build_tree(void)
{
	return uninstalled() && !getenv(IAP_PLUGIN_SYSTEM_PATH_ENV);
}

enum { BUILD_TREE_KINDS = 5 };

/* The build tree's plugin folder number k (0 .. BUILD_TREE_KINDS-1); 0 when there is none. */
static int build_tree_dir(int k, char *dir, size_t len)
{
#ifdef IAP_ABS_BUILDDIR
	static const char *const kinds[BUILD_TREE_KINDS] = { "models", "attribution", "samplers", "policies",
							     "datasets" };

	snprintf(dir, len, "%s/plugins/%s/.libs", IAP_ABS_BUILDDIR, kinds[k]);
	return 1;
#else
	(void)k;
	(void)dir;
	(void)len;
	return 0;
#endif
}

/* The plugin search path load_plugins uses, in order, one directory or variable per line. */
static void print_search_path(const struct common *c, FILE *f)
{
	const char *env;
	int build_tree = from_build_tree();

	for (int i = 0; i < c->n_plugin_path; i++)
		fprintf(f, "  --plugin-path %s\n", c->plugin_path[i]);
	env = getenv(IAP_PLUGIN_PATH_ENV);
	if (env)
		fprintf(f, "  %s=%s\n", IAP_PLUGIN_PATH_ENV, env);
	/* Searched where the installed directory would be (iap_registry_add_system_dir). */
	for (int k = 0; build_tree && k < BUILD_TREE_KINDS; k++) {
		char dir[4200];

		if (build_tree_dir(k, dir, sizeof(dir)))
			fprintf(f, "  %s (build tree)\n", dir);
	}
	env = getenv(IAP_PLUGIN_SYSTEM_PATH_ENV);
	if (build_tree)
		fprintf(f, "  (not %s/<kind>/: this iaprune runs from its build tree)\n", iap_plugin_dir());
	else if (env)
		fprintf(f, "  %s=%s (replaces %s)\n", IAP_PLUGIN_SYSTEM_PATH_ENV, env, iap_plugin_dir());
	else
		fprintf(f, "  %s/<kind>/\n", iap_plugin_dir());
}

static struct iap_registry *load_plugins(const struct common *c)
{
	struct iap_error err = { 0, "" };
	struct iap_registry *reg = iap_registry_new(&err);

	if (!reg)
		goto fail;
	for (int i = 0; i < c->n_plugin_path; i++) {
		if (access(c->plugin_path[i], R_OK | X_OK) != 0)
			fprintf(stderr, "%s: warning: --plugin-path %s: cannot read this directory\n", prog,
				c->plugin_path[i]);
		if (iap_registry_add_dir(reg, c->plugin_path[i], &err))
			goto fail;
	}
	if (from_build_tree()) {
		for (int k = 0; k < BUILD_TREE_KINDS; k++) {
			char dir[4200];

			if (build_tree_dir(k, dir, sizeof(dir)) && access(dir, R_OK | X_OK) == 0 &&
			    iap_registry_add_system_dir(reg, dir, &err))
				goto fail;
		}
		/*
		 * Instead of the installed folder, not as well: an installed copy of
		 * the same plugins would otherwise be a duplicate of every one.
		 */
		setenv(IAP_PLUGIN_SYSTEM_PATH_ENV, "", 1);
	}
	if (iap_registry_scan(reg, &err))
		goto fail;
	for (int i = 0; i < iap_registry_diag_count(reg); i++)
		fprintf(stderr, "%s: warning: %s\n", prog, iap_registry_diag(reg, i)->msg);
	/* From here plugin code may run: a crash or exit() in it is reported by name. */
	if (iap_plugin_guard_install(prog, &err))
		goto fail;
	return reg;
fail:
	error_exit(exit_for(err.code), "%s", err.msg);
	iap_registry_free(reg);
	return NULL;
}

/* ---- pipelines ------------------------------------------------------------------ */

static const char *default_pipeline(void)
{
	static char path[4096];

#ifdef IAP_ABS_SRCDIR
	if (uninstalled()) {
		snprintf(path, sizeof(path), "%s/etc/iaprune/default.yaml", IAP_ABS_SRCDIR);
		if (access(path, R_OK) == 0)
			return path;
	}
#endif
	snprintf(path, sizeof(path), "%s/iaprune/default.yaml", IAP_SYSCONFDIR);
	if (access(path, R_OK) == 0)
		return path;
	/* Not installed: the source tree's copy, so `./cli/iaprune run` works where it was built. */
	if (access("etc/iaprune/default.yaml", R_OK) == 0)
		return "etc/iaprune/default.yaml";
	return path;
}

/* Load and override; on failure prints the message and returns the exit code. */
static int load_tree(const char *path, const char *const *sets, int n_sets, struct iap_cfg **out)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = NULL;

	*out = NULL;
	if (iap_cfg_load_file(path, &cfg, &err))
		return error_exit(exit_for(err.code), "%s", err.msg);
	for (int i = 0; i < n_sets; i++)
		if (iap_cfg_set(cfg, sets[i], i + 1, &err)) {
			iap_cfg_free(cfg);
			return error_exit(exit_for(err.code), "%s", err.msg);
		}
	*out = cfg;
	return EXIT_OK;
}

/* The typed pipeline (validated once, plugins resolved) for run, train, eval and prune. */
static int load_typed(const char *path, const char *const *sets, int n_sets, const struct iap_registry *reg,
		      struct iap_pipeline **out)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = NULL;
	int rc = load_tree(path, sets, n_sets, &cfg);

	*out = NULL;
	if (rc)
		return rc;
	if (iap_pipeline_load(cfg, reg, out, &err)) {
		iap_cfg_free(cfg);
		return error_exit(exit_for(err.code), "%s", err.msg);
	}
	return EXIT_OK;
}

/* Load, override and validate; on failure prints the message and returns the exit code. */
static int load_pipeline(const char *path, const char *const *sets, int n_sets,
			 const struct iap_registry *reg, struct iap_cfg **out)
{
	struct iap_error err = { 0, "" };
	struct iap_cfg *cfg = NULL;
	int rc = load_tree(path, sets, n_sets, &cfg);

	*out = NULL;
	if (rc)
		return rc;
	if (iap_pipeline_validate(cfg, reg, &err)) {
		iap_cfg_free(cfg);
		return error_exit(exit_for(err.code), "%s", err.msg);
	}
	*out = cfg;
	return EXIT_OK;
}

/* ---- commands ---------------------------------------------------------------------- */

struct command {
	const char *name;
	const char *args;        /* usage after the command name */
	const char *summary;
	const char *pending;     /* non-NULL: not available in this build; why */
	int (*fn)(const struct command *cmd, struct common *c, int argc, char **argv);
};

static void usage_cmd(const struct command *cmd, FILE *f)
{
	fprintf(f, "usage: iaprune %s %s\n\n%s\n", cmd->name, cmd->args, cmd->summary);
}

enum { OPT_PLUGIN_PATH = 1000, OPT_SET, OPT_DRY_RUN, OPT_KIND, OPT_DESCRIBE, OPT_HELP, OPT_VERBOSE,
       OPT_QUIET, OPT_JOBS, OPT_RATE, OPT_ATTRIBUTION, OPT_SAMPLER, OPT_COMPACT, OPT_OUTPUT, OPT_WEIGHTS,
       OPT_TARGET, OPT_OPTION, OPT_RAW, OPT_MODEL, OPT_MODEL_OPTION, OPT_MAX_MEMORY };

static const struct option long_opts[] = {
	{ "plugin-path", required_argument, NULL, OPT_PLUGIN_PATH },
	{ "set", required_argument, NULL, OPT_SET },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "kind", required_argument, NULL, OPT_KIND },
	{ "describe", required_argument, NULL, OPT_DESCRIBE },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "jobs", required_argument, NULL, OPT_JOBS },
	{ "threads", required_argument, NULL, OPT_JOBS },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "attribution", required_argument, NULL, OPT_ATTRIBUTION },
	{ "sampler", required_argument, NULL, OPT_SAMPLER },
	{ "compact", no_argument, NULL, OPT_COMPACT },
	{ "output", required_argument, NULL, OPT_OUTPUT },
	{ "weights", required_argument, NULL, OPT_WEIGHTS },
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "option", required_argument, NULL, OPT_OPTION },
	{ "raw", required_argument, NULL, OPT_RAW },
	{ "model", required_argument, NULL, OPT_MODEL },
	{ "model-option", required_argument, NULL, OPT_MODEL_OPTION },
	{ "max-memory", required_argument, NULL, OPT_MAX_MEMORY },
	{ NULL, 0, NULL, 0 },
};

struct cmd_opts {
	const char *sets[256];
	int n_sets;
	int dry_run;
	int kind;
	const char *describe;
	int verbose;
	const char *pipeline;
	int quiet;
	int jobs;
	double rate;
	int have_rate;
	const char *attribution;
	const char *sampler;
	int compact;
	const char *output;
	const char *weights;
	int target;
	const char *options[64];
	int n_options;
	const char *raw;
	const char *model;
	const char *model_options[64];
	int n_model_options;
};

/*
 * Parse a command's options; allowed lists the ones it takes. Returns -1
 * to go on, or the exit code (help printed: 0; usage error: 2).
 */
static int parse_cmd(const struct command *cmd, struct common *c, int argc, char **argv,
		     const int *allowed, int max_args, struct cmd_opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	o->kind = -1;
	optind = 0;   /* glibc: full re-initialisation for a new argv */
	opterr = 0;
	o->target = -1;
	while ((ch = getopt_long(argc, argv, "+hvqj:o:", long_opts, NULL)) != -1) {
		int ok = ch == 'h' || ch == OPT_HELP || ch == OPT_PLUGIN_PATH || ch == OPT_MAX_MEMORY;

		for (int i = 0; allowed[i] && !ok; i++)
			ok = allowed[i] == ch || (ch == 'v' && allowed[i] == OPT_VERBOSE) ||
			     (ch == 'q' && allowed[i] == OPT_QUIET) || (ch == 'j' && allowed[i] == OPT_JOBS) ||
			     (ch == 'o' && allowed[i] == OPT_OUTPUT);
		if (!ok || ch == '?' || ch == ':') {
			error_exit(EXIT_USAGE, "%s: unknown or incomplete option '%s' (try 'iaprune %s --help')",
				   cmd->name, argv[optind - 1], cmd->name);
			return EXIT_USAGE;
		}
		switch (ch) {
		case 'h':
		case OPT_HELP:
			usage_cmd(cmd, stdout);
			return EXIT_OK;
		case OPT_PLUGIN_PATH:
			if (add_plugin_path(c, optarg))
				return EXIT_USAGE;
			break;
		case OPT_MAX_MEMORY:
			if (set_max_memory(optarg))
				return EXIT_USAGE;
			break;
		case OPT_SET:
			if (o->n_sets == (int)(sizeof(o->sets) / sizeof(o->sets[0])))
				return error_exit(EXIT_USAGE, "too many --set options");
			o->sets[o->n_sets++] = optarg;
			break;
		case OPT_DRY_RUN:
			o->dry_run = 1;
			break;
		case OPT_KIND:
			o->kind = iap_plugin_kind_parse(optarg);
			if (o->kind < 0)
				return error_exit(EXIT_USAGE,
						  "%s: unknown plugin kind '%s' (kinds: model, attribution, sampler, policy, dataset)",
						  cmd->name, optarg);
			break;
		case OPT_DESCRIBE:
			o->describe = optarg;
			break;
		case 'v':
		case OPT_VERBOSE:
			o->verbose = 1;
			break;
		case 'q':
		case OPT_QUIET:
			o->quiet = 1;
			break;
		case 'j':
		case OPT_JOBS: {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end || v < 1 || v > 1024)
				return error_exit(EXIT_USAGE, "%s: -j wants a thread count from 1 to 1024, not '%s'",
						  cmd->name, optarg);
			o->jobs = (int)v;
			break;
		}
		case OPT_RATE: {
			char *end;
			double v = strtod(optarg, &end);

			if (*end || !(v >= 0 && v < 1))
				return error_exit(EXIT_USAGE, "%s: --rate wants a fraction in [0, 1), not '%s'",
						  cmd->name, optarg);
			o->rate = v;
			o->have_rate = 1;
			break;
		}
		case OPT_ATTRIBUTION:
			o->attribution = optarg;
			break;
		case OPT_SAMPLER:
			o->sampler = optarg;
			break;
		case OPT_COMPACT:
			o->compact = 1;
			break;
		case 'o':
		case OPT_OUTPUT:
			o->output = optarg;
			break;
		case OPT_WEIGHTS:
			o->weights = optarg;
			break;
		case OPT_TARGET: {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end || v < 0 || v > 1000000)
				return error_exit(EXIT_USAGE, "%s: --target wants a class index, not '%s'", cmd->name,
						  optarg);
			o->target = (int)v;
			break;
		}
		case OPT_RAW:
			o->raw = optarg;
			break;
		case OPT_OPTION:
			if (o->n_options == (int)(sizeof(o->options) / sizeof(o->options[0])))
				return error_exit(EXIT_USAGE, "too many --option options");
			o->options[o->n_options++] = optarg;
			break;
		case OPT_MODEL:
			o->model = optarg;
			break;
		case OPT_MODEL_OPTION:
			if (o->n_model_options == (int)(sizeof(o->model_options) / sizeof(o->model_options[0])))
				return error_exit(EXIT_USAGE, "too many --model-option options");
			o->model_options[o->n_model_options++] = optarg;
			break;
		}
	}
	if (argc - optind > max_args)
		return error_exit(EXIT_USAGE, "%s: unexpected argument '%s' (try 'iaprune %s --help')",
				  cmd->name, argv[optind + max_args], cmd->name);
	if (argc - optind == 1)
		o->pipeline = argv[optind];
	return -1;
}

/* ---- running pipelines ---------------------------------------------------------------- */

struct ui {
	int quiet;
	int tty;
	int progress_shown;
	time_t last;
	double run_start, stage_start;   /* monotonic seconds; stage_start 0: no stage yet */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The wall time of the stage that just ended, as a line of its own (logs are read without a terminal too). */
static void ui_stage_end(struct ui *u)
{
	if (u->quiet || u->stage_start <= 0)
		return;
	fprintf(stderr, "    stage took %.1f s\n", now_s() - u->stage_start);
	u->stage_start = 0;
}

static void ui_clear(struct ui *u)
{
	if (u->progress_shown) {
		fputs("\r\033[K", stderr);
		u->progress_shown = 0;
	}
}

static void ui_log(void *user, enum iap_log_level level, const char *fmt, va_list ap)
{
	struct ui *u = user;

	if (u->quiet && level != IAP_LOG_WARN)
		return;
	char msg[4096];

	ui_clear(u);
	if (level == IAP_LOG_STAGE) {
		ui_stage_end(u);
		u->stage_start = now_s();
	}
	fputs(level == IAP_LOG_WARN ? "iaprune: warning: " : level == IAP_LOG_STAGE ? "==> " : "    ", stderr);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Messages quote names from files; only eval's metrics table has line breaks of its own. */
	for (char *line = msg, *nl; line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		iap_fputs_escaped(line, stderr);
		if (nl)
			fputc('\n', stderr);
	}
	fputc('\n', stderr);
}

/* A one-line progress bar, redrawn in place; only on a terminal. */
static void ui_progress(void *user, const char *stage, int64_t done, int64_t total)
{
	struct ui *u = user;
	int width = 30, fill;

	if (u->quiet || !u->tty || total <= 0)
		return;
	fill = (int)(width * done / total);
	fprintf(stderr, "\r\033[K%-28.28s [", stage);
	for (int i = 0; i < width; i++)
		fputc(i < fill ? '#' : '.', stderr);
	fprintf(stderr, "] %lld/%lld", (long long)done, (long long)total);
	u->progress_shown = 1;
	if (done >= total)
		ui_clear(u);
}

/* -j/--threads, else IAPRUNE_THREADS, else the pipeline's threads: (0: none given), else every CPU. */
static int set_threads(int jobs, int pipeline_threads)
{
	struct iap_error err = { 0, "" };
	const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE"), *env = getenv("IAPRUNE_THREADS");

	/* Ranks on one machine share its CPUs: by default each takes its part (ranks x threads <= cores). */
	if (jobs <= 0 && pipeline_threads <= 0 && !(env && *env) && local && atoi(local) > 1) {
		jobs = iap_threads_available() / atoi(local);
		jobs = jobs > 0 ? jobs : 1;
	}

	if (iap_threads_configure(jobs, pipeline_threads, &err))
		return error_exit(EXIT_USAGE, "%s", err.msg);
	return 0;
}

/* The work distribution (MPI ranks under mpirun; one process otherwise), for every command. */
static struct iap_dist *cli_dist;

static int run_mode(const struct command *cmd, struct common *c, int argc, char **argv,
		    enum iap_run_mode mode)
{
	static const int allowed[] = { OPT_SET, OPT_DRY_RUN, OPT_QUIET, OPT_JOBS, OPT_RATE, OPT_ATTRIBUTION,
				       OPT_SAMPLER, OPT_COMPACT, OPT_OUTPUT, 0 };
	struct iap_error err = { 0, "" };
	struct iap_run_opts ro = { .mode = mode };
	struct iap_registry *reg;
	struct iap_pipeline *pl;
	struct cmd_opts o;
	struct ui u = { 0 };
	int rc;

	rc = parse_cmd(cmd, c, argc, argv, allowed, 1, &o);
	if (rc >= 0)
		return rc;
	if (mode == IAP_RUN_PRUNE && !o.have_rate)
		return error_exit(EXIT_USAGE, "prune: --rate is required (the fraction of units to prune)");
	if (mode != IAP_RUN_PRUNE && (o.have_rate || o.attribution || o.sampler || o.compact || o.output))
		return error_exit(EXIT_USAGE, "%s: --rate, --attribution, --sampler, --compact and --output are for 'prune'",
				  cmd->name);
	if (o.dry_run && mode != IAP_RUN_ALL)
		return error_exit(EXIT_USAGE, "%s: --dry-run is for 'run'", cmd->name);
	if (set_threads(o.jobs, 0))
		return EXIT_USAGE;
	reg = load_plugins(c);
	if (!reg)
		return EXIT_RUN;
	rc = load_typed(o.pipeline ? o.pipeline : default_pipeline(), o.sets, o.n_sets, reg, &pl);
	if (rc)
		goto out_reg;
	rc = set_threads(o.jobs, pl->threads);
	if (rc)
		goto out_cfg;
	if ((mode == IAP_RUN_ALL || mode == IAP_RUN_PRUNE) && !pl->has_attribution) {
		rc = error_exit(EXIT_USAGE, "%s: missing required key 'attribution' ('%s' needs at least one method)",
				o.pipeline ? o.pipeline : default_pipeline(), cmd->name);
		goto out_cfg;
	}
	if (o.dry_run) {
		/* The pipeline as it would run: overrides applied, every default written out. */
		if (iap_pipeline_dump(pl->cfg, reg, stdout) || fflush(stdout))
			rc = error_exit(EXIT_RUN, "cannot write the pipeline to standard output");
		goto out_cfg;
	}
	/* Under mpirun rank 0 speaks for the job; the others say only warnings and errors. */
	u.quiet = o.quiet || iap_dist_rank(cli_dist) != 0;
	u.tty = isatty(STDERR_FILENO);
	ro.dist = cli_dist;
	ro.log = ui_log;
	ro.log_user = &u;
	ro.progress = ui_progress;
	ro.progress_user = &u;
	ro.prune_rate = o.rate;
	ro.prune_attribution = o.attribution;
	ro.prune_sampler = o.sampler;
	ro.compact = o.compact;
	ro.out_path = o.output;
	u.run_start = now_s();
	rc = iap_run(pl, &ro, &err);
	ui_clear(&u);
	ui_stage_end(&u);
	if (!rc && !u.quiet)
		fprintf(stderr, "==> done in %.1f s\n", now_s() - u.run_start);
	if (rc) {
		/* Bad input (files, shapes, options, unreadable paths) is status 2; anything else a failed run. */
		if (iap_dist_rank(cli_dist) != 0)
			rc = error_exit(exit_for(err.code), "rank %d: %s", iap_dist_rank(cli_dist), err.msg);
		else
			rc = error_exit(exit_for(err.code), "%s", err.msg);
	}
out_cfg:
	iap_pipeline_free(pl);
out_reg:
	iap_registry_free(reg);
	return rc;
}

static int cmd_run(const struct command *cmd, struct common *c, int argc, char **argv)
{
	return run_mode(cmd, c, argc, argv, IAP_RUN_ALL);
}

static int cmd_train(const struct command *cmd, struct common *c, int argc, char **argv)
{
	return run_mode(cmd, c, argc, argv, IAP_RUN_TRAIN);
}

static int cmd_eval(const struct command *cmd, struct common *c, int argc, char **argv)
{
	return run_mode(cmd, c, argc, argv, IAP_RUN_EVAL);
}

static int cmd_prune(const struct command *cmd, struct common *c, int argc, char **argv)
{
	return run_mode(cmd, c, argc, argv, IAP_RUN_PRUNE);
}

/* Half-precision weights are read as float32: say so (on stderr, like warnings). */
static void note_half_precision(const char *path)
{
	struct iap_safetensors *st;
	struct iap_error err;
	char note[512];

	if (iap_safetensors_open(path, &st, &err))
		return;
	if (iap_weights_half_note(st, note, sizeof(note)))
		fprintf(stderr, "%s: note: %s\n", prog, note);
	iap_safetensors_close(st);
}

/* "dir/scan.png" -> "dir/scan.NAME.png" (the image's own extension dropped, none added twice). */
static void explain_output_name(const char *image, const char *name, char *out, size_t len)
{
	const char *base = strrchr(image, '/'), *dot;

	base = base ? base + 1 : image;
	dot = strrchr(base, '.');
	if (!dot || dot == base)
		dot = image + strlen(image);
	snprintf(out, len, "%.*s.%s.png", (int)(dot - image), image, name);
}

/* ---- explain: heatmaps of images, the model loaded once -------------------------------------- */

/* What every image of one explain call shares. */
struct explain_ctx {
	const struct cmd_opts *o;
	const struct iap_plugin *attr;
	struct iap_graph *g;
	void *state;
	struct iap_score_opts so;
	const char *out_dir;        /* several images: -o and --raw name directories */
	const char *raw_dir;
};

/* "DIR/<base name of image>.<name>.<ext>" into buf. */
static void explain_path_in(char *buf, size_t len, const char *dir, const char *image, const char *name,
			    const char *ext)
{
	const char *base = strrchr(image, '/');

	snprintf(buf, len, "%s/%s.%s.%s", dir, base ? base + 1 : image, name, ext);
}

/* One image: load, explain, write the heatmap (and the raw relevance). Returns the exit status. */
static int explain_image(const struct explain_ctx *e, const char *image)
{
	const struct cmd_opts *o = e->o;
	const struct iap_plugin *attr = e->attr;
	struct iap_graph *g = e->g;
	struct iap_error err = { 0, "" };
	struct iap_tensor img = { 0 }, x = { 0 }, rel = { 0 };
	struct iap_score_opts so = e->so;
	struct iap_explain_norm norm;
	struct iap_explain_view v = { 0 };
	struct iap_explain_write_opts wo = { 0 };
	char out[4096], raw[4096];
	int rc, target;
	int64_t shape[4] = { 1, g->in_shape[0], g->in_shape[1], g->in_shape[2] };

	/* The datasets' default normalisation: ImageNet for colour, 0.5/0.5 for grayscale. */
	iap_explain_norm_default((int)shape[1], &norm);
	rc = EXIT_USAGE;
	if (iap_tensor_alloc(&x, 4, shape, &err) || iap_explain_load_image(image, g, &norm, &img, x.data, &err))
		goto fail;
	rc = EXIT_RUN;
	if (iap_graph_forward(g, &x, &err))
		goto fail;
	if (o->target >= 0) {
		if (o->target >= iap_graph_output(g)->shape[1]) {
			error_exit(EXIT_USAGE, "explain: --target %d: the model has %lld classes", o->target,
				   (long long)iap_graph_output(g)->shape[1]);
			rc = EXIT_USAGE;
			goto out;
		}
		target = o->target;
	} else {
		so.target = IAP_TARGET_PREDICTED;
		if (iap_targets(iap_graph_output(g), NULL, &so, &target, &err))
			goto fail;
	}
	if (iap_explain_relevance(attr, e->state, g, &x, target, &rel, &err))
		goto fail;
	if (e->out_dir)
		explain_path_in(out, sizeof(out), e->out_dir, image, attr->desc->name, "png");
	else if (o->output)
		snprintf(out, sizeof(out), "%s", o->output);
	else
		explain_output_name(image, attr->desc->name, out, sizeof(out));
	/* The raw relevance, [channels, H, W] float32, for analysis elsewhere. */
	if (e->raw_dir)
		explain_path_in(raw, sizeof(raw), e->raw_dir, image, attr->desc->name, "npy");
	else if (o->raw)
		snprintf(raw, sizeof(raw), "%s", o->raw);
	wo.npy = e->raw_dir || o->raw ? raw : NULL;
	/* Drawn over the image as it was given, at its own size (capped): the map is resized, not the picture. */
	v = (struct iap_explain_view){ .image = img.data, .channels = (int)img.shape[0], .h = (int)img.shape[1],
				       .w = (int)img.shape[2] };
	if (iap_explain_write(out, &rel, &v, &wo, &err))
		goto fail;
	printf("%s: class %d (logit %.4f), heatmap %s\n", image, target,
	       iap_graph_output(g)->data[target], out);
	rc = EXIT_OK;
	goto out;
fail:
	error_exit(rc, "%s", err.msg);
out:
	iap_tensor_free(&img);
	iap_tensor_free(&x);
	iap_tensor_free(&rel);
	return rc;
}

/* 1 when path is a directory. */
static int is_dir(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int cmd_explain(const struct command *cmd, struct common *c, int argc, char **argv)
{
	static const int allowed[] = { OPT_WEIGHTS, OPT_ATTRIBUTION, OPT_OPTION, OPT_TARGET, OPT_OUTPUT, OPT_JOBS,
				       OPT_RAW, OPT_MODEL, OPT_MODEL_OPTION, 0 };
	struct iap_error err = { 0, "" };
	struct iap_registry *reg = NULL;
	const struct iap_plugin *attr = NULL;
	struct iap_graph *g = NULL;
	struct iap_opts *opts = NULL;
	struct explain_ctx e = { 0 };
	void *state = NULL;
	char what[128];
	struct cmd_opts o;
	int rc, n_images;
	char **images;

	rc = parse_cmd(cmd, c, argc, argv, allowed, INT_MAX, &o);
	if (rc >= 0)
		return rc;
	images = argv + optind;
	n_images = argc - optind;
	if (n_images < 1 || !o.weights)
		return error_exit(EXIT_USAGE, "explain: needs --weights MODEL.safetensors and an IMAGE (try 'iaprune explain --help')");
	/* Several images: -o and --raw are directories, one file per image in them. */
	if (n_images > 1 && ((o.output && !is_dir(o.output)) || (o.raw && !is_dir(o.raw))))
		return error_exit(EXIT_USAGE, "explain: with %d images, -o and --raw name existing directories (%s is not one)",
				  n_images, o.output && !is_dir(o.output) ? o.output : o.raw);
	if (set_threads(o.jobs, 0))
		return EXIT_USAGE;
	reg = load_plugins(c);
	if (!reg)
		return EXIT_RUN;
	rc = EXIT_USAGE;
	attr = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, o.attribution ? o.attribution : "lrp");
	if (!attr) {
		error_exit(EXIT_USAGE, "explain: no attribution plugin '%s' (see 'iaprune plugins --kind attribution')",
			   o.attribution ? o.attribution : "lrp");
		goto out;
	}
	if (!attr->desc->ops.attribution->explain) {
		error_exit(EXIT_USAGE, "explain: attribution '%s' gives no input-level relevance", attr->desc->name);
		goto out;
	}
	if (iap_opts_defaults(attr->desc->options, &opts, &err))
		goto fail;
	for (int i = 0; i < o.n_options; i++) {
		char key[256];
		const char *eq = strchr(o.options[i], '=');

		if (!eq || eq == o.options[i] || (size_t)(eq - o.options[i]) >= sizeof(key)) {
			error_exit(EXIT_USAGE, "explain: --option wants KEY=VALUE, not '%s'", o.options[i]);
			goto out;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(eq - o.options[i]), o.options[i]);
		snprintf(what, sizeof(what), "attribution '%s'", attr->desc->name);
		if (iap_opts_set(opts, what, key, eq + 1, &err))
			goto fail;
	}
	/* An iaprune file describes its model; a plain torchvision one is built by --model. */
	if (cli_model_load(reg, o.weights, o.model, o.model_options, o.n_model_options, &g, &err))
		goto fail;
	note_half_precision(o.weights);
	if (iap_call_create(attr, opts, g, &state, &err)) {
		rc = error_exit(EXIT_RUN, "%s", err.msg);
		goto out;
	}
	e = (struct explain_ctx){ .o = &o, .attr = attr, .g = g, .state = state,
				  .out_dir = n_images > 1 ? o.output : NULL, .raw_dir = n_images > 1 ? o.raw : NULL };
	iap_score_opts_from(opts, &e.so);
	/* Every image, the model and the method's state built once; the first failure stops. */
	rc = EXIT_OK;
	for (int i = 0; i < n_images && rc == EXIT_OK; i++)
		rc = explain_image(&e, images[i]);
	goto out;
fail:
	rc = error_exit(exit_for(err.code), "%s", err.msg);
out:
	if (state)
		iap_call_destroy(attr, state);
	iap_opts_free(opts);
	iap_graph_free(g);
	iap_registry_free(reg);
	return rc;
}

/* ---- attribute: the command lives in cmd_attribute.c ---------------------------------------- */

static struct iap_registry *env_load_plugins(void *user)
{
	return load_plugins(user);
}

static int env_add_plugin_path(void *user, const char *dir)
{
	return add_plugin_path(user, dir);
}

static int cmd_attribute(const struct command *cmd, struct common *c, int argc, char **argv)
{
	const struct cli_env env = { env_load_plugins, env_add_plugin_path, load_pipeline, c };

	(void)cmd;
	return cli_attribute(&env, argc, argv);
}

static void describe_option(const struct iap_option *opt)
{
	printf("  %s (%s", opt->name, iap_opt_type_name(opt->type));
	if (opt->type == IAP_OPT_ENUM) {
		printf(": ");
		for (const char *const *ch = opt->choices; *ch; ch++)
			printf("%s%s", ch == opt->choices ? "" : " | ", *ch);
	}
	if (opt->has_range && (opt->type == IAP_OPT_INT || opt->type == IAP_OPT_FLOAT))
		printf(", range [%g, %g]", opt->min, opt->max);
	if (opt->def)
		printf(", default %s", *opt->def ? opt->def : "\"\"");
	else
		printf(", required");
	printf(")\n");
	if (opt->help && *opt->help)
		printf("      %s\n", opt->help);
}

static int describe(const struct iap_registry *reg, const char *spec, int kind)
{
	const struct iap_plugin *found = NULL;
	const char *name = spec, *slash = strchr(spec, '/');
	char kinds[128] = "";
	int hits = 0;

	if (slash) {
		char k[32];

		snprintf(k, sizeof(k), "%.*s", (int)(slash - spec), spec);
		kind = iap_plugin_kind_parse(k);
		if (kind < 0)
			return error_exit(EXIT_USAGE, "plugins: unknown plugin kind '%s' in '%s'", k, spec);
		name = slash + 1;
	}
	for (int i = 0; i < iap_registry_count(reg); i++) {
		const struct iap_plugin *p = iap_registry_get(reg, i);

		if (strcmp(p->desc->name, name) || (kind >= 0 && (int)p->desc->kind != kind))
			continue;
		found = p;
		snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds), "%s%s", hits ? ", " : "",
			 iap_plugin_kind_name(p->desc->kind));
		hits++;
	}
	if (!found)
		return error_exit(EXIT_USAGE, "plugins: no %s%splugin named '%s' (see 'iaprune plugins')",
				  kind >= 0 ? iap_plugin_kind_name(kind) : "", kind >= 0 ? " " : "", name);
	if (hits > 1)
		return error_exit(EXIT_USAGE, "plugins: '%s' names plugins of several kinds (%s); "
				  "say which with --kind KIND or KIND/NAME", name, kinds);
	printf("%s %s: %s\n", iap_plugin_kind_name(found->desc->kind), found->desc->name,
	       found->desc->summary ? found->desc->summary : "");
	printf("version %s, license %s, ABI %u.%u\n", found->desc->version ? found->desc->version : "?",
	       found->desc->license ? found->desc->license : "?", found->desc->abi_major,
	       found->desc->abi_minor);
	printf("file %s\n", found->path);
	if (!found->desc->options || !found->desc->options[0].name) {
		printf("options: none\n");
		return EXIT_OK;
	}
	printf("options:\n");
	for (const struct iap_option *opt = found->desc->options; opt->name; opt++)
		describe_option(opt);
	return EXIT_OK;
}

static int cmd_plugins(const struct command *cmd, struct common *c, int argc, char **argv)
{
	static const int allowed[] = { OPT_KIND, OPT_DESCRIBE, OPT_VERBOSE, 0 };
	struct iap_registry *reg;
	struct cmd_opts o;
	int rc;

	rc = parse_cmd(cmd, c, argc, argv, allowed, 0, &o);
	if (rc >= 0)
		return rc;
	reg = load_plugins(c);
	if (!reg)
		return EXIT_RUN;
	if (o.describe) {
		rc = describe(reg, o.describe, o.kind);
		iap_registry_free(reg);
		return rc;
	}
	for (int k = 0; k < IAP_PLUGIN_KIND_COUNT; k++) {
		int n = 0;

		if (o.kind >= 0 && k != o.kind)
			continue;
		printf("%s:\n", iap_plugin_kind_name(k));
		for (int i = 0; i < iap_registry_count(reg); i++) {
			const struct iap_plugin *p = iap_registry_get(reg, i);

			if ((int)p->desc->kind != k)
				continue;
			char name[64], version[64], summary[512];

			/* A plugin's strings come from a file on the search path: escaped like other names. */
			iap_escape(p->desc->name, name, sizeof(name));
			iap_escape(p->desc->version ? p->desc->version : "?", version, sizeof(version));
			iap_escape(p->desc->summary ? p->desc->summary : "", summary, sizeof(summary));
			printf("  %-16s %-8s %s\n", name, version, summary);
			if (o.verbose)
				printf("  %-16s %-8s %s\n", "", "", p->path);
			n++;
		}
		if (!n)
			printf("  (none)\n");
	}
	/* Files the scan refused (a crash while its descriptor was read, a bad ABI, ...): also on stderr. */
	if (o.kind < 0 && iap_registry_diag_count(reg) > 0) {
		printf("skipped:\n");
		for (int i = 0; i < iap_registry_diag_count(reg); i++)
			printf("  %s\n", iap_registry_diag(reg, i)->msg);
	}
	iap_registry_free(reg);
	return EXIT_OK;
}

/* The tensors of a safetensors file without iaprune metadata. */
static int list_tensors(const char *path)
{
	struct iap_safetensors *st;
	struct iap_error err;
	int64_t total = 0, zeros = 0;
	char shape[96], name[1024];

	if (iap_safetensors_open(path, &st, &err))
		return error_exit(exit_for(err.code), "%s", err.msg);
	printf("%-60s %-5s %-20s %12s %7s\n", "tensor", "dtype", "shape", "elements", "zeros");
	for (int i = 0; i < st->n_tensors; i++) {
		const struct iap_st_tensor *t = &st->tensors[i];
		int64_t z = 0;

		if (t->dtype != IAP_ST_I64) {
			float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));

			if (!buf || iap_safetensors_read_f32(st, t, buf, &err)) {
				free(buf);
				iap_safetensors_close(st);
				return error_exit(buf ? exit_for(err.code) : EXIT_RUN, "%s", buf ? err.msg : "out of memory");
			}
			for (int64_t k = 0; k < t->numel; k++)
				z += buf[k] == 0.0f;
			free(buf);
			total += t->numel;
			zeros += z;
		}
		iap_shape_str(t->ndim, t->shape, shape, sizeof(shape));
		iap_escape(t->name, name, sizeof(name));
		printf("%-60s %-5s %-20s %12lld %6.1f%%\n", name, iap_st_dtype_name(t->dtype), shape,
		       (long long)t->numel, t->numel ? 100.0 * (double)z / (double)t->numel : 0.0);
	}
	printf("\ntotal: %d tensors, %lld float elements, %.2f%% zero\n", st->n_tensors, (long long)total,
	       total ? 100.0 * (double)zeros / (double)total : 0.0);
	for (int i = 0; i < st->n_meta; i++) {
		/* Names and metadata come from the file: escaped, so they cannot forge lines or drive the terminal. */
		fputs("metadata ", stdout);
		iap_fputs_escaped(st->meta[i].key, stdout);
		fputs(": ", stdout);
		iap_fputs_escaped(st->meta[i].value, stdout);
		fputc('\n', stdout);
	}
	iap_safetensors_close(st);
	return EXIT_OK;
}

/* `info WEIGHTS`: the model's layer table when the file says which model it is. */
static int info_weights(struct common *c, const char *path)
{
	struct iap_registry *reg;
	struct iap_graph *g = NULL;
	struct iap_safetensors *st;
	struct iap_error err;
	int has_model, rc;

	if (iap_safetensors_open(path, &st, &err))
		return error_exit(exit_for(err.code), "%s", err.msg);
	has_model = iap_safetensors_meta(st, IAP_META_MODEL) != NULL;
	iap_safetensors_close(st);
	if (!has_model)
		return list_tensors(path);
	reg = load_plugins(c);
	if (!reg)
		return EXIT_RUN;
	rc = iap_model_from_weights(reg, path, &g, NULL, &err);
	if (rc) {
		iap_registry_free(reg);
		return error_exit(exit_for(err.code), "%s", err.msg);
	}
	note_half_precision(path);
	iap_graph_print_summary(g, stdout);
	iap_graph_free(g);
	iap_registry_free(reg);
	return EXIT_OK;
}

/*
 * `info --model NAME [--model-option KEY=VALUE]...`: the layer table of a model
 * spec without weights, sized as without a dataset (1000 classes, 3
 * channels, 224 pixels unless its options say otherwise), its parameters
 * initialised as for training (seed 0) so the zeros column means something.
 */
static int info_model(struct common *c, const char *name, const char *const *options, int n_options)
{
	struct iap_error err = { 0, "" };
	struct iap_registry *reg;
	const struct iap_plugin *p;
	struct iap_opts *opts = NULL;
	struct iap_graph *g = NULL;
	int rc = EXIT_USAGE;
	char what[160];

	reg = load_plugins(c);
	if (!reg)
		return EXIT_RUN;
	p = iap_registry_find(reg, IAP_PLUGIN_MODEL, name);
	if (!p) {
		error_exit(EXIT_USAGE, "info: no model plugin '%s' (see 'iaprune plugins --kind model')", name);
		goto out;
	}
	snprintf(what, sizeof(what), "model '%s'", name);
	if (iap_opts_defaults(p->desc->options, &opts, &err))
		goto fail;
	for (int i = 0; i < n_options; i++) {
		char key[256];
		const char *eq = strchr(options[i], '=');

		if (!eq || eq == options[i] || (size_t)(eq - options[i]) >= sizeof(key)) {
			error_exit(EXIT_USAGE, "info: --model-option wants KEY=VALUE, not '%s'", options[i]);
			goto out;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(eq - options[i]), options[i]);
		if (iap_opts_set(opts, what, key, eq + 1, &err))
			goto fail;
	}
	/* Through the guarded calls, like every other call into a plugin. */
	if (iap_call_build(p, opts, NULL, &g, &err))
		goto fail;
	if (p->desc->ops.model->init_params) {
		struct iap_rng rng;

		iap_rng_seed(&rng, 0);
		if (iap_call_init_params(p, opts, g, &rng, &err)) {
			rc = EXIT_RUN;
			goto fail;
		}
	}
	printf("model %s", name);
	for (int i = 0; i < n_options; i++)
		printf("%s%s", i ? ", " : " (", options[i]);
	printf("%s: input [%lld, %lld, %lld], %lld classes; no weights file: parameters as initialised for training\n\n",
	       n_options ? ")" : "", (long long)g->in_shape[0], (long long)g->in_shape[1], (long long)g->in_shape[2],
	       (long long)g->nodes[g->output].out_shape[0]);
	iap_graph_print_summary(g, stdout);
	rc = EXIT_OK;
	goto out;
fail:
	error_exit(rc, "%s", err.msg);
out:
	iap_graph_free(g);
	iap_opts_free(opts);
	iap_registry_free(reg);
	return rc;
}

static int cmd_info(const struct command *cmd, struct common *c, int argc, char **argv)
{
	static const int allowed[] = { OPT_MODEL, OPT_MODEL_OPTION, 0 };
	struct cmd_opts o;
	int rc;

	rc = parse_cmd(cmd, c, argc, argv, allowed, 1, &o);
	if (rc >= 0)
		return rc;
	if (o.model && o.pipeline)
		return error_exit(EXIT_USAGE, "info: give WEIGHTS or --model NAME, not both");
	if (o.n_model_options && !o.model)
		return error_exit(EXIT_USAGE, "info: --model-option sets the options of --model NAME");
	if (o.model)
		return info_model(c, o.model, o.model_options, o.n_model_options);
	if (o.pipeline)
		return info_weights(c, o.pipeline);
	printf("iaprune %s\n", PACKAGE_VERSION);
	printf("plugin ABI %d.%d\n", IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR);
	printf("pipeline version %d\n", IAP_PIPELINE_VERSION);
	printf("default pipeline %s\n", default_pipeline());
	printf("plugin search path (in order):\n");
	print_search_path(c, stdout);
	return EXIT_OK;
}

static const struct command commands[] = {
	{ "run", "[-q] [-j N] [--set KEY=VALUE]... [--dry-run] [PIPELINE]",
	  "Run PIPELINE (default: the installed default.yaml) end to end: train or load the\n"
	  "model, evaluate it, score units with every attribution x sampler, prune at every\n"
	  "rate, and write the report under the pipeline's output directory.\n"
	  "--set applies overrides; --dry-run prints the pipeline with every default filled in.",
	  NULL, cmd_run },
	{ "plugins", "[--kind KIND] [--describe [KIND/]NAME] [-v]",
	  "List the plugins found on the search path by kind (-v: with their files), or\n"
	  "describe one plugin and its options.",
	  NULL, cmd_plugins },
	{ "info", "[WEIGHTS | --model NAME [--model-option KEY=VALUE]...]",
	  "Without an argument: the version, plugin ABI, default pipeline and plugin search path.\n"
	  "With a safetensors file: the model's layer table (output shapes, parameters,\n"
	  "multiply-accumulates, prunable and pruned units, zero weights) when the file\n"
	  "carries iaprune's model description, otherwise its tensors.\n"
	  "With --model NAME: the same table for a model plugin's architecture without weights\n"
	  "(--model-option sets its options, e.g. --model vgg --model-option depth=19).",
	  NULL, cmd_info },
	{ "train", "[-q] [-j N] [--set KEY=VALUE]... [PIPELINE]",
	  "Train the pipeline's model (or load model.weights) and save it with its description\n"
	  "as OUTPUT/model.safetensors; checkpoints go to OUTPUT/checkpoints (training resumes).",
	  NULL, cmd_train },
	{ "eval", "[-q] [-j N] [--set KEY=VALUE]... [PIPELINE]",
	  "Evaluate the pipeline's model on evaluation.split: accuracy, balanced accuracy,\n"
	  "per-class sensitivity/specificity/precision, macro F1, AUROC, ECE, confusion matrix\n"
	  "(printed, and written to OUTPUT/metrics.json).",
	  NULL, cmd_eval },
	{ "explain", "--weights MODEL.safetensors [--model NAME [--model-option KEY=VALUE]...] [--attribution NAME] [--option KEY=VALUE]... [--target N] [-o OUT.png|DIR] [--raw OUT.npy|DIR] IMAGE...",
	  "Write each IMAGE with its relevance for the predicted class (or --target) blended\n"
	  "over it as a PNG (default IMAGE.NAME.png). The model is rebuilt from the weights\n"
	  "file's description, or, for a plain torchvision file, built by --model NAME with\n"
	  "--model-option sizes; it is loaded once for all images. The attribution defaults to\n"
	  "lrp. --raw also writes the relevance itself ([channels, H, W] float32) as .npy.\n"
	  "With several images, -o and --raw name directories (DIR/IMAGE.NAME.png, .npy).",
	  NULL, cmd_explain },
	{ "prune", "--rate R [--attribution NAME] [--sampler NAME] [--compact] [-o OUT] [--set KEY=VALUE]... [PIPELINE]",
	  "Score units with one attribution x sampler of the pipeline (the first by default;\n"
	  "scores are cached), prune the fraction R of all units with the pipeline's policy,\n"
	  "and write the masked model (zeros baked in; default OUTPUT/pruned.safetensors) and\n"
	  "with --compact also the physically smaller model (...-compact.safetensors).",
	  NULL, cmd_prune },
	{ "attribute", cli_attribute_args, cli_attribute_summary, NULL, cmd_attribute },
};

int main(int argc, char **argv)
{
	static const struct option main_opts[] = {
		{ "plugin-path", required_argument, NULL, OPT_PLUGIN_PATH },
		{ "max-memory", required_argument, NULL, OPT_MAX_MEMORY },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct common c = { { NULL }, 0 };
	int ch;

	/* Before anything else: an OpenBLAS that fell back to SSE3 kernels on an AVX2/AVX-512 CPU gets one restart with the right ones. */
	iap_blas_reexec(argv);
	opterr = 0;
	/* "+": stop at the command name; its own options follow it. */
	while ((ch = getopt_long(argc, argv, "+hV", main_opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			usage_main(stdout);
			return EXIT_OK;
		case 'V':
			printf("iaprune %s (plugin ABI %d.%d, pipeline version %d%s)\n", PACKAGE_VERSION,
			       IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR, IAP_PIPELINE_VERSION,
			       iap_dist_built_with_mpi() ? ", MPI" : "");
			if (set_threads(0, 0))
				return EXIT_USAGE;
			printf("threads %d (of %d CPUs available), OpenBLAS kernels %s, %d thread per call\n",
			       iap_threads(), iap_threads_available(), iap_blas_core(), iap_threads_blas());
			printf("plugin search path (in order):\n");
			print_search_path(&c, stdout);
			return EXIT_OK;
		case OPT_PLUGIN_PATH:
			if (add_plugin_path(&c, optarg))
				return EXIT_USAGE;
			break;
		case OPT_MAX_MEMORY:
			if (set_max_memory(optarg))
				return EXIT_USAGE;
			break;
		default:
			return error_exit(EXIT_USAGE, "unknown or incomplete option '%s' (try 'iaprune --help')",
					  argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		usage_main(stderr);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[optind], commands[i].name)) {
			struct iap_error err = { 0, "" };
			int rc;

			/* Before the plugin guard: MPI_Init installs signal handlers of its own, the guard's go on top. */
			if (iap_dist_init(&cli_dist, NULL, NULL, &err))
				return error_exit(EXIT_RUN, "%s", err.msg);
			rc = commands[i].fn(&commands[i], &c, argc - optind, argv + optind);
			iap_plugin_guard_finish();
			/* A failure the other ranks may not know of: end the job rather than leave them waiting. */
			if (rc && iap_dist_size(cli_dist) > 1)
				iap_dist_abort(cli_dist, rc);
			iap_dist_finalize(cli_dist);
			return rc;
		}
	return error_exit(EXIT_USAGE, "unknown command '%s' (try 'iaprune --help')", argv[optind]);
}
