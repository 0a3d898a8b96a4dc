/* Quantization plans: a folder with the input as plan.json and a valid one-tensor
 * weights.safetensors (so the parse gets as far as opening the weights). */
#include "fuzz_util.h"
#include "runtime/plans/quant_plan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char hdr[] = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    uint8_t file[8 + sizeof hdr - 1 + 4] = {0};
    uint64_t n = sizeof hdr - 1;
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)(n >> (8 * i));
    memcpy(file + 8, hdr, n);
    fz_write("weights.safetensors", file, sizeof file);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write("plan.json", data, size);
    dt_qplan *p;
    dt_err e = {0};
    if (dt_qplan_load(fz_folder(), &p, &e) == DT_OK) dt_qplan_free(p);
    return 0;
}
