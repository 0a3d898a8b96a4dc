#include "modeldir.h"
#include "runtime/core/json.h"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int is_file(const char *p) { struct stat s; return stat(p, &s) == 0 && S_ISREG(s.st_mode); }
static int is_dir(const char *p) { struct stat s; return stat(p, &s) == 0 && S_ISDIR(s.st_mode); }

dt_status dt_model_component_dir(const char *model_dir, const char *component, char *out, size_t n, dt_err *err)
{
    char idx[4096], p[4096];
    if (!is_dir(model_dir)) return dt_fail(err, DT_EIO, "%s: model folder not found", model_dir);
    snprintf(idx, sizeof idx, "%s/model_index.json", model_dir);
    if (is_file(idx)) {
        cJSON *j;
        DT_TRY(dt_json_load(idx, &j, err));
        int listed = cJSON_GetObjectItemCaseSensitive(j, component) != NULL;
        cJSON_Delete(j);
        if (!listed) return dt_fail(err, DT_EFORMAT, "%s: no \"%s\" component listed", idx, component);
        /* the folder's own files (config.json, scheduler_config.json, spiece.model) are
         * checked by whoever reads them */
        snprintf(p, sizeof p, "%s/%s", model_dir, component);
        if (!is_dir(p)) return dt_fail(err, DT_EIO, "%s: missing folder (component \"%s\" of %s)", p, component, model_dir);
        if ((size_t)snprintf(out, n, "%s/%s", model_dir, component) >= n) return dt_fail(err, DT_EINVAL, "%s: path too long", model_dir);
        return DT_OK;
    }
    snprintf(p, sizeof p, "%s/config.json", model_dir);
    if (!is_file(p)) return dt_fail(err, DT_EIO, "%s: neither model_index.json nor config.json found", model_dir);
    if ((size_t)snprintf(out, n, "%s", model_dir) >= n) return dt_fail(err, DT_EINVAL, "%s: path too long", model_dir);
    return DT_OK;
}

int dt_model_lists(const char *model_dir, const char *component)
{
    char idx[4096];
    dt_err e = {0};
    cJSON *j;
    snprintf(idx, sizeof idx, "%s/model_index.json", model_dir);
    if (!is_file(idx) || dt_json_load(idx, &j, &e) != DT_OK) return 0;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, component);
    int listed = c && !cJSON_IsNull(c) && !(cJSON_IsArray(c) && cJSON_IsNull(cJSON_GetArrayItem(c, 0)));
    cJSON_Delete(j);
    return listed;
}

dt_status dt_model_denoiser_dir(const char *model_dir, char *out, size_t n, dt_err *err)
{
    const char *name = !dt_model_lists(model_dir, "transformer") && dt_model_lists(model_dir, "unet") ? "unet" : "transformer";
    return dt_model_component_dir(model_dir, name, out, n, err);
}
