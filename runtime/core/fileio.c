#include "fileio.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

dt_status dt_outfile_open(dt_outfile *o, const char *path, const char *mode, dt_err *err)
{
    *o = (dt_outfile){0};
    if (snprintf(o->path, sizeof o->path, "%s", path) >= (int)sizeof o->path)
        return dt_fail(err, DT_EINVAL, "%s: path too long", path);
    struct stat sb;
    o->direct = stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode);
    if (o->direct) {
        o->f = fopen(path, mode);
        if (!o->f) return dt_fail(err, DT_EIO, "%s: cannot open for writing: %s", path, strerror(errno));
        return DT_OK;
    }
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) return dt_fail(err, DT_EIO, "%s: cannot create: %s", path, strerror(errno));
    fchmod(fd, 0644); /* mkstemp makes 0600 */
    o->f = fdopen(fd, mode);
    if (!o->f) {
        int e = errno;
        close(fd);
        unlink(o->tmp);
        return dt_fail(err, DT_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    return DT_OK;
}

dt_status dt_outfile_close(dt_outfile *o, int ok, dt_err *err)
{
    if (!ok) o->err = errno ? errno : EIO;
    if (fflush(o->f) != 0 && !o->err) o->err = errno;
    if (ferror(o->f) && !o->err) o->err = EIO;
    if (fclose(o->f) != 0 && !o->err) o->err = errno;
    o->f = NULL;
    if (!o->direct && !o->err && rename(o->tmp, o->path) != 0) o->err = errno;
    if (!o->direct && o->err) unlink(o->tmp);
    return o->err ? dt_fail(err, DT_EIO, "%s: write failed: %s", o->path, strerror(o->err)) : DT_OK;
}
