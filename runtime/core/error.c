#include "error.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

dt_status dt_fail(dt_err *e, dt_status s, const char *fmt, ...)
{
    if (!e || e->status != DT_OK) return e ? e->status : s;
    e->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    /* one line: a message never carries a newline */
    for (char *p = e->msg; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
    return s;
}

void dt_err_clear(dt_err *e)
{
    e->status = DT_OK;
    e->msg[0] = 0;
}

const char *ditrt_status_name(ditrt_status s)
{
    switch (s) {
    case DITRT_OK: return "ok";
    case DITRT_EINVAL: return "invalid argument";
    case DITRT_EIO: return "i/o error";
    case DITRT_EFORMAT: return "format error";
    case DITRT_ENOMEM: return "out of memory";
    case DITRT_EUNSUPPORTED: return "unsupported";
    case DITRT_EBACKEND: return "backend error";
    case DITRT_ECANCELLED: return "cancelled";
    }
    return "unknown";
}

/* The header this library was built with: DITRT_VERSION (tests/test_pipeline.c checks the two agree). */
const char *ditrt_version(void) { return DITRT_VERSION; }

void dt_logf(ditrt_log_fn log, void *user, const char *fmt, ...)
{
    if (!log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log(line, user);
}
