/* `ditrt eval tokenizer`: prints the input_ids row (padded to --max-length) that a pipeline
 * feeds its text encoder for a prompt, space-separated on one line. T5 (PixArt): after the
 * pipeline's lower().strip() (--no-clean skips it), --max-length defaulting to the pipeline's
 * max_sequence_length. CLIP (Stable Diffusion): the prompt as given, --max-length defaulting to
 * the tokenizer's model_max_length (77). --tokenizer NAME picks the component (tokenizer_2). */
#include "cli.h"
#include "runtime/text/text_tokenizer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_eval_tokenizer(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *component = "tokenizer";
    int max_length = 0, no_clean = 0;
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) model = v;
        else if ((v = cli_flag(argc, argv, &i, "--prompt", &miss))) prompt = v;
        else if ((v = cli_flag(argc, argv, &i, "--tokenizer", &miss))) component = v;
        else if ((v = cli_flag(argc, argv, &i, "--max-length", &miss))) { if (!cli_parse_int("--max-length", v, 2, 4096, &max_length)) return 2; }
        else if (!strcmp(argv[i], "--no-clean")) no_clean = 1;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]);
        else return cli_unknown_option("eval tokenizer", argv[i]);
    }
    if (!model || !prompt) return cli_usage_error("eval tokenizer: -m MODEL_DIR and --prompt TEXT are required");
    if (strncmp(component, "tokenizer", 9)) return cli_usage_error("eval tokenizer: --tokenizer must name a tokenizer component (tokenizer, tokenizer_2)");
    dt_err err = {0};
    char dir[4096];
    dt_text_tokenizer *tok = NULL;
    int32_t *ids = NULL, fixed = max_length;
    dt_status s = max_length ? DT_OK : cli_text_max_length(model, &max_length, &err);
    if (s == DT_OK) s = dt_text_tokenizer_find(model, component, dir, sizeof dir, &err);
    if (s == DT_OK) s = dt_text_tokenizer_load(dir, &tok, &err);
    int clip = s == DT_OK && dt_text_tokenizer_kind(tok) == DT_TOKENIZER_CLIP;
    if (clip && !fixed) max_length = dt_text_tokenizer_model_max_length(tok) ? dt_text_tokenizer_model_max_length(tok) : 77;
    if (s == DT_OK && !(ids = malloc((size_t)max_length * sizeof *ids))) s = dt_fail(&err, DT_ENOMEM, "out of memory");
    if (s == DT_OK) s = cli_tokenize_prompt(tok, "prompt", prompt, !no_clean && !clip, max_length, ids, NULL, &err);
    for (int i = 0; s == DT_OK && i < max_length; i++) printf("%d%c", (int)ids[i], i + 1 < max_length ? ' ' : '\n');
    free(ids);
    dt_text_tokenizer_free(tok);
    return s == DT_OK ? 0 : cli_die(&err);
}
