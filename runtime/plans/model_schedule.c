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
        if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble || v->valuedouble < 0 || v->valuedouble >= zoo_size)
            s = dt_fail(err, DT_EFORMAT, "%s: \"models\" step %d: expected a zoo index in 0..%d", path, i, zoo_size - 1);
        else ids[i] = (int)v->valuedouble;
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
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) { free(txt); return dt_fail(err, DT_EIO, "%s: cannot create: %s", path, strerror(errno)); }
    size_t len = strlen(txt);
    int ok = write(fd, txt, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
    ok = (close(fd) == 0) && ok;
    free(txt);
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dt_fail(err, DT_EIO, "%s: write failed: %s", path, strerror(e));
    }
    return DT_OK;
}

void dt_model_schedule_free(dt_model_schedule *s)
{
    free(s->ids);
    *s = (dt_model_schedule){0};
}
