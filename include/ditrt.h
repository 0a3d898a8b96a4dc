/* ditrt — diffusion sampler runtime: the public C API.
 *
 * Contract: every call returns a ditrt_status; on failure the handle's (or the
 * caller's) ditrt_error holds a one-line message naming what was wrong. The library
 * never calls exit()/abort() and keeps no global mutable state. */
#ifndef DITRT_H
#define DITRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DITRT_OK = 0,
    DITRT_EINVAL,       /* bad argument or configuration value */
    DITRT_EIO,          /* file missing, unreadable, unwritable */
    DITRT_EFORMAT,      /* malformed file contents */
    DITRT_ENOMEM,       /* allocation failed */
    DITRT_EUNSUPPORTED, /* valid but not implemented here */
    DITRT_EBACKEND,     /* compute library reported a failure */
    DITRT_ECANCELLED
} ditrt_status;

#define DITRT_ERRMSG_MAX 512

/* Status plus a message; the message is empty when status is DITRT_OK. */
typedef struct {
    ditrt_status status;
    char msg[DITRT_ERRMSG_MAX];
} ditrt_error;

const char *ditrt_status_name(ditrt_status s);
const char *ditrt_version(void);

#ifdef __cplusplus
}
#endif
#endif
