/* USF solver schedules: the input as the schedule JSON over PixArt's DPM-Solver++ scheduler
 * folder (tests/fixtures/pixart-pipe-tiny/scheduler), loaded and its timesteps set. */
#include "fuzz_util.h"
#include "schedulers/scheduler.h"

static const char scheduler_config[] =
    "{\"_class_name\": \"DPMSolverMultistepScheduler\", \"algorithm_type\": \"dpmsolver++\", \"beta_end\": 0.02,"
    " \"beta_schedule\": \"linear\", \"beta_start\": 0.0001, \"lambda_min_clipped\": -Infinity,"
    " \"lower_order_final\": true, \"num_train_timesteps\": 1000, \"prediction_type\": \"epsilon\","
    " \"solver_order\": 2, \"solver_type\": \"midpoint\", \"steps_offset\": 0, \"timestep_spacing\": \"linspace\","
    " \"trained_betas\": null, \"use_karras_sigmas\": false}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_write("scheduler_config.json", scheduler_config, sizeof scheduler_config - 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fz_write("schedule.json", data, size);
    dt_scheduler *s;
    dt_err e = {0};
    if (dt_scheduler_load_usf(fz_folder(), p, NULL, &s, &e) != DT_OK) return 0;
    dt_err_clear(&e);
    dt_scheduler_set_timesteps(s, 10, &e);
    dt_scheduler_free(s);
    return 0;
}
