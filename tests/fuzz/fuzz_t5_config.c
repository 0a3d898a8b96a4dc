/* T5 text-encoder configs (T5Config config.json). */
#include "fuzz_util.h"
#include "runtime/models/t5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write("config.json", data, size);
    t5_config c;
    dt_err e = {0};
    t5_config_load(fz_folder(), &c, &e);
    return 0;
}
