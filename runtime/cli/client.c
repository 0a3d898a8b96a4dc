/* The user commands' shared helpers (client.h): only the public API underneath. */
#include "client.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_die(const ditrt_error *err)
{
    fprintf(stderr, "ditrt: %s\n", err->msg[0] ? err->msg : ditrt_status_name(err->status));
    return 1;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ditrt: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

const char *cli_flag(int argc, char **argv, int *i, const char *flag, int *missing)
{
    size_t k = strlen(flag);
    if (!strncmp(argv[*i], flag, k) && argv[*i][k] == '=') return argv[*i] + k + 1; /* --flag=value */
    if (strcmp(argv[*i], flag)) return NULL;
    if (*i + 1 >= argc) { *missing = 1; return NULL; }
    return argv[++*i];
}

int cli_parse_int(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        cli_usage_error("%s: expected an integer in [%d, %d], got \"%s\"", flag, lo, hi, v);
        return 0;
    }
    *out = (int)x;
    return 1;
}

int cli_parse_u64(const char *flag, const char *v, uint64_t *out)
{
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || *v == '-') return cli_usage_error("%s: expected a non-negative integer, got \"%s\"", flag, v), 0;
    *out = x;
    return 1;
}

void cli_summary_add(struct cJSON *j, const cli_summary *s)
{
    cJSON_AddStringToObject(j, "model", s->model);
    cJSON_AddStringToObject(j, "prompt", s->prompt);
    cJSON_AddStringToObject(j, "negative_prompt", s->negative_prompt ? s->negative_prompt : "");
    cJSON_AddNumberToObject(j, "seed", (double)s->seed);
    cJSON_AddNumberToObject(j, "steps", s->steps);
    cJSON_AddNumberToObject(j, "cfg", s->cfg);
    cJSON_AddStringToObject(j, "solver", s->solver);
    cJSON_AddNumberToObject(j, "width", s->width);
    cJSON_AddNumberToObject(j, "height", s->height);
    cJSON_AddStringToObject(j, "dtype", s->dtype);
    if (s->text_dtype) cJSON_AddStringToObject(j, "text_dtype", s->text_dtype);
    cJSON_AddBoolToObject(j, "prompt_truncated", s->prompt_truncated);
    cJSON *t = cJSON_AddObjectToObject(j, "seconds");
    cJSON_AddNumberToObject(t, "text", s->seconds_text);
    cJSON_AddNumberToObject(t, "sampling", s->seconds_sampling);
    cJSON_AddNumberToObject(t, "decode", s->seconds_decode);
}

/* One table for both outputs, so the metadata and --json name the same settings. */
#define SETTINGS(X)                                                                              \
    X("attn_plan", attn_plan) X("quant", quant) X("solver_schedule", solver_schedule)           \
    X("solver_statistics", solver_statistics) X("zoo", zoo) X("model_schedule", model_schedule)   \
    X("clip_sample", clip_sample)

int cli_settings_meta(cli_settings *x, ditrt_meta *t, int n, int cap)
{
#define ADD(key, field) if (x->field && n < cap) t[n++] = (ditrt_meta){key, x->field};
    SETTINGS(ADD)
#undef ADD
    if (x->eta > 0 && n < cap) {
        snprintf(x->eta_text, sizeof x->eta_text, "%g", x->eta);
        t[n++] = (ditrt_meta){"eta", x->eta_text};
    }
    if (x->karras && n < cap) t[n++] = (ditrt_meta){"karras", "1"};
    return n;
}

void cli_settings_json(struct cJSON *j, const cli_settings *x)
{
#define ADD(key, field) if (x->field) cJSON_AddStringToObject(j, key, x->field);
    SETTINGS(ADD)
#undef ADD
    if (x->eta > 0) cJSON_AddNumberToObject(j, "eta", x->eta);
    if (x->karras) cJSON_AddBoolToObject(j, "karras", 1);
}

void cli_json_print(struct cJSON *j)
{
    char *txt = cJSON_Print(j);
    if (txt) printf("%s\n", txt);
    free(txt);
    cJSON_Delete(j);
}

int cli_split_list(const char *flag, const char *value, cli_list *out)
{
    *out = (cli_list){0};
    for (const char *p = value;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!len) {
            cli_list_free(out);
            return cli_usage_error("%s: empty item in \"%s\"", flag, value);
        }
        char **items = realloc(out->items, (size_t)(out->n + 1) * sizeof *items);
        char *item = items ? strndup(p, len) : NULL;
        if (!item) {
            if (items) out->items = items;
            cli_list_free(out);
            return cli_usage_error("%s: out of memory", flag);
        }
        out->items = items;
        out->items[out->n++] = item;
        if (!e) return 0;
        p = e + 1;
    }
}

void cli_list_free(cli_list *l)
{
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    *l = (cli_list){0};
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}


ditrt_status cli_fail(ditrt_error *err, ditrt_status s, const char *fmt, ...)
{
    if (err->status != DITRT_OK) return err->status; /* the first failure names the cause */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = s;
    return s;
}

int cli_list_solvers(void)
{
    for (int i = 0; i < ditrt_solver_count(); i++) printf("%-12s %s\n", ditrt_solver_alias(i), ditrt_solver_name(i));
    return 0;
}

/* Prompts files shared by the calibration/search subcommands: one prompt a line. */
ditrt_status cli_read_prompts(const char *path, cli_list *out, ditrt_error *err)
{
    *out = (cli_list){0};
    FILE *f = fopen(path, "r");
    if (!f) return cli_fail(err, DITRT_EIO, "--prompts: cannot open \"%s\"", path);
    char line[4096];
    ditrt_status s = DITRT_OK;
    while (s == DITRT_OK && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[strspn(line, " \t")]) continue; /* blank lines separate, they are not prompts */
        char **items = realloc(out->items, (size_t)(out->n + 1) * sizeof *items);
        if (!items) { s = cli_fail(err, DITRT_ENOMEM, "out of memory"); break; }
        out->items = items;
        if (!(out->items[out->n] = strdup(line))) s = cli_fail(err, DITRT_ENOMEM, "out of memory");
        else out->n++;
    }
    fclose(f);
    if (s == DITRT_OK && out->n == 0) s = cli_fail(err, DITRT_EINVAL, "--prompts: \"%s\" has no prompt lines", path);
    if (s != DITRT_OK) cli_list_free(out);
    return s;
}

/* ---- attention plans (calibrate-attn, info --attn-plan) ---- */

/* Method counts of one kind of layers (k: 0 spatial, 1 temporal) of `layers` rows. */
static void print_attn_counts(const ditrt_attn_plan_summary *s, const char *what, int k, int layers)
{
    int total = layers * s->steps;
    printf("  %s (of %d layer-steps):", what, total);
    for (int m = 0; m < DITRT_ATTN_NMETHODS; m++)
        printf(" %s %d (%.0f%%)", ditrt_attn_method_name(m), s->methods[k][m], 100.0 * s->methods[k][m] / total);
    printf("\n");
}

void cli_print_attn_cost(const ditrt_attn_plan_summary *s)
{
    if (s->temporal_layers) {
        print_attn_counts(s, "spatial layers, methods", 0, s->layers);
        print_attn_counts(s, "temporal layers, methods", 1, s->temporal_layers);
        printf("  at %d frames of %d tokens x %d, batch %d:", s->frames, s->tokens, s->channels, s->batch);
    } else {
        print_attn_counts(s, "methods", 0, s->layers);
        printf("  at %d tokens x %d, batch %d:", s->tokens, s->channels, s->batch);
    }
    printf(" attention FLOPs kept %.1f%% (%.4g of %.4g GFLOP), self-attention incl. projections %.1f%%\n",
           100 * s->attn_flops / s->attn_flops_full, s->attn_flops / 1e9, s->attn_flops_full / 1e9,
           100 * s->module_flops / s->module_flops_full);
    printf("  cache memory held between steps: peak %.1f MB (f32 residuals and outputs)\n", s->cache_peak_bytes / 1e6);
}

void cli_log_stderr(const char *line, void *user)
{
    if (user) fprintf(stderr, "%s: %s\n", (const char *)user, line);
    else fprintf(stderr, "%s\n", line);
}

const char *cli_dtype_arg(const char *v)
{
    if (!strcmp(v, "f32") || !strcmp(v, "float32")) return "f32";
    if (!strcmp(v, "bf16") || !strcmp(v, "bfloat16")) return "bf16";
    if (!strcmp(v, "f16") || !strcmp(v, "float16")) return "f16"; /* --device cuda only */
    if (!strcmp(v, "tf32")) return "tf32"; /* f32 through TF32 tensor cores: --device cuda only */
    return NULL;
}

/* ---- -m: a pipeline folder ---- */

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int has_index(const char *dir)
{
    char p[4400];
    struct stat sb;
    if (snprintf(p, sizeof p, "%s/model_index.json", dir) >= (int)sizeof p) return 0;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

ditrt_status cli_check_pipeline_dir(const char *dir, ditrt_error *err)
{
    if (!is_dir(dir)) return cli_fail(err, DITRT_EIO, "-m %s: no such folder", dir);
    if (has_index(dir)) return DITRT_OK;
    /* the way forward: what a pipeline folder holds, and the ones inside this folder */
    char inside[512] = "", sub[4200];
    size_t room = 120; /* per folder named: the message stays one line of reasonable length */
    int n = 0;
    struct dirent **names = NULL;
    int count = scandir(dir, &names, NULL, alphasort);
    for (int i = 0; i < count; i++) {
        const struct dirent *e = names[i];
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || !is_dir(sub) || !has_index(sub)) continue;
        size_t l = strlen(inside);
        if (n < 4) snprintf(inside + l, sizeof inside - l, "%s%.*s", n ? ", " : "; pipeline folders in it: ", (int)room, sub);
        else if (n == 4) snprintf(inside + l, sizeof inside - l, ", ...");
        n++;
    }
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
    char tr[4200];
    snprintf(tr, sizeof tr, "%s/config.json", dir);
    struct stat sb;
    const char *what = stat(tr, &sb) == 0 ? " (it looks like one component: use the folder above it)" : "";
    return cli_fail(err, DITRT_EINVAL,
                    "-m %s: not a pipeline folder%s: a pipeline folder (diffusers save_pretrained layout) holds "
                    "model_index.json, transformer/, vae/, text_encoder/, tokenizer/ and scheduler/%s",
                    dir, what, inside);
}

/* ---- output folders ---- */

/* The folder an output goes in: the path itself for a frame folder ("dir/"), else its dirname. */
static void output_folder(const char *path, char *out, size_t n)
{
    size_t l = strlen(path);
    if (l && path[l - 1] == '/') { snprintf(out, n, "%s", path); return; }
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, n, ".");
    else snprintf(out, n, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

/* mkdir -p of the output's folder; *top (when not NULL) gets the length of the first folder
 * created (0: none), the root of what was made. */
static ditrt_status make_folders(const char *path, char *folder, size_t n, size_t *top, ditrt_error *err)
{
    output_folder(path, folder, n);
    if (top) *top = 0;
    for (char *p = folder + 1;; p++) {
        if (*p && *p != '/') continue;
        char c = *p;
        *p = 0;
        struct stat sb;
        if (stat(folder, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
            ditrt_status s = cli_fail(err, DITRT_EIO, "%s: \"%s\" is not a folder", path, folder);
            *p = c;
            return s;
        }
        if (!is_dir(folder)) {
            if (mkdir(folder, 0777) != 0) {
                ditrt_status s = cli_fail(err, DITRT_EIO, "%s: cannot create the folder \"%s\": %s", path, folder, strerror(errno));
                *p = c;
                return s;
            }
            if (top && !*top) *top = strlen(folder);
        }
        *p = c;
        if (!c || !p[1]) break;
    }
    return DITRT_OK;
}

ditrt_status cli_output_check(const char *path, int video, ditrt_output_kind *kind, ditrt_error *err)
{
    char folder[4096];
    size_t top;
    ditrt_status s = make_folders(path, folder, sizeof folder, &top, err);
    if (s == DITRT_OK) s = ditrt_output_check(path, video, kind, err);
    /* remove what was made for the check, deepest first: nothing stays after a failed run */
    for (size_t l = strlen(folder); top && l >= top; l = strlen(folder)) {
        while (l > 1 && folder[l - 1] == '/') folder[--l] = 0;
        rmdir(folder);
        char *slash = strrchr(folder, '/');
        if (!slash || (size_t)(slash - folder) < top) break;
        *slash = 0;
    }
    return s;
}

ditrt_status cli_output_folders(const char *path, ditrt_error *err)
{
    char folder[4096];
    return make_folders(path, folder, sizeof folder, NULL, err);
}

const char *cli_device_arg(const char *v)
{
    if (!strcmp(v, "cpu") || !strcmp(v, "cuda")) return v;
    if (strncmp(v, "cuda:", 5) || !v[5] || strlen(v + 5) > 4) return NULL;
    for (const char *p = v + 5; *p; p++)
        if (*p < '0' || *p > '9') return NULL;
    return v;
}
