/* `ditrt eval tokenizer`: prints the input_ids row (padded to --max-length) that the PixArt
 * pipeline feeds its text encoder for a prompt, space-separated on one line. */
#include "cli.h"
#include "runtime/text/tokenizer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_eval_tokenizer(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL;
    int max_length = 0, no_clean = 0;
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) model = v;
        else if ((v = cli_flag(argc, argv, &i, "--prompt", &miss))) prompt = v;
        else if ((v = cli_flag(argc, argv, &i, "--max-length", &miss))) { if (!cli_parse_int("--max-length", v, 2, 4096, &max_length)) return 2; }
        else if (!strcmp(argv[i], "--no-clean")) no_clean = 1;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("eval tokenizer", argv[i]);
    }
    if (!model || !prompt) return cli_usage_error("eval tokenizer: -m MODEL_DIR and --prompt TEXT are required");
    dt_err err = {0};
    char dir[4096];
    dt_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    dt_status s = max_length ? DT_OK : cli_text_max_length(model, &max_length, &err);
    if (s == DT_OK) s = dt_tokenizer_find(model, dir, sizeof dir, &err);
    if (s == DT_OK) s = dt_tokenizer_load(dir, &tok, &err);
    if (s == DT_OK && !(ids = malloc((size_t)max_length * sizeof *ids))) s = dt_fail(&err, DT_ENOMEM, "out of memory");
    if (s == DT_OK) s = cli_tokenize_prompt(tok, "prompt", prompt, !no_clean, max_length, ids, NULL, &err);
    for (int i = 0; s == DT_OK && i < max_length; i++) printf("%d%c", (int)ids[i], i + 1 < max_length ? ' ' : '\n');
    free(ids);
    dt_tokenizer_free(tok);
    return s == DT_OK ? 0 : cli_die(&err);
}
