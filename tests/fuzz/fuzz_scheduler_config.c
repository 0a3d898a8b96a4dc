/* Scheduler configs (scheduler_config.json): loaded, then the timesteps of a few step counts. */
#include "fuzz_util.h"
#include "schedulers/scheduler.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write("scheduler_config.json", data, size);
    dt_scheduler *s;
    dt_err e = {0};
    if (dt_scheduler_load(fz_folder(), &s, &e) != DT_OK) return 0;
    static const int steps[] = {1, 2, 7, 20};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        dt_err_clear(&e);
        dt_scheduler_set_timesteps(s, steps[i], &e);
    }
    dt_scheduler_free(s);
    return 0;
}
