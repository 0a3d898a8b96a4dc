/* The layers around the DiT blocks that PixArt, Latte and STDiT share, as diffusers builds them
 * (STDiT: the same layers under Open-Sora's names, dit_names): PatchEmbed's conv (as a GEMM
 * over patchified input), AdaLayerNormSingle (timestep embedder + SiLU + linear to the six
 * block modulations), PixArtAlphaTextProjection, and the final adaLN-modulated LayerNorm
 * before proj_out; for the video models (Latte, STDiT) also the per-frame patch embedding,
 * the final layer back to [B, C, F, H, W], the input checks and the sin-cos table rows.
 *
 * The conditioning layers (one row per sample) are loaded in f32 whatever the compute
 * dtype: their outputs scale every block, and rounding them nearly doubles the bf16 error. */
#ifndef DT_DIT_COMMON_H
#define DT_DIT_COMMON_H
#include "runtime/core/arena.h"
#include "layers.h"
#include "denoiser.h"

/* Bounds on the sizes a transformer config.json may give (README: limits), checked before any
 * buffer is sized from them; every weight's shape is then checked against the file before
 * its buffer is allocated (dt_weights_expect). Far above the published models (PixArt-XL-2
 * and Latte-1: 28 layers, 16 heads of 72, sample_size 128, 4096 caption channels). */
#define DIT_MAX_LAYERS 256
#define DIT_MAX_HEADS 256
#define DIT_MAX_HEAD_DIM 1024
#define DIT_MAX_INNER 16384        /* heads * head_dim */
#define DIT_MAX_SAMPLE 1024        /* latent pixels a side */
#define DIT_MAX_PATCH 16
#define DIT_MAX_CHANNELS 1024      /* in_channels, out_channels */
#define DIT_MAX_CAPTION 65536      /* caption_channels */
#define DIT_MAX_FRAMES 1024        /* video_length */
#define DIT_TPROJ_DIM 256 /* Timesteps(num_channels=256) in PixArtAlphaCombinedTimestepSizeEmbeddings */

/* f32 views [r, c] and [a, b, c] of backend memory, and an f32 [r, c] arena tensor: what the
 * DiT files build their calls from. */
static inline dt_tensor dit_t2d(void *data, int64_t r, int64_t c)
{
    int64_t s[2] = {r, c};
    return dt_tensor_view(data, DT_F32, 2, s);
}
static inline dt_tensor dit_t3d(void *data, int64_t a, int64_t b, int64_t c)
{
    int64_t s[3] = {a, b, c};
    return dt_tensor_view(data, DT_F32, 3, s);
}
static inline dt_status dit_alloc2(dt_arena *a, dt_tensor *t, int64_t r, int64_t c, dt_err *err)
{
    int64_t s[2] = {r, c};
    return dt_arena_tensor(a, t, DT_F32, 2, s, err);
}

/* The checkpoint names of these layers: diffusers' (PixArt, Latte) or Open-Sora's (STDiT). */
typedef struct {
    const char *patch;            /* the patch embedding's conv */
    int patch_rank;               /* its weight: 4, Conv2d [C, in, p, p]; 5, Conv3d [C, in, 1, p, p] */
    const char *t1, *t2, *adaln;  /* timestep embedder linear_1 (SiLU), linear_2; C -> 6C */
    const char *cap1, *cap2;      /* caption projection linear_1 (GELU-tanh), linear_2 */
} dit_names;
extern const dit_names dit_diffusers_names;

/* The patch embedding's conv flattened to the [C, in*p*p] GEMM weight. */
dt_status dit_patch_embed_load(dt_backend *be, dt_weight_source *src, const dit_names *nm, int in_ch, int p, int C,
                               int m_hint, dt_linear **out, dt_err *err);

typedef struct {
    dt_linear *t1, *t2; /* adaln_single.emb.timestep_embedder.linear_1/2 */
    dt_linear *adaln;   /* adaln_single.linear: C -> 6C */
} dit_adaln_single;

dt_status dit_adaln_load(dt_backend *be, dt_weight_source *src, const dit_names *nm, int C, dit_adaln_single *a,
                         dt_err *err);
void dit_adaln_free(dt_backend *be, dit_adaln_single *a);
/* emb [B, C] (arena) = timestep_embedder(sinusoid(t)), diffusers' "embedded_timestep"
 * before any micro-conditions are added. */
dt_status dit_timestep_embed(dt_backend *be, const dit_adaln_single *a, const float *t, int B, int C,
                             dt_arena *ar, dt_stage *st, dt_tensor *emb, dt_err *err);
/* proj [n, 256] (device) = diffusers' get_timestep_embedding of t[n] (flip_sin_to_cos), computed
 * on the host in st and written to proj. */
dt_status dit_sinusoid(dt_backend *be, const float *t, int n, dt_stage *st, dt_tensor *proj, dt_err *err);
/* t6 [B, 6C] (arena) = linear(SiLU(emb)). */
dt_status dit_adaln_out(dt_backend *be, const dit_adaln_single *a, const dt_tensor *emb, int C,
                        dt_arena *ar, dt_tensor *t6, dt_err *err);

typedef struct { dt_linear *l1, *l2; } dit_caption_proj; /* caption_projection.linear_1 (GELU-tanh), linear_2 */
dt_status dit_caption_load(dt_backend *be, dt_weight_source *src, const dit_names *nm, int caption_channels, int C,
                           int m_hint, dt_dtype dtype, dit_caption_proj *c, dt_err *err);
void dit_caption_free(dt_backend *be, dit_caption_proj *c);
/* ctx [rows, C] (caller's) from ehs [rows, caption_channels]. */
dt_status dit_caption_forward(dt_backend *be, const dit_caption_proj *c, const dt_tensor *ehs, int C,
                              dt_arena *ar, dt_tensor *ctx, dt_err *err);

/* A position table [h·w, C] computed on the host by fill (ctx: the model's) and kept in
 * backend memory until (h, w) changes. */
typedef struct {
    float *dev; /* [h·w, C] */
    int h, w;
} dit_pos_cache;
typedef void (*dit_table_fill)(const void *ctx, int C, int h, int w, float *host);
dt_status dit_table_get(dt_backend *be, int C, int h, int w, dit_table_fill fill, const void *ctx, dit_pos_cache *pc,
                        dt_err *err);
/* diffusers' get_2d_sincos_pos_embed for an h x w patch grid, through dit_table_get. */
dt_status dit_pos_embed(dt_backend *be, int C, int h, int w, int base_size, float interpolation_scale, dit_pos_cache *pc,
                        dt_err *err);
void dit_pos_free(dt_backend *be, dit_pos_cache *pc);

/* diffusers' additive caption key mask, (1 - mask) * -10000, [B*reps, T] with each
 * sample's row repeated `reps` times (Latte's frames); NULL mask gives NULL. */
dt_status dit_key_bias(dt_backend *be, const float *mask, int B, int reps, int T, dt_arena *ar, dt_stage *st, float **out,
                       dt_err *err);

/* Final layer on S sequences of N tokens: LN(x)·(1 + table[1] + emb) + table[0] + emb, then
 * proj_out into y [S*N, p*p*out]. emb [S, C] rows (one per sequence); xn [S*N, C] and
 * mod [S, 2C] are scratch. */
typedef struct {
    const float *table;      /* scale_shift_table [2, C] (backend memory) */
    const float *emb;        /* [S, C] */
    int S, N, C;
    float eps;
    dt_tensor *x, *xn, *y;   /* [S*N, C], [S*N, C], [S*N, po] */
    float *mod;              /* [S, 2C] */
    dt_linear *proj_out;
} dit_final_args;
dt_status dit_final_layer(dt_backend *be, const dit_final_args *f, dt_err *err);

/* Video latents: [B, C, F, H, W] <-> [B·F, C, H, W] (to_frames 1: into frames), one 4-D strided
 * copy per sample; HW = H·W. */
dt_status dit_frames_layout(dt_backend *be, float *video, float *frames, int B, int C, int F, int64_t HW, int64_t W,
                            int to_frames, dt_err *err);
/* x [B, A, Bn, C] -> y [B, Bn, A, C]: frame order <-> token order of a video's tokens. */
dt_status dit_swap_axes(dt_backend *be, const float *x, float *y, int B, int A, int Bn, int C, dt_err *err);

/* ---- video DiTs (Latte, STDiT): the layers around their blocks ---- */

/* One row of a 1-D sin-cos table (get_1d_sincos_pos_embed_from_grid, float64 then f32):
 * row[0..dim/2) = sin(pos·w_k), row[dim/2..dim) = cos(pos·w_k), w_k = 10000^(-k/(dim/2)). */
void dit_sincos_row(int dim, double pos, float *row);

/* A video forward's sizes: hidden_states [B, ·, F, H, W] in p x p patches, T caption tokens. */
typedef struct {
    int B, F, H, W, p;
    int h, w, N;  /* patches a side, N = h·w a frame */
    int S, T;     /* S = B·F frames */
    int64_t M;    /* S·N tokens */
} dit_video_dims;
dit_video_dims dit_video_dims_of(const dt_denoiser_inputs *in, int p);

/* A video forward's inputs and output against info (in/out channels, 1..max_frames frames,
 * patch multiples, caption channels); frames_field names max_frames' config field. */
dt_status dit_video_check(const dt_denoiser_info *info, const char *frames_field, const dt_denoiser_inputs *in,
                          const dt_tensor *out, dt_err *err);

/* x [M, C] (arena) = patch(patchify(each frame of hs)) + pos [N, C] on every frame: PatchEmbed
 * with a (1, p, p) kernel, the frames as images. */
dt_status dit_video_embed(dt_backend *be, const dit_video_dims *d, const dt_tensor *hs, dt_linear *patch, int C,
                          const float *pos, dt_arena *a, dt_tensor *x, dt_err *err);

/* The final layer f (its y is this function's) over the tokens, then unpatchify per frame into
 * out [B, out_channels, F, H, W]. */
dt_status dit_video_final(dt_backend *be, const dit_video_dims *d, const dit_final_args *f, dt_arena *a, dt_tensor *out,
                          dt_err *err);

#endif
