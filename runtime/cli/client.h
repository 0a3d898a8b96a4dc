/* What the user commands of the ditrt command line share: flag parsing, messages, prompt
 * files and the --json summary. Like the commands themselves, it depends on nothing but the
 * public API (include/ditrt.h), so everything the CLI does an application can do too. */
#ifndef DT_CLI_CLIENT_H
#define DT_CLI_CLIENT_H
#include <stdint.h>
#include <stdio.h>
#include "ditrt.h"

/* The user commands (one file each). */
int cli_txt2img(int argc, char **argv);
int cli_txt2vid(int argc, char **argv);
int cli_compare(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_calibrate_attn(int argc, char **argv);
int cli_search_solver(int argc, char **argv);
int cli_search_models(int argc, char **argv);

/* Prints "ditrt: <msg>" and returns the exit code 1. */
int cli_die(const ditrt_error *err);
/* Prints "ditrt: <formatted>" and returns the exit code 2. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Fills err (status and one-line message) and returns the status. */
ditrt_status cli_fail(ditrt_error *err, ditrt_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Flag parsing: returns the value of argv[*i] when it is `flag VALUE` (the next argument) or
 * `flag=VALUE`, else NULL; a flag with no value is reported through *missing. */
const char *cli_flag(int argc, char **argv, int *i, const char *flag, int *missing);

/* Help (usage.c): every command's usage with its defaults, the source of the option names. */
/* The usage of cmd ("txt2img", "eval", ...) into buf; -1 for an unknown command. */
int cli_help_text(const char *cmd, char *buf, size_t n);
/* `ditrt CMD --help`: the usage on stdout, 0 (2 after a usage error for an unknown command). */
int cli_help(const char *cmd);
/* `ditrt --help`: the command list. */
void cli_help_commands(FILE *f);
/* The option of cmd closest to arg (a typo or a prefix: "--step" -> "--steps") into buf, or NULL
 * when none is close. */
const char *cli_closest_option(const char *cmd, const char *arg, char *buf, size_t n);
/* Whether argv (argv[1] the command) asks for help: -h or --help where an option may stand
 * (not as the value of an option that takes one, so `-p --help` is a prompt). */
int cli_wants_help(const char *cmd, int argc, char **argv);
/* The command closest to name (a typo), into buf, or NULL. */
const char *cli_closest_command(const char *name, char *buf, size_t n);
/* The usage error for an argument cmd does not know, suggesting the closest option; returns 2. */
int cli_unknown_option(const char *cmd, const char *arg);

/* -m for the commands that load a whole pipeline: a folder with model_index.json; else an
 * error saying what such a folder holds (and the pipeline folders inside dir, if any). */
ditrt_status cli_check_pipeline_dir(const char *dir, ditrt_error *err);

/* Output folders: `-o a/b/out.png` or `-o frames/` where a folder is missing creates the
 * missing folders (like mkdir -p) when the output is written. cli_output_check is
 * ditrt_output_check with the missing folders created for the check and removed again (so a
 * failed run leaves nothing); cli_output_folders creates them for good, before writing. */
ditrt_status cli_output_check(const char *path, int video, ditrt_output_kind *kind, ditrt_error *err);
ditrt_status cli_output_folders(const char *path, ditrt_error *err);
int cli_parse_int(const char *flag, const char *v, int lo, int hi, int *out);
/* A decimal unsigned 64-bit value (seeds); 0 after a usage error. */
int cli_parse_u64(const char *flag, const char *v, uint64_t *out);
double cli_now(void);

/* A comma-separated flag value split into owned strings; empty items are refused. */
typedef struct {
    char **items;
    int n;
} cli_list;
int cli_split_list(const char *flag, const char *value, cli_list *out); /* 0, or 2 after a usage error */
void cli_list_free(cli_list *l);
/* The non-empty lines of a prompts file; an empty file is an error. */
ditrt_status cli_read_prompts(const char *path, cli_list *out, ditrt_error *err);
/* `--list-solvers`: the short names and diffusers classes --solver takes; returns 0. */
int cli_list_solvers(void);

/* The fields every generation summary (`--json`) has; adds them to obj. */
struct cJSON;
typedef struct {
    const char *model, *prompt, *negative_prompt, *solver, *dtype;
    uint64_t seed;
    int steps, width, height, prompt_truncated;
    float cfg;
    double seconds_text, seconds_sampling, seconds_decode;
    const char *text_dtype; /* the text encoder's (ditrt_ctx_info.text_dtype) */
} cli_summary;
void cli_summary_add(struct cJSON *obj, const cli_summary *s);
/* The optional settings that change what a run computes (set only when given): recorded in the
 * output's metadata and the --json summary so an image or clip says how it was made. */
typedef struct {
    const char *attn_plan, *quant, *solver_schedule, *solver_statistics, *zoo, *model_schedule;
    const char *clip_sample; /* "on" / "off" when given */
    double eta;
    int karras;
    char eta_text[32]; /* storage for the metadata value */
} cli_settings;
/* Appends the set fields of x to meta[n..cap) as key/value pairs; returns the new count. */
int cli_settings_meta(cli_settings *x, ditrt_meta *meta, int n, int cap);
void cli_settings_json(struct cJSON *obj, const cli_settings *x);
/* The AUTOMATIC1111-style `parameters` text of an image (gen_infotext.c): the prompt, the
 * negative prompt and "Steps: ..., Sampler: ..., ..." as the web UI writes them; malloc'd
 * (NULL when out of memory). */
typedef struct {
    const char *prompt, *negative_prompt, *solver, *model, *version;
    int steps, width, height, karras, batch, batch_index;
    uint64_t seed;
    double cfg, eta;
} cli_infotext_fields;
char *cli_infotext(const cli_infotext_fields *f);
/* Prints obj (indented) on stdout and frees it. */
void cli_json_print(struct cJSON *obj);

/* Attention plans (added for calibrate-attn and info --attn-plan): the method counts and the
 * cost lines of a plan summary (ditrt_attn_plan_summarize), on stdout. */
void cli_print_attn_cost(const ditrt_attn_plan_summary *s);

/* `ditrt compare` for videos (cli_compare_video.c; also declared in cli.h): whether a path is a
 * video (.mp4/.webp, a frame folder or a %d pattern), and the comparison with its output. */
int cli_is_video_path(const char *path);
int cli_compare_video(const char *a, const char *b, const double *min_psnr, const double *min_ssim, const char *diff,
                      int json);
/* `compare --json`: the result as one object on stdout (psnr/ssim null when infinite or n/a,
 * "identical", per-frame arrays for videos, the thresholds given and "pass": rc == 0). */
void cli_compare_json(const char *a, const char *b, const ditrt_compare_result *r, const double *min_psnr,
                      const double *min_ssim, int rc);

/* --dtype values: f32 / float32, bf16 / bfloat16, f16 / float16 (CUDA) or tf32 (CUDA), as the
 * API spells them; NULL for anything else (the caller reports it as a usage error, naming
 * CLI_DTYPES). Whether the device takes it is the API's answer (a one-line error). */
#define CLI_DTYPES "f32, bf16, f16 or tf32 (f16 and tf32 need --device cuda)" /* as the API words it */
const char *cli_dtype_arg(const char *v);
/* --device values: cpu, cuda, cuda:N (N decimal) as given; NULL for anything else. Whether the
 * device is built in and present is ditrt_ctx_create's answer (a one-line error). */
const char *cli_device_arg(const char *v);

/* A ditrt_log_fn printing each line on stderr, after "<user>: " when user (a string) is set. */
void cli_log_stderr(const char *line, void *user);

#endif
