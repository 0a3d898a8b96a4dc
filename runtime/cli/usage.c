/* What each command accepts, in one place: `ditrt --help` (the command list), `ditrt CMD
 * --help` (that command's options with their defaults) and the unknown-option message, which
 * suggests the closest option of the command's help. The help is the list of options: an
 * option line is "  -s, --long VALUE   text" (VALUE present when the option takes one), so a
 * flag added to a parser and not here is accepted but never suggested (tests/test_cli_args.c
 * checks the other way: every option listed here is accepted by its command). The generation
 * defaults come from ditrt_gen_params_init*, so the help cannot drift from the library. */
#include "client.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Appends to buf (a fixed-size text being built). */
typedef struct {
    char *buf;
    size_t n, len;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...)
{
    if (t->len >= t->n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->buf + t->len, t->n - t->len, fmt, ap);
    va_end(ap);
    if (k > 0) t->len += (size_t)k;
}

static const char THREADS[] =
    "  --threads N               OpenMP threads (default: all cores, or OMP_NUM_THREADS); the count can\n"
    "                            change the output's last bits, so keep it fixed to reproduce a file\n";

/* txt2img and txt2vid: the same options but a few, and the library's defaults. */
static void gen_help(text *t, int video)
{
    ditrt_gen_params d;
    if (video) ditrt_gen_params_init_video(&d);
    else ditrt_gen_params_init(&d);
    const char *name = video ? "txt2vid" : "txt2img";
    add(t, "usage: ditrt %s -m MODEL_DIR -p PROMPT [options]\n", name);
    add(t, video ? "Generates videos (Latte, Open-Sora STDiT pipelines) from a prompt.\n"
                 : "Generates images (PixArt-alpha/Sigma pipelines) from a prompt.\n");
    add(t, "options:\n"
           "  -m, --model DIR           pipeline folder: model_index.json, transformer/, vae/, text_encoder/,\n"
           "                            tokenizer/, scheduler/ (a diffusers save_pretrained layout); required\n"
           "  -p, --prompt TEXT         required\n"
           "  -n, --negative-prompt TEXT  default \"%s\"\n", d.negative_prompt ? d.negative_prompt : "");
    if (video)
        add(t, "  -o, --output PATH         .mp4, .webp, a frame folder (dir/) or frame_%%03d.png; default out.mp4\n");
    else
        add(t, "  -o, --output PATH         .png, .jpg, .webp or .bmp; default out.png\n");
    add(t, "                            -o replaces an existing file once the new one is complete; without -o,\n"
           "                            out%s is never replaced (out_2%s, ...); a batch writes out-0%s, out-1%s, ...;\n"
           "                            missing folders are created (like mkdir -p); each path written is printed\n",
        video ? ".mp4" : ".png", video ? ".mp4" : ".png", video ? ".mp4" : ".png", video ? ".mp4" : ".png");
    add(t, "  -W, --width N             default: the model's native size\n"
           "  -H, --height N            default: the model's native size\n");
    if (video)
        add(t, "  --frames F                default: the model's video_length\n"
               "  --fps R                   default 8\n"
               "  --decode-chunk K          frames per VAE decode call; default: the pipeline's (all, or 14)\n");
    add(t, "  --steps N                 default %d\n"
           "  --cfg G                   guidance scale; default %g (<= 1: no guidance)\n"
           "  --seed S                  default %llu; -1: a random seed (recorded in the metadata)\n"
           "  --batch N                 outputs per prompt; default %d\n"
           "  --batch-index I           only item I of --batch N (its noise; equal to the batch's within rounding)\n"
           "  --batch-exact             with --batch-index: computes the whole batch, item I byte-identical\n",
        d.steps, d.cfg, (unsigned long long)d.seed, d.batch);
    add(t, "  --solver NAME             default: the folder's scheduler (--list-solvers lists the names)\n"
           "  --karras                  Karras sigmas (DPM-Solver++, UniPC, Euler, Heun)\n"
           "  --eta X                   DDIM's eta; default 0\n"
           "  --clip-sample on|off      clip the predicted x0 (DDIM-style solvers); default: the folder's config\n"
           "  --list-solvers            lists the solvers and exits\n"
           "  --solver-schedule FILE    a USF solver schedule (from search-solver) instead of --solver\n"
           "  --solver-statistics FILE  DPM-Solver-v3 statistics the schedule needs\n"
           "  --attn-plan FILE          a DiTFastAttn plan (from calibrate-attn); --steps must match it\n"
           "  --quant DIR               a quantization plan folder (from quantize)\n"
           "  --zoo DIR[,DIR...]        more models for --model-schedule (OMS-DPM)\n"
           "  --model-schedule FILE     which zoo member runs each step (from search-models)\n"
           "  --dtype bf16|f32|f16|tf32  default: bf16 where the CPU has it natively, else f32 (--device cuda\n"
           "                            only: f16, f16 GEMM inputs with f32 accumulation; tf32, f32 with\n"
           "                            TF32 tensor-core GEMMs)\n"
           "  --text-encoder-dtype bf16|f32|int8  default: as --dtype's default (text encoders: no f16 or tf32);\n"
           "                        int8: T5's weights in int8 (a quarter of f32's memory), f32 compute, CPU only\n"
           "  --device cpu|cuda[:N]     default cpu (cuda: builds with the CUDA backend; T5 runs there too, CLIP on the CPU)\n");
    add(t, "%s", THREADS);
    if (!video)
        add(t, "  --max-length N            prompt tokens; default: the pipeline's (120 alpha, 300 Sigma)\n"
               "  --clip-skip N             CLIP pipelines (SD, SDXL): skip N last text-encoder layers (diffusers' clip_skip)\n"
               "  --original-size WxH       SDXL micro-conditioning (diffusers' original_size); default: the output size\n"
               "  --crop-top-left TOP,LEFT  SDXL: crops_coords_top_left, pixels from the top, then the left; default 0,0\n"
               "  --target-size WxH         SDXL: target_size; default: the output size\n"
               "  --negative-original-size WxH, --negative-target-size WxH, --negative-crop-top-left TOP,LEFT\n"
               "                            SDXL: the unconditional rows' (both sizes, or neither: then the above)\n"
               "  --vae-tiling              decode in tiles (bounded memory)\n"
               "  --no-binning              no aspect-ratio bins (the size must then be a multiple of the model's\n"
               "                            patch x VAE scale, 16 for PixArt-XL-2)\n");
    add(t, "  --no-clean-caption        skip the pipeline's caption cleaning\n"
           "  --force                   run even when the memory estimate exceeds the machine's\n"
           "  -q, --quiet               no progress, warnings or paths written\n"
           "  --json                    a JSON summary on stdout (instead of the paths written)\n");
}

static void txt2img_help(text *t) { gen_help(t, 0); }
static void txt2vid_help(text *t) { gen_help(t, 1); }

static void calibrate_help(text *t)
{
    add(t, "usage: ditrt calibrate-attn -m MODEL_DIR --prompts FILE --threshold DELTA --window W --out PLAN.json [options]\n"
           "Calibrates a DiTFastAttn attention plan (for txt2img/txt2vid --attn-plan).\n"
           "options:\n"
           "  -m, --model DIR           pipeline folder; required\n"
           "  --prompts FILE            calibration prompts, one a line; required\n"
           "  -o, --out FILE            the plan written; required\n"
           "  --threshold DELTA         the error each layer may add; required\n"
           "  --window W                window attention size in tokens; required\n"
           "  --metric rel|ssim         default rel\n"
           "  --steps N                 default 20 (the plan runs at this step count only)\n"
           "  --cfg G                   default 4.5\n"
           "  --seed S                  default 0\n"
           "  -W, --width N             default: the model's native size\n"
           "  -H, --height N            default: the model's native size\n"
           "  --cfg-half cond|uncond    default cond\n"
           "  --asc-residual same|first  default same\n"
           "  --temporal-window W       video (Latte, STDiT) models: the temporal window, frames each side\n"
           "  --frames F                video (Latte, STDiT) models: default the model's video_length\n"
           "  --no-binning              no aspect-ratio bins\n"
           "  --dtype bf16|f32          default: the device's (runs on the CPU: no f16 or tf32)\n"
           "%s"
           "  -q, --quiet               no progress lines\n",
        THREADS);
}

static void quantize_help(text *t)
{
    add(t, "usage: ditrt quantize -m MODEL_DIR --prompts FILE --out DIR [options]\n"
           "Calibrates and writes a quantization plan folder (for txt2img/txt2vid --quant).\n"
           "options:\n"
           "  -m, --model DIR           pipeline folder; required\n"
           "  --prompts FILE            calibration prompts, one a line; required\n"
           "  --out DIR                 the plan folder written; required\n"
           "  --scheme w8a8|w4a8|mixed  default w8a8\n"
           "  --budget BITS             mixed only (required there): average weight bits in [4, 8]\n"
           "  --group N                 4-bit layers: group-wise scales over N input channels; default per channel\n"
           "  --sensitivity output|decoupled  mixed only: score layers on the output (default) or MixDQ's\n"
           "                            content (cross-attention) / quality groups apart\n"
           "  --fp-text-tokens I,J,...  text tokens kept in floating point by the cross-attention k|v layers\n"
           "                            (default: none; 0, CLIP's BOS, for U-Nets)\n"
           "  --alpha A                 balancing strength in [0, 1]; default 0.5\n"
           "  --no-balance              no channel balancing\n"
           "  --no-rotate               no Hadamard rotation\n"
           "  --int8-attn               the plan also runs self-attention with int8 QK^T (off by default)\n"
           "  --steps N                 default 20\n"
           "  --cfg G                   default: the pipeline's\n"
           "  --seed S                  default 0\n"
           "  -W, --width N             default: the model's native size\n"
           "  -H, --height N            default: the model's native size\n"
           "  --frames F                video (Latte, STDiT) models; default the model's video_length\n"
           "  --dtype bf16|f32          calibration compute; default: the device's (CPU: no f16 or tf32)\n"
           "%s"
           "  -q, --quiet               no progress lines\n",
        THREADS);
}

static void search_solver_help(text *t)
{
    add(t, "usage: ditrt search-solver -m MODEL_DIR --prompts FILE [--nfe N] [--out FILE] [options]\n"
           "Searches a USF solver schedule (for txt2img/txt2vid --solver-schedule).\n"
           "options:\n"
           "  -m, --model DIR           pipeline folder; required\n"
           "  --prompts FILE            calibration prompts, one a line (or -p for one prompt)\n"
           "  -p, --prompt TEXT         one calibration prompt\n"
           "  -n, --negative-prompt TEXT  default \"\"\n"
           "  -o, --out FILE            default solver.json\n"
           "  --nfe N                   model evaluations; default 8\n"
           "  --population P            default 16\n"
           "  --generations G           default 10\n"
           "  --max-order K             1-3; default 3\n"
           "  --samples K               seeds per prompt; default 2\n"
           "  --ref-steps R             the reference's steps (the folder's solver; DPM-Solver++ on its\n"
           "                            betas for a learned-variance sampler: IDDPM); default 50\n"
           "  --cfg G                   default 4.5\n"
           "  --seed S                  default 0\n"
           "  -W, --width N             default: the model's native size\n"
           "  -H, --height N            default: the model's native size\n"
           "  --dtype f32|bf16          default f32 (runs on the CPU: no f16 or tf32)\n"
           "%s"
           "  -q, --quiet               no progress lines\n",
        THREADS);
}

static void search_models_help(text *t)
{
    add(t, "usage: ditrt search-models -m MODEL --zoo DIR[,DIR...] --prompts FILE --out SCHEDULE.json\n"
           "                           (--budget SECONDS | --budget-ratio R) [options]\n"
           "Searches an OMS-DPM model schedule (for txt2img --zoo ... --model-schedule).\n"
           "options:\n"
           "  -m, --model DIR           pipeline folder (zoo member 0); required\n"
           "  --zoo DIR[,DIR...]        more model, transformer or quantization plan folders; required\n"
           "  --prompts FILE            calibration prompts, one a line; required\n"
           "  --out FILE                the schedule written; required\n"
           "  --budget SECONDS          sampling seconds per image\n"
           "  --budget-ratio R          in (0, 1]: of the all-model-0 latency\n"
           "  --latency S0,S1,...       seconds per evaluation of each member, model first; default measured\n"
           "  --steps N                 default 20\n"
           "  --cfg G                   default 4.5\n"
           "  --seed S                  default 0\n"
           "  -W, --width N             default: the model's native size\n"
           "  -H, --height N            default: the model's native size\n"
           "  --dtype bf16|f32          default: the device's (runs on the CPU: no f16 or tf32)\n"
           "%s",
        THREADS);
}

static void compare_help(text *t)
{
    add(t, "usage: ditrt compare A B [--min-psnr X] [--min-ssim Y] [--diff DIFF.png] [--json]\n"
           "PSNR and SSIM of two images or videos (.mp4, .webp, frame folders, %%d patterns).\n"
           "Exit 0: the thresholds hold; 1: one does not; 2: bad input.\n"
           "options:\n"
           "  --min-psnr X              fail (exit 1) below X dB\n"
           "  --min-ssim Y              fail (exit 1) below Y\n"
           "  --diff FILE               write the difference image\n"
           "  --json                    the result as one JSON object on stdout\n");
}

static void info_help(text *t)
{
    add(t, "usage: ditrt info -m MODEL_DIR | ditrt info [-m MODEL_DIR] --attn-plan PLAN.json\n"
           "Describes a model folder, or an attention plan's cost.\n"
           "options:\n"
           "  -m, --model DIR           pipeline or transformer folder\n"
           "  --attn-plan FILE          an attention plan (from calibrate-attn)\n");
}

static void eval_help(text *t)
{
    add(t, "usage: ditrt eval TARGET [options]   (developer tool: one component on reference inputs)\n"
           "targets: transformer, vae-decoder, vae-encoder (-m DIR --in FILE --out FILE [--dtype] [--threads]\n"
           "         [--tiling]), text-encoder (-m DIR --prompt TEXT --out FILE), tokenizer (-m DIR --prompt TEXT),\n"
           "         noise (--seed S --shape D0,D1,... --out FILE [--variant vector|scalar])\n"
           "options:\n"
           "  -m, --model DIR           pipeline or component folder\n"
           "  --in FILE                 inputs (safetensors)\n"
           "  --out FILE                outputs written (safetensors)\n"
           "  --dtype f32|bf16          default f32\n"
           "  --tiling                  vae-decoder, vae-encoder: tiled\n"
           "  --prompt TEXT             text-encoder, tokenizer\n"
           "  --negative-prompt TEXT    text-encoder\n"
           "  --max-length N            text-encoder, tokenizer\n"
           "  --no-clean                text-encoder, tokenizer: no caption cleaning\n"
           "  --seed S                  noise\n"
           "  --shape D0,D1,...         noise\n"
           "  --variant vector|scalar   noise; default vector\n"
           "%s",
        THREADS);
}

static void bench_help(text *t)
{
    add(t, "usage: ditrt bench transformer|text-encoder|attention|vae [options]   (developer tool: random weights)\n"
           "       ditrt bench load -m DIR [--rounds R] [--dtype D]   load time and peak RSS against reading the files\n"
           "options:\n"
           "  --arch NAME               transformer: pixart-xl-2 (default), latte-1, stdit-xl-2, sd15-unet or\n"
           "                            sdxl-unet; text-encoder: t5-xxl\n"
           "  --res N                   transformer, vae: image size; default 512\n"
           "  --frames F                latte-1, stdit-xl-2: frames (default: the preset's, 16)\n"
           "  --layers L                blocks run; default all\n"
           "  --iters K                 default 2\n"
           "  --dtype bf16|f32|f16|tf32  default: the device's (f16, tf32: --device cuda only); text-encoder\n"
           "                            and load of a T5 folder also int8: int8 weights, f32 compute\n"
           "                            (--text-encoder-dtype int8)\n"
           "  --quant w8a8|w4a8         transformer: quantized linears\n"
           "  --no-ab                   transformer --quant: skip the float model's alternated A/B run\n"
           "  --attn-plan FILE          transformer: an attention plan (up to 8, compared)\n"
           "  --breakdown               transformer, vae: time per op kind\n"
           "  --rounds-stdin            transformer, vae: one timed step per line read from stdin (a peer\n"
           "                            benchmark alternates with it); each round prints its own floor\n"
           "  --device cpu|cuda[:N]     transformer: default cpu\n"
           "  --tokens N[,N...]         attention: sequence lengths; default 1024,4096\n"
           "  --heads H, --head-dim D   attention: default 16 x 72 (PixArt-XL)\n"
           "  --batch B                 attention: default 1; transformer: 2 (CFG, default) or 1 (no CFG)\n"
           "  --window W                attention: DiTFastAttn band |i-j| <= W; default full\n"
           "  --kernel fused|int8       attention: the fused kernel's mode; default fused\n"
           "  --rounds R                attention: alternated rounds; default 5\n"
           "%s",
        THREADS);
}

static void version_help(text *t) { add(t, "usage: ditrt version (or ditrt --version)\nPrints the library's version.\n"); }

static const struct {
    const char *name, *summary;
    void (*help)(text *t);
} commands[] = {
    {"txt2img", "generate images from a prompt (PixArt-alpha/Sigma)", txt2img_help},
    {"txt2vid", "generate videos from a prompt (Latte, STDiT/Open-Sora)", txt2vid_help},
    {"compare", "PSNR/SSIM of two images or videos, with thresholds (regression checks)", compare_help},
    {"info", "describe a model folder or an attention plan", info_help},
    {"calibrate-attn", "make a DiTFastAttn attention plan (--attn-plan)", calibrate_help},
    {"quantize", "make a quantization plan (--quant)", quantize_help},
    {"search-solver", "search a USF solver schedule (--solver-schedule)", search_solver_help},
    {"search-models", "search an OMS-DPM model schedule (--model-schedule)", search_models_help},
    {"eval", "run one component on reference inputs (developer tool)", eval_help},
    {"bench", "time the transformer, text encoder or attention on random weights (developer tool)", bench_help},
    {"version", "print the version", version_help},
};
#define NCOMMANDS (int)(sizeof commands / sizeof *commands)

/* cmd is a command or "command target" ("eval transformer"): the command's usage. */
int cli_help_text(const char *cmd, char *buf, size_t n)
{
    size_t k = strcspn(cmd, " ");
    for (int i = 0; i < NCOMMANDS; i++)
        if (strlen(commands[i].name) == k && !strncmp(cmd, commands[i].name, k)) {
            text t = {buf, n, 0};
            buf[0] = 0;
            commands[i].help(&t);
            add(&t, "  -h, --help                this help\n");
            return 0;
        }
    return -1;
}

int cli_help(const char *cmd)
{
    char buf[8192];
    if (cli_help_text(cmd, buf, sizeof buf) != 0) return cli_usage_error("unknown command \"%s\" (ditrt --help lists them)", cmd);
    fputs(buf, stdout);
    return 0;
}

void cli_help_commands(FILE *f)
{
    fprintf(f, "usage: ditrt <command> [options]\n"
               "commands:\n");
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "`ditrt <command> --help` lists a command's options and defaults; `ditrt --version` prints the version.\n"
               "Options take their value as `--steps 20` or `--steps=20`.\n"
               "environment:\n"
               "  OMP_NUM_THREADS         the default thread count (--threads N overrides it); default: all cores\n"
               "  OMP_WAIT_POLICY         ditrt runs with passive unless this or GOMP_SPINCOUNT is set: idle threads\n"
               "                          sleep, so a busy machine costs no more than one thread would; active\n"
               "                          (spin-wait) may gain a little on a machine that runs nothing else\n"
               "  GOMP_SPINCOUNT          libgomp's spin before sleeping (setting it keeps ditrt from setting the policy)\n"
               "  ONEDNN_MAX_CPU_ISA      cap oneDNN's instruction set (AVX2: as a CPU without AVX-512 or bf16)\n"
               "  DITRT_MAX_IMAGE_PIXELS  the largest image read (compare); DITRT_MAX_VIDEO_BYTES: the largest video\n");
}

/* ---- the unknown-option message ---- */

/* The option names of a help text, and whether each takes a value: at most `cap`. */
typedef struct {
    char name[40];
    int takes_value;
} opt_name;

static int option_names(const char *help, opt_name *out, int cap)
{
    int n = 0;
    for (const char *line = help; *line && n < cap; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line)) {
        if (strncmp(line, "  -", 3)) continue;
        const char *p = line + 2;
        int first = n;
        for (;;) {
            size_t k = strcspn(p, " ,\n");
            if (*p == '-' && k < sizeof out->name && n < cap) {
                snprintf(out[n].name, sizeof out[n].name, "%.*s", (int)k, p);
                out[n++].takes_value = 0;
            }
            p += k;
            if (!strncmp(p, ", -", 3)) { p += 2; continue; }
            break;
        }
        int value = p[0] == ' ' && p[1] && p[1] != ' ' && p[1] != '\n';
        for (int i = first; i < n; i++) out[i].takes_value = value;
    }
    return n;
}

/* Edit distance (insertions, deletions, substitutions, adjacent swaps) of two short strings. */
static int distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = a[i - 1] != b[j - 1];
            int v = d[i - 1][j - 1] + c;
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v) v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *cli_closest_option(const char *cmd, const char *arg, char *buf, size_t n)
{
    char help[8192];
    opt_name names[96];
    if (cli_help_text(cmd, help, sizeof help) != 0) return NULL;
    int count = option_names(help, names, 96), best = -1, best_d = 99;
    char want[64];
    snprintf(want, sizeof want, "%.*s", (int)strcspn(arg, "="), arg);
    size_t wl = strlen(want);
    for (int i = 0; i < count; i++) {
        int d = distance(want, names[i].name);
        /* a unique-looking prefix ("--neg") is as good as one typo */
        if (wl >= 4 && !strncmp(names[i].name, want, wl) && d > 1) d = 1;
        if (d < best_d) best_d = d, best = i;
    }
    /* close enough to be the same option: one edit in a short name, up to three in a long one;
     * a one-letter option only by its case (-w for -W): any other letter is one edit from all */
    int limit = wl <= 2 ? 0 : wl <= 5 ? 1 : wl <= 10 ? 2 : 3;
    if (wl <= 2)
        for (int i = 0; i < count && best_d; i++)
            if (!strcasecmp(names[i].name, want)) best_d = 0, best = i;
    if (best < 0 || best_d > limit) return NULL;
    snprintf(buf, n, "%s", names[best].name);
    return buf;
}

/* 1 when `name` (without a value) is an option of cmd that takes no value. */
static int is_switch(const char *cmd, const char *name)
{
    char help[8192];
    opt_name names[96];
    if (cli_help_text(cmd, help, sizeof help) != 0) return 0;
    int count = option_names(help, names, 96);
    for (int i = 0; i < count; i++)
        if (!strcmp(names[i].name, name)) return !names[i].takes_value;
    return 0;
}

int cli_unknown_option(const char *cmd, const char *arg)
{
    char name[64], best[64];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
    if (arg[0] != '-')
        return cli_usage_error("%s: unexpected argument \"%s\" (a value goes after its option; quote a prompt with spaces; "
                               "ditrt %s --help lists the options)", cmd, arg, cmd);
    if (strchr(arg, '=') && is_switch(cmd, name)) return cli_usage_error("%s: %s takes no value, got \"%s\"", cmd, name, arg);
    if (cli_closest_option(cmd, arg, best, sizeof best) && !strcmp(best, name))
        /* an option of the command's help that this parser (e.g. another bench target) lacks */
        return cli_usage_error("%s: %s does not apply here (ditrt %s --help says where it goes)", cmd, name, cmd);
    if (cli_closest_option(cmd, arg, best, sizeof best))
        return cli_usage_error("%s: unknown option \"%s\" (did you mean %s?)", cmd, arg, best);
    return cli_usage_error("%s: unknown option \"%s\" (ditrt %s --help lists the options)", cmd, arg, cmd);
}

int cli_wants_help(const char *cmd, int argc, char **argv)
{
    char help[8192];
    opt_name names[96];
    int count = cli_help_text(cmd, help, sizeof help) == 0 ? option_names(help, names, 96) : 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
        for (int k = 0; k < count; k++)
            if (names[k].takes_value && !strcmp(argv[i], names[k].name)) { i++; break; } /* its value follows */
    }
    return 0;
}

const char *cli_closest_command(const char *name, char *buf, size_t n)
{
    int best = -1, best_d = 99;
    for (int i = 0; i < NCOMMANDS; i++) {
        int d = distance(name, commands[i].name);
        if (d < best_d) best_d = d, best = i;
    }
    if (best < 0 || best_d > (strlen(name) <= 5 ? 1 : 2)) return NULL;
    snprintf(buf, n, "%s", commands[best].name);
    return buf;
}
