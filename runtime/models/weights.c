#include "weights.h"
#include <stdlib.h>

static dt_status read_file(dt_weight_source *s, const char *name, int ndim, const int64_t *shape,
                           float *dst, dt_err *err)
{
    const dt_st_entry *e;
    DT_TRY(dt_st_expect(s->st, name, ndim, shape, &e, err));
    dt_st_read_f32(e, dst);
    dt_st_release(e); /* converted: the mapped file pages need not stay resident */
    s->file_bytes += e->nbytes;
    return DT_OK;
}

static dt_status read_random(dt_weight_source *s, const char *name, int ndim, const int64_t *shape,
                             float *dst, dt_err *err)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    for (int64_t i = 0; i < n; i++) {
        /* xorshift64*: cheap, deterministic, good enough for benchmark weights */
        s->rng ^= s->rng >> 12; s->rng ^= s->rng << 25; s->rng ^= s->rng >> 27;
        uint64_t r = s->rng * 0x2545F4914F6CDD1DULL;
        dst[i] = s->scale * (2.0f * (float)((r >> 40) * (1.0 / 16777216.0)) - 1.0f);
    }
    return DT_OK;
}

dt_status dt_weights_expect(const dt_weight_source *s, const char *name, int ndim, const int64_t *shape, dt_err *err)
{
    const dt_st_entry *e;
    return s->st ? dt_st_expect(s->st, name, ndim, shape, &e, err) : DT_OK;
}

dt_weight_source dt_weights_from_file(const dt_safetensors *st)
{
    return (dt_weight_source){.read = read_file, .st = st};
}

dt_weight_source dt_weights_random(uint64_t seed, float scale)
{
    return (dt_weight_source){.read = read_random, .rng = seed ? seed : 0x9E3779B97F4A7C15ULL, .scale = scale};
}

float *dt_weights_stage(dt_weight_source *s, size_t bytes)
{
    if (bytes > s->stage_bytes) {
        free(s->stage);
        s->stage = malloc(bytes);
        s->stage_bytes = s->stage ? bytes : 0;
    }
    return s->stage;
}

void dt_weights_close(dt_weight_source *s)
{
    free(s->stage);
    s->stage = NULL;
    s->stage_bytes = 0;
}
