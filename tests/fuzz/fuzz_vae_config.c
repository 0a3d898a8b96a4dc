/* VAE configs (AutoencoderKL config.json). */
#include "fuzz_util.h"
#include "runtime/models/vae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write("config.json", data, size);
    vae_config c;
    dt_err e = {0};
    vae_config_load(fz_folder(), &c, &e);
    return 0;
}
