/* Error reporting: every fallible function takes a dt_err* and returns a status.
 * dt_fail() formats the message once; the first failure wins (later calls on an
 * already-failed dt_err keep the original message, which names the root cause). */
#ifndef DT_ERROR_H
#define DT_ERROR_H
#include "ditrt.h"

typedef ditrt_status dt_status;
typedef ditrt_error dt_err;

#define DT_OK DITRT_OK
#define DT_EINVAL DITRT_EINVAL
#define DT_EIO DITRT_EIO
#define DT_EFORMAT DITRT_EFORMAT
#define DT_ENOMEM DITRT_ENOMEM
#define DT_EUNSUPPORTED DITRT_EUNSUPPORTED
#define DT_EBACKEND DITRT_EBACKEND

dt_status dt_fail(dt_err *e, dt_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void dt_err_clear(dt_err *e);
/* One formatted line to a ditrt_log_fn (no newline); nothing when log is NULL. */
void dt_logf(ditrt_log_fn log, void *user, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Propagate a failure: `DT_TRY(f(x, err));` returns the status if not OK. */
#define DT_TRY(expr) do { dt_status _s = (expr); if (_s != DT_OK) return _s; } while (0)

#endif
