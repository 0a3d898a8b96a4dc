#include "runtime/core/fileio.h"
#include "model_schedule.h"
#include "runtime/core/json.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

dt_status dt_model_schedule_load(const char *path, int zoo_size, dt_model_schedule *out, dt_err *err)
{
    *out = (dt_model_schedule){0};
    cJSON *j;
    DT_TRY(dt_json_load(path, &j, err));
    char fmt[64];
    dt_status s = dt_json_str(j, path, "format", "ditrt-model-schedule", fmt, sizeof fmt, err);
    if (s == DT_OK && strcmp(fmt, "ditrt-model-schedule"))
        s = dt_fail(err, DT_EFORMAT, "%s: field \"format\" is \"%s\", expected \"ditrt-model-schedule\"", path, fmt);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "models");
    int n = cJSON_IsArray(m) ? cJSON_GetArraySize(m) : 0;
    if (s == DT_OK && n < 1) s = dt_fail(err, DT_EFORMAT, "%s: field \"models\" must be a non-empty list of zoo indices", path);
    int *ids = s == DT_OK ? malloc((size_t)n * sizeof *ids) : NULL;
    if (s == DT_OK && !ids) s = dt_fail(err, DT_ENOMEM, "out of memory");
    for (int i = 0; s == DT_OK && i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(m, i);
        if (!dt_json_is_int_in(v, 0, zoo_size - 1, &ids[i]))
            s = dt_fail(err, DT_EFORMAT, "%s: \"models\" step %d: expected a zoo index in 0..%d", path, i, zoo_size - 1);
    }
    cJSON_Delete(j);
    if (s != DT_OK) { free(ids); return s; }
    *out = (dt_model_schedule){n, ids};
    return DT_OK;
}

dt_status dt_model_schedule_save(const char *path, const dt_model_schedule *s, const char *const *zoo, int n_zoo,
                                 dt_err *err)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "ditrt-model-schedule");
    cJSON *z = cJSON_AddArrayToObject(j, "zoo");
    for (int i = 0; i < n_zoo; i++) cJSON_AddItemToArray(z, cJSON_CreateString(zoo[i]));
    cJSON *m = cJSON_AddArrayToObject(j, "models");
    for (int i = 0; i < s->n; i++) cJSON_AddItemToArray(m, cJSON_CreateNumber(s->ids[i]));
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_outfile o;
    dt_status st = dt_outfile_open(&o, path, "w", err);
    if (st == DT_OK) {
        int ok = fputs(txt, o.f) >= 0 && fputc('\n', o.f) != EOF;
        st = dt_outfile_close(&o, ok, err);
    }
    free(txt);
    return st;
}

void dt_model_schedule_free(dt_model_schedule *s)
{
    free(s->ids);
    *s = (dt_model_schedule){0};
}
