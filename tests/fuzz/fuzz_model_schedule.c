/* OMS-DPM model schedules, against a zoo of 3 members. */
#include "fuzz_util.h"
#include "runtime/plans/model_schedule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fz_write("schedule.json", data, size);
    dt_model_schedule s;
    dt_err e = {0};
    if (dt_model_schedule_load(p, 3, &s, &e) == DT_OK) dt_model_schedule_free(&s);
    return 0;
}
