/* The AUTOMATIC1111-style `parameters` text of a generated image, the one PNG-info tools
 * (the web UI's PNG Info tab, civitai, image browsers) read:
 *
 *   <prompt>
 *   Negative prompt: <negative>                       (only when there is one)
 *   Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 4.5, Seed: 3, Size: 512x512,
 *   Model: demo-pixart, Eta: 0.5, Batch size: 3, Batch pos: 1, Version: ditrt 0.2.0
 *
 * with the web UI's field names and its quoting (a value holding ',', ':' or a newline is
 * written as a JSON string). Samplers the web UI names get its name (ddim -> DDIM, euler_a ->
 * Euler a, dpm++2m -> DPM++ 2M ...), the others their diffusers class. */
#include "client.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The web UI's name of a diffusers solver class, or the class itself. */
static const char *sampler_name(const char *cls)
{
    static const char *const map[][2] = {
        {"DPMSolverMultistepScheduler", "DPM++ 2M"}, {"DPMSolverSinglestepScheduler", "DPM++ 2S"},
        {"UniPCMultistepScheduler", "UniPC"},        {"DDIMScheduler", "DDIM"},
        {"EulerDiscreteScheduler", "Euler"},         {"EulerAncestralDiscreteScheduler", "Euler a"},
        {"HeunDiscreteScheduler", "Heun"},           {"LCMScheduler", "LCM"},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(cls, map[i][0])) return map[i][1];
    return cls;
}

typedef struct {
    char *s;
    size_t n, cap;
    int fail;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->fail) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *t = realloc(b->s, cap);
        if (!t) { b->fail = 1; return; }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* The web UI's quote(): as is unless it holds ',', ':' or a newline, else a JSON string. */
static void put_value(sbuf *b, const char *v)
{
    if (!strpbrk(v, ",:\n")) { puts_(b, v); return; }
    put(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') snprintf(esc, sizeof esc, "\\%c", *p);
        else if (*p == '\n') snprintf(esc, sizeof esc, "\\n");
        else if ((unsigned char)*p < 0x20) snprintf(esc, sizeof esc, "\\u%04x", (unsigned char)*p);
        else { put(b, p, 1); continue; }
        puts_(b, esc);
    }
    put(b, "\"", 1);
}

static void field(sbuf *b, const char *key, const char *value)
{
    if (b->n && b->s[b->n - 1] != '\n') puts_(b, ", ");
    puts_(b, key);
    puts_(b, ": ");
    put_value(b, value);
}

/* The model's name: the folder's last component. */
static void model_name(const char *dir, char *out, size_t n)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(out, n, "%.*s", (int)(len - start), dir + start);
}

char *cli_infotext(const cli_infotext_fields *f)
{
    sbuf b = {0};
    char num[64], model[256];
    puts_(&b, f->prompt);
    puts_(&b, "\n");
    if (f->negative_prompt && *f->negative_prompt) {
        puts_(&b, "Negative prompt: ");
        puts_(&b, f->negative_prompt);
        puts_(&b, "\n");
    }
    snprintf(num, sizeof num, "%d", f->steps);
    field(&b, "Steps", num);
    field(&b, "Sampler", sampler_name(f->solver));
    if (f->karras) field(&b, "Schedule type", "Karras");
    snprintf(num, sizeof num, "%g", f->cfg);
    field(&b, "CFG scale", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)f->seed);
    field(&b, "Seed", num);
    snprintf(num, sizeof num, "%dx%d", f->width, f->height);
    field(&b, "Size", num);
    model_name(f->model, model, sizeof model);
    field(&b, "Model", model);
    if (f->eta > 0) {
        snprintf(num, sizeof num, "%g", f->eta);
        field(&b, "Eta", num);
    }
    if (f->batch > 1) {
        snprintf(num, sizeof num, "%d", f->batch);
        field(&b, "Batch size", num);
        snprintf(num, sizeof num, "%d", f->batch_index);
        field(&b, "Batch pos", num);
    }
    field(&b, "Version", f->version);
    if (b.fail) { free(b.s); return NULL; }
    return b.s;
}
