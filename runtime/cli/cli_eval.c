/* `ditrt eval <target>`: runs one component on reference inputs (checking against diffusers). */
#include "cli.h"
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} targets[] = {
    {"transformer", cli_eval_transformer},
    {"text-encoder", cli_eval_text_encoder},
    {"tokenizer", cli_eval_tokenizer},
    {"vae-decoder", cli_eval_vae_decoder},
    {"vae-encoder", cli_eval_vae_encoder},
    {"noise", cli_eval_noise},
};

int cli_eval_parse(int argc, char **argv, int allow_tiling, cli_eval_args *a)
{
    *a = (cli_eval_args){.dtype = "f32"};
    const char *target = argv[1];
    char target_cmd[64];
    snprintf(target_cmd, sizeof target_cmd, "eval %s", target);
    for (int i = 2; i < argc; i++) {
        int miss = 0;
        const char *v;
        if ((v = cli_flag(argc, argv, &i, "-m", &miss)) || (v = cli_flag(argc, argv, &i, "--model", &miss))) a->model = v;
        else if ((v = cli_flag(argc, argv, &i, "--in", &miss))) a->in = v;
        else if ((v = cli_flag(argc, argv, &i, "--out", &miss))) a->out = v;
        else if ((v = cli_flag(argc, argv, &i, "--dtype", &miss))) a->dtype = v;
        else if ((v = cli_flag(argc, argv, &i, "--threads", &miss))) { if (!cli_parse_int("--threads", v, 1, 1024, &a->threads)) return 0; }
        else if (allow_tiling && !strcmp(argv[i], "--tiling")) a->tiling = 1;
        else if (miss) return cli_usage_error("%s: missing value", argv[i]), 0;
        else return cli_unknown_option(target_cmd, argv[i]), 0;
    }
    if (!a->model || !a->in || !a->out)
        return cli_usage_error("eval %s: -m MODEL_DIR, --in FILE and --out FILE are required", target), 0;
    return 1;
}

int cli_eval(int argc, char **argv)
{
    char names[256] = "";
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        if (argc >= 2 && !strcmp(argv[1], targets[i].name)) return targets[i].run(argc, argv);
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", targets[i].name);
    }
    if (argc < 2) return cli_usage_error("eval: expected a target: %s", names);
    return cli_usage_error("eval: unknown target \"%s\" (expected %s)", argv[1], names);
}
