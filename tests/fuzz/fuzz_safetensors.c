/* safetensors: dt_st_open on the bytes, then every tensor found, looked up by name and
 * converted to f32 (what loading a model does); the header's promises are checked. */
#include "fuzz_util.h"
#include "runtime/core/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fz_write("t.safetensors", data, size);
    dt_safetensors *st;
    dt_err e = {0};
    if (dt_st_open(p, &st, &e) != DT_OK) return 0;
    for (int i = 0; i < dt_st_count(st); i++) {
        const dt_st_entry *en = dt_st_at(st, i);
        uint64_t numel = 1;
        for (int k = 0; k < en->ndim; k++)
            if (en->shape[k] < 0 || __builtin_mul_overflow(numel, (uint64_t)en->shape[k], &numel)) abort();
        if (numel * dt_dtype_size(en->dtype) != en->nbytes || dt_st_find(st, en->name) != en) abort();
        float *buf = malloc(numel ? numel * sizeof(float) : 1);
        if (!buf) abort();
        dt_st_read_f32(en, buf);
        free(buf);
    }
    dt_st_close(st);
    return 0;
}
