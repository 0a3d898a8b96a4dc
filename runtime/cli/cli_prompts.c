/* Prompts files shared by the calibration/search subcommands: one prompt a line. */
#include "cli.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dt_status cli_read_prompts(const char *path, cli_list *out, dt_err *err)
{
    *out = (cli_list){0};
    FILE *f = fopen(path, "r");
    if (!f) return dt_fail(err, DT_EIO, "--prompts: cannot open \"%s\"", path);
    char line[4096];
    dt_status s = DT_OK;
    while (s == DT_OK && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[strspn(line, " \t")]) continue; /* blank lines separate, they are not prompts */
        char **items = realloc(out->items, (size_t)(out->n + 1) * sizeof *items);
        if (!items) { s = dt_fail(err, DT_ENOMEM, "out of memory"); break; }
        out->items = items;
        if (!(out->items[out->n] = strdup(line))) s = dt_fail(err, DT_ENOMEM, "out of memory");
        else out->n++;
    }
    fclose(f);
    if (s == DT_OK && out->n == 0) s = dt_fail(err, DT_EINVAL, "--prompts: \"%s\" has no prompt lines", path);
    if (s != DT_OK) cli_list_free(out);
    return s;
}
