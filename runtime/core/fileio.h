/* Output files: written to a temp file in the target's folder and renamed into place (a
 * failed write leaves any existing file untouched), or straight into the path when it exists
 * and is not a regular file (a device such as /dev/null or /dev/full, or a pipe: renaming over
 * one would replace the device node). Errors keep the errno of the first failure, so a full
 * disk says "No space left on device" (not whatever a later close or unlink left in errno). */
#ifndef DT_FILEIO_H
#define DT_FILEIO_H
#include <stdio.h>
#include "error.h"

typedef struct {
    FILE *f;
    int direct; /* writing into path itself */
    int err;    /* errno of the first failure, 0 if none */
    char path[4096], tmp[4200];
} dt_outfile;

/* Opens for writing (mode "w" or "wb"); fails naming path. */
dt_status dt_outfile_open(dt_outfile *o, const char *path, const char *mode, dt_err *err);
/* Flushes, closes and renames into place; `ok` 0 says a write failed (errno from that write
 * is kept: call this right after it). Fails with "<path>: write failed: <strerror>". */
dt_status dt_outfile_close(dt_outfile *o, int ok, dt_err *err);

#endif
