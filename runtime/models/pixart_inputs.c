/* Reads the inputs of one PixArt forward from a safetensors file named as in the
 * diffusers call (see pixart.h). */
#include "pixart.h"
#include <stdlib.h>

void pixart_inputs_free(pixart_input_file *x)
{
    free(x->hs); free(x->ehs); free(x->t); free(x->mask); free(x->res); free(x->ar);
    *x = (pixart_input_file){0};
}

dt_status pixart_inputs_load(const char *file, const pixart_config *c, pixart_input_file *x, dt_err *err)
{
    dt_safetensors *st;
    DT_TRY(dt_st_open(file, &st, err));
    int64_t hs_shape[4] = {-1, c->in_channels, -1, -1};
    dt_status s = dt_st_read_input(st, file, "hidden_states", 4, hs_shape, 0, &x->ths, &x->hs, err);
    int64_t B = s == DT_OK ? x->ths.shape[0] : 0;
    int64_t ehs_shape[3] = {B, -1, c->caption_channels};
    if (s == DT_OK) s = dt_st_read_input(st, file, "encoder_hidden_states", 3, ehs_shape, 0, &x->tehs, &x->ehs, err);
    int64_t T = s == DT_OK ? x->tehs.shape[1] : 0;
    int64_t tshape[1] = {B}, mshape[2] = {B, T}, rshape[2] = {B, 2}, ashape[2] = {B, 1};
    if (s == DT_OK) {
        /* a 0-d timestep is broadcast over the batch, as diffusers does */
        const dt_st_entry *e = dt_st_find(st, "timestep");
        if (e && e->ndim == 0) {
            float v;
            s = dt_st_read_input(st, file, "timestep", 0, tshape, 0, &x->tt, &x->t, err);
            if (s == DT_OK) {
                v = x->t[0];
                free(x->t);
                x->t = malloc((size_t)B * sizeof(float));
                if (!x->t) s = dt_fail(err, DT_ENOMEM, "out of memory");
                for (int64_t i = 0; s == DT_OK && i < B; i++) x->t[i] = v;
            }
        } else s = dt_st_read_input(st, file, "timestep", 1, tshape, 0, &x->tt, &x->t, err);
    }
    if (s == DT_OK) s = dt_st_read_input(st, file, "encoder_attention_mask", 2, mshape, 1, &x->tmask, &x->mask, err);
    for (int64_t i = 0; s == DT_OK && x->mask && i < B * T; i++)
        if (x->mask[i] != 0.0f && x->mask[i] != 1.0f)
            s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"encoder_attention_mask\" must hold only 0 and 1", file);
    int need = c->use_additional_conditions;
    if (s == DT_OK) s = dt_st_read_input(st, file, "resolution", 2, rshape, !need, &x->tres, &x->res, err);
    if (s == DT_OK) s = dt_st_read_input(st, file, "aspect_ratio", 2, ashape, !need, &x->tar, &x->ar, err);
    if (s == DT_OK && x->ths.shape[2] % c->patch_size + x->ths.shape[3] % c->patch_size)
        s = dt_fail(err, DT_EFORMAT, "%s: input tensor \"hidden_states\": height and width must be multiples of patch_size %d", file, c->patch_size);
    dt_st_close(st);
    x->in = (pixart_inputs){.hidden_states = &x->ths, .encoder_hidden_states = &x->tehs, .timestep = x->t,
                            .encoder_attention_mask = x->mask, .resolution = x->res, .aspect_ratio = x->ar};
    if (s != DT_OK) pixart_inputs_free(x);
    return s;
}

