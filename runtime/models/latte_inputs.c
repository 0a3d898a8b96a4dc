/* Reads the inputs of one Latte forward from a safetensors file named as in the diffusers
 * call (see latte.h). */
#include "latte.h"
#include <stdlib.h>

void latte_inputs_free(latte_input_file *x)
{
    free(x->hs); free(x->ehs); free(x->t); free(x->mask);
    *x = (latte_input_file){0};
}

/* A 0-d timestep is broadcast over the batch, as diffusers does. */
static dt_status read_timestep(const dt_safetensors *st, const char *file, int64_t B, latte_input_file *x, dt_err *err)
{
    int64_t tshape[1] = {B};
    const dt_st_entry *e = dt_st_find(st, "timestep");
    if (!(e && e->ndim == 0)) return dt_st_read_input(st, file, "timestep", 1, tshape, 0, &x->tt, &x->t, err);
    DT_TRY(dt_st_read_input(st, file, "timestep", 0, tshape, 0, &x->tt, &x->t, err));
    float v = x->t[0];
    free(x->t);
    x->t = malloc((size_t)B * sizeof(float));
    if (!x->t) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int64_t i = 0; i < B; i++) x->t[i] = v;
    return DT_OK;
}

dt_status latte_inputs_load(const char *file, const latte_config *c, latte_input_file *x, dt_err *err)
{
    dt_safetensors *st;
    DT_TRY(dt_st_open(file, &st, err));
    int64_t hs_shape[5] = {-1, c->in_channels, -1, -1, -1};
    dt_status s = dt_st_read_input(st, file, "hidden_states", 5, hs_shape, 0, &x->ths, &x->hs, err);
    int64_t B = s == DT_OK ? x->ths.shape[0] : 0;
    int64_t ehs_shape[3] = {B, -1, c->caption_channels};
    if (s == DT_OK) s = dt_st_read_input(st, file, "encoder_hidden_states", 3, ehs_shape, 0, &x->tehs, &x->ehs, err);
    int64_t T = s == DT_OK ? x->tehs.shape[1] : 0, mshape[2] = {B, T};
    if (s == DT_OK) s = read_timestep(st, file, B, x, err);
    if (s == DT_OK) s = dt_st_read_input(st, file, "encoder_attention_mask", 2, mshape, 1, &x->tmask, &x->mask, err);
    for (int64_t i = 0; s == DT_OK && x->mask && i < B * T; i++)
        if (x->mask[i] != 0.0f && x->mask[i] != 1.0f)
            s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"encoder_attention_mask\" must hold only 0 and 1", file);
    if (s == DT_OK && (x->ths.shape[2] < 1 || x->ths.shape[2] > c->video_length))
        s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"hidden_states\" has %lld frames, the model takes 1 to %d (video_length)",
                    file, (long long)x->ths.shape[2], c->video_length);
    if (s == DT_OK && x->ths.shape[3] % c->patch_size + x->ths.shape[4] % c->patch_size)
        s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"hidden_states\": height and width must be multiples of patch_size %d", file, c->patch_size);
    dt_st_close(st);
    x->in = (latte_inputs){.hidden_states = &x->ths, .encoder_hidden_states = &x->tehs, .timestep = x->t,
                           .encoder_attention_mask = x->mask};
    if (s != DT_OK) latte_inputs_free(x);
    return s;
}
