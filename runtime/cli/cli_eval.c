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
