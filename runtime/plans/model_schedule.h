/* OMS-DPM model schedules: a pipeline holds a zoo of denoisers that share the VAE, the text
 * encoder and the noise schedule (zoo member 0 is the pipeline's own transformer), and a
 * schedule names the member that runs each model evaluation.
 *
 * File: {"format": "ditrt-model-schedule", "zoo": ["dir", ...] (informational),
 *        "models": [m_0, m_1, ..., m_{n-1}]} with one zoo index per evaluation. */
#ifndef DT_MODEL_SCHEDULE_H
#define DT_MODEL_SCHEDULE_H
#include "runtime/core/error.h"

typedef struct {
    int n;    /* evaluations */
    int *ids; /* zoo index per evaluation */
} dt_model_schedule;

/* Reads a schedule; every index must be < zoo_size. Errors name the file, field and step. */
dt_status dt_model_schedule_load(const char *path, int zoo_size, dt_model_schedule *out, dt_err *err);
/* Writes one atomically; zoo names (n_zoo of them) are recorded for the reader. */
dt_status dt_model_schedule_save(const char *path, const dt_model_schedule *s, const char *const *zoo, int n_zoo,
                                 dt_err *err);
void dt_model_schedule_free(dt_model_schedule *s);

#endif
