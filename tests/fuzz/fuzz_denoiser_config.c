/* Transformer configs: a folder whose config.json is the input, through the denoiser registry
 * (dt_denoiser_describe: the class by _class_name, then that class's own config reader). */
#include "fuzz_util.h"
#include "runtime/models/denoiser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write("config.json", data, size);
    dt_denoiser_info info;
    char head[2048], tail[2048];
    dt_err e = {0};
    dt_denoiser_describe(fz_folder(), &info, head, tail, sizeof head, &e);
    return 0;
}
