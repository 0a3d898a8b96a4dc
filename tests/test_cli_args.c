/* The command line's arguments and messages (issue 21, items 6 and 7): `--flag=value` is
 * `--flag value`; `--version`; `CMD --help` prints that command's options with the library's
 * defaults, and every option it lists is one the command accepts; an unknown option or
 * command suggests the closest; -m that is not a pipeline folder says what one holds; -o in
 * a missing folder creates it (and a failed run leaves none); an attention plan's step count
 * and --karras on a solver without it name the way forward. */
#include "testutil.h"
#include <sys/stat.h>

#define PIPE "tests/fixtures/pixart-pipe-tiny"
#define GEN "./ditrt txt2img -m " PIPE " -p 'a red cube' --steps 1 -W 64 -H 64 --threads 1 -q"

static char tmp[256];
static int setup(void **state) { (void)state; tu_tmpdir(tmp, sizeof tmp); return 0; }
static int teardown(void **state) { (void)state; tu_rmtree(tmp); return 0; }

/* Expects exit code rc and one stderr line holding every needle (NULL-terminated). */
static void expect_msg(const char *cmd, int rc, ...)
{
    char err[8192];
    int got = tu_run(tmp, cmd, 0, err, sizeof err);
    if (got != rc) fail_msg("exit %d (expected %d): %s\n%s", got, rc, cmd, err);
    if (tu_count_lines(err) != 1) fail_msg("expected one line on stderr: %s\n%s", cmd, err);
    va_list ap;
    va_start(ap, rc);
    for (const char *n; (n = va_arg(ap, const char *));)
        if (!strstr(err, n)) fail_msg("stderr lacks \"%s\": %s\n%s", n, cmd, err);
    va_end(ap);
}

static int same_file(const char *a, const char *b)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* --flag=value is --flag value, for values, short flags and every command's parser. */
static void test_flag_equals(void **state)
{
    (void)state;
    char cmd[2048], a[300], b[300], err[4096];
    snprintf(a, sizeof a, "%s/a.png", tmp);
    snprintf(b, sizeof b, "%s/b.png", tmp);
    snprintf(cmd, sizeof cmd, GEN " --seed 3 --cfg 2 --dtype f32 -o %s", a);
    assert_int_equal(tu_run(tmp, cmd, 0, err, sizeof err), 0);
    snprintf(cmd, sizeof cmd, "./ditrt txt2img --model=" PIPE " --prompt='a red cube' --steps=1 -W=64 --height=64 "
                              "--threads=1 -q --seed=3 --cfg=2 --dtype=f32 --output=%s", b);
    if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("--flag=value run failed: %s", err);
    if (!same_file(a, b)) fail_msg("--flag=value made a different image than --flag value");
    /* the value is checked as usual, and an empty one is a value */
    expect_msg(GEN " --steps=zero", 2, "--steps", "\"zero\"", NULL);
    expect_msg(GEN " --steps=", 2, "--steps", "\"\"", NULL);
    /* other parsers: compare, quantize */
    snprintf(cmd, sizeof cmd, "./ditrt compare %s %s --min-psnr=99", a, b);
    assert_int_equal(tu_run(tmp, cmd, 0, err, sizeof err), 0);
    expect_msg("./ditrt quantize -m " PIPE " --prompts=/no/prompts --out=x --scheme=w3a8", 2, "--scheme", NULL);
    /* a switch takes no value */
    expect_msg(GEN " --quiet=1", 2, "--quiet takes no value", NULL);
}

static void test_version(void **state)
{
    (void)state;
    char out[256], want[64];
    snprintf(want, sizeof want, "ditrt %s\n", ditrt_version());
    const char *cmds[] = {"./ditrt --version", "./ditrt version"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tu_run(tmp, cmds[i], 1, out, sizeof out), 0);
        assert_string_equal(out, want);
    }
}

static const char *const commands[] = {"txt2img", "txt2vid", "compare", "info", "calibrate-attn", "quantize",
                                       "search-solver", "search-models", "eval", "bench", "version"};
#define NCMD (int)(sizeof commands / sizeof *commands)

/* `ditrt CMD --help`: that command's usage only, with the library's defaults; `ditrt --help`
 * lists every command. */
static void test_command_help(void **state)
{
    (void)state;
    char cmd[512], out[16384], line[128];
    for (int i = 0; i < NCMD; i++) {
        snprintf(cmd, sizeof cmd, "./ditrt %s --help", commands[i]);
        assert_int_equal(tu_run(tmp, cmd, 1, out, sizeof out), 0);
        snprintf(line, sizeof line, "usage: ditrt %s", commands[i]);
        if (strncmp(out, line, strlen(line))) fail_msg("%s printed: %s", cmd, out);
        for (int k = 0; k < NCMD; k++) { /* no other command's usage */
            snprintf(line, sizeof line, "usage: ditrt %s ", commands[k]);
            if (k != i && strstr(out, line)) fail_msg("%s prints %s's usage too", cmd, commands[k]);
        }
    }
    ditrt_gen_params img, vid;
    ditrt_gen_params_init(&img);
    ditrt_gen_params_init_video(&vid);
    const struct { const char *cmd; int steps; float cfg; } gens[] = {{"txt2img", img.steps, img.cfg}, {"txt2vid", vid.steps, vid.cfg}};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "./ditrt %s -h", gens[i].cmd);
        assert_int_equal(tu_run(tmp, cmd, 1, out, sizeof out), 0);
        snprintf(line, sizeof line, "--steps N                 default %d\n", gens[i].steps);
        if (!strstr(out, line)) fail_msg("%s: no \"%s\" in %s", cmd, line, out);
        snprintf(line, sizeof line, "default %g ", gens[i].cfg);
        if (!strstr(out, line)) fail_msg("%s: no cfg default \"%s\" in %s", cmd, line, out);
    }
    /* --help anywhere an option may stand; as the value of -p it is a prompt */
    assert_int_equal(tu_run(tmp, "./ditrt txt2img -m /nowhere --steps 3 --help", 1, out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: ditrt txt2img"));
    expect_msg("./ditrt txt2img -p --help", 2, "-m", NULL);
    assert_int_equal(tu_run(tmp, "./ditrt --help", 1, out, sizeof out), 0);
    for (int i = 0; i < NCMD; i++) {
        snprintf(line, sizeof line, "\n  %s ", commands[i]);
        if (!strstr(out, line)) fail_msg("ditrt --help lacks %s: %s", commands[i], out);
    }
    char err[4096];
    assert_int_equal(tu_run(tmp, "./ditrt", 0, err, sizeof err), 2); /* nothing asked: the list on stderr, exit 2 */
    assert_non_null(strstr(err, "commands:"));
}

/* The option lines of a help text: names (up to 2 per line) and whether a value follows. */
typedef struct {
    char names[2][48];
    int n, value;
} opt_line;

static int help_options(const char *help, opt_line *out, int cap)
{
    int count = 0;
    for (const char *l = help; l && *l && count < cap; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, "  -", 3)) continue;
        opt_line *o = &out[count];
        o->n = 0;
        const char *p = l + 2;
        for (;;) {
            size_t k = strcspn(p, " ,\n");
            if (o->n < 2 && k < 48) snprintf(o->names[o->n++], 48, "%.*s", (int)k, p);
            p += k;
            if (strncmp(p, ", -", 3)) break;
            p += 2;
        }
        o->value = p[0] == ' ' && p[1] != ' ' && p[1] != '\n';
        if (strcmp(o->names[0], "-h") && strcmp(o->names[0], "--list-solvers")) count++; /* these act before parsing */
    }
    return count;
}

/* Every option a user command's help lists is accepted by its parser. One run gives them all
 * (value "2" where the help shows one) and a bogus option last: the error must be that one.
 * An option whose value "2" is refused (named in the error, not as unknown) is dropped and
 * the rest run again. (eval and bench list their targets' options together; they are
 * developer tools and left out.) */
static void test_help_lists_accepted_options(void **state)
{
    (void)state;
    const char *user[] = {"txt2img", "txt2vid", "compare", "info", "calibrate-attn", "quantize", "search-solver", "search-models"};
    static char cmd[8192], help[16384], err[8192];
    opt_line opts[64];
    for (size_t c = 0; c < sizeof user / sizeof *user; c++) {
        snprintf(cmd, sizeof cmd, "./ditrt %s --help", user[c]);
        assert_int_equal(tu_run(tmp, cmd, 1, help, sizeof help), 0);
        int n = help_options(help, opts, 64);
        assert_true(n >= 2);
        for (int tries = 0;; tries++) {
            if (tries > 30) fail_msg("%s: too many retries", user[c]);
            int len = snprintf(cmd, sizeof cmd, "./ditrt %s", user[c]);
            for (int i = 0; i < n; i++)
                for (int k = 0; k < opts[i].n; k++)
                    len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s%s", opts[i].names[k], opts[i].value ? " 2" : "");
            snprintf(cmd + len, sizeof cmd - (size_t)len, " --zz-not-an-option");
            tu_run(tmp, cmd, 0, err, sizeof err);
            if (strstr(err, "unknown option \"--zz-not-an-option\"")) break; /* every listed option parsed */
            int found = -1;
            for (int i = 0; i < n && found < 0; i++)
                for (int k = 0; k < opts[i].n; k++) {
                    char unknown[80], named[64];
                    snprintf(unknown, sizeof unknown, "unknown option \"%.47s\"", opts[i].names[k]);
                    if (strstr(err, unknown)) fail_msg("%s --help lists %s, which it refuses: %s", user[c], opts[i].names[k], err);
                    snprintf(named, sizeof named, "%.47s:", opts[i].names[k]);
                    if (strstr(err, named)) found = i;
                }
            if (found < 0) fail_msg("%s: an error naming no listed option: %s\n%s", user[c], cmd, err);
            opts[found] = opts[--n]; /* its value was refused, the option itself was known */
        }
    }
}

/* Unknown options and commands: the closest known one, for typos and prefixes. */
static void test_suggestions(void **state)
{
    (void)state;
    expect_msg("./ditrt txt2img --step 3", 2, "unknown option \"--step\" (did you mean --steps?)", NULL);
    expect_msg("./ditrt txt2vid --frame 3", 2, "did you mean --frames?", NULL);
    expect_msg("./ditrt txt2img --neg x", 2, "did you mean --negative-prompt?", NULL);
    expect_msg("./ditrt txt2img --step=3", 2, "did you mean --steps?", NULL);
    expect_msg("./ditrt compare --min-psrn 3", 2, "did you mean --min-psnr?", NULL);
    expect_msg("./ditrt search-models --zooo a", 2, "did you mean --zoo?", NULL);
    expect_msg("./ditrt quantize --shceme w8a8", 2, "did you mean --scheme?", NULL);
    expect_msg("./ditrt calibrate-attn --treshold 1", 2, "did you mean --threshold?", NULL);
    expect_msg("./ditrt search-solver --nef 4", 2, "did you mean --nfe?", NULL);
    expect_msg("./ditrt info --attn-plna x", 2, "did you mean --attn-plan?", NULL);
    expect_msg("./ditrt eval transformer --inn x", 2, "eval transformer: unknown option \"--inn\" (did you mean --in?)", NULL);
    expect_msg("./ditrt txt2img -w 64", 2, "unknown option \"-w\" (did you mean -W?)", NULL);
    expect_msg("./ditrt txt2img -x 64", 2, "unknown option \"-x\" (ditrt txt2img --help lists the options)", NULL);
    expect_msg("./ditrt txt2img --frobnicate", 2, "unknown option \"--frobnicate\" (ditrt txt2img --help lists the options)", NULL);
    expect_msg("./ditrt txt2img a cat", 2, "unexpected argument \"a\"", NULL);
    expect_msg("./ditrt txt2im", 2, "unknown command \"txt2im\" (did you mean txt2img?)", NULL);
    expect_msg("./ditrt frobnicate", 2, "unknown command \"frobnicate\" (ditrt --help lists them)", NULL);
}

/* -m that is not a pipeline folder: what one holds, and the pipeline folders inside it. */
static void test_not_a_pipeline(void **state)
{
    (void)state;
    expect_msg("./ditrt txt2img -m tests/fixtures -p x", 2, "-m tests/fixtures: not a pipeline folder",
               "model_index.json, transformer/, vae/, text_encoder/, tokenizer/ and scheduler/",
               "pipeline folders in it: tests/fixtures/", NULL);
    expect_msg("./ditrt txt2vid -m " PIPE "/transformer -p x", 2, "not a pipeline folder (it looks like one component", NULL);
    expect_msg("./ditrt txt2img -m /no/such/model -p x", 2, "-m /no/such/model: no such folder", NULL);
    expect_msg("./ditrt quantize -m tests/fixtures --prompts p --out o", 2, "not a pipeline folder", NULL);
    expect_msg("./ditrt calibrate-attn -m tests/fixtures --prompts p --out o --threshold 1 --window 1", 2, "not a pipeline folder", NULL);
    expect_msg("./ditrt search-solver -m tests/fixtures --prompts p", 2, "not a pipeline folder", NULL);
}

/* -o in a missing folder: the folders are made when the output is written; a run that fails
 * leaves none behind. */
static void test_output_folders(void **state)
{
    (void)state;
    char cmd[2048], path[600], err[4096];
    snprintf(cmd, sizeof cmd, GEN " --batch 2 -o %s/new/sub/a.png", tmp);
    if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("%s: %s", cmd, err);
    snprintf(path, sizeof path, "%s/new/sub/a-1.png", tmp);
    assert_true(tu_exists(path));
    snprintf(cmd, sizeof cmd, GEN " -o %s/gone/x.gif", tmp);
    assert_int_not_equal(tu_run(tmp, cmd, 0, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/gone", tmp);
    if (tu_exists(path)) fail_msg("a failed run left the folder %s", path);
    snprintf(cmd, sizeof cmd, "./ditrt txt2vid -m tests/fixtures/latte-pipe-tiny -p x --steps 1 --frames 2 --threads 1 -q "
                              "-o %s/frames/clip/", tmp);
    if (tu_run(tmp, cmd, 0, err, sizeof err)) fail_msg("%s: %s", cmd, err);
    snprintf(path, sizeof path, "%s/frames/clip/frame_001.png", tmp);
    assert_true(tu_exists(path));
    /* a file where a folder should be: named */
    snprintf(path, sizeof path, "%s/file", tmp);
    tu_write_file(path, "x", 1);
    snprintf(cmd, sizeof cmd, GEN " -o %s/file/a.png", tmp);
    expect_msg(cmd, 1, "file/a.png", NULL);
}

/* An attention plan made for other steps suggests --steps; --karras on a solver without it
 * lists the solvers that have it (by --solver name). */
static void test_plan_and_solver_messages(void **state)
{
    (void)state;
    char cmd[1024], err[4096];
    snprintf(cmd, sizeof cmd, "./ditrt txt2img -m assets/demo-pixart -p x --threads 1 --steps 4 -o %s/p.png "
                              "--attn-plan configs/attn/demo-pixart-d0.05.json", tmp);
    expect_msg(cmd, 1, "attention plan: made for 20 steps, this run has 4 (run it with --steps 20", NULL);
    tu_run(tmp, cmd, 0, err, sizeof err);
    assert_null(strstr(err, "step 4:"));
    snprintf(cmd, sizeof cmd, GEN " --solver lcm --karras -o %s/k.png", tmp);
    expect_msg(cmd, 1, "LCMScheduler has no Karras sigmas",
               "--karras works with: dpm++2m (DPMSolverMultistepScheduler), dpm++2s (DPMSolverSinglestepScheduler), "
               "unipc (UniPCMultistepScheduler), euler (EulerDiscreteScheduler), heun (HeunDiscreteScheduler)", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag_equals),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_command_help),
        cmocka_unit_test(test_help_lists_accepted_options),
        cmocka_unit_test(test_suggestions),
        cmocka_unit_test(test_not_a_pipeline),
        cmocka_unit_test(test_output_folders),
        cmocka_unit_test(test_plan_and_solver_messages),
    };
    return cmocka_run_group_tests_name("cli_args", tests, setup, teardown);
}
