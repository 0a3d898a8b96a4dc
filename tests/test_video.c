/* Video output: MP4 (H.264), animated WebP and PNG sequences written and decoded back
 * (libavformat/libavcodec, libwebpdemux, libpng) with frame count, size, rate, content and
 * metadata checked; bad output paths; atomic writes (no temp files left, nothing on failure). */
#include "testutil.h"
#include "runtime/io/image.h"
#include "runtime/io/video.h"
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define FR 5
#define W 64
#define H 48

/* smooth moving gradients: every frame differs, and lossy codecs keep them well */
static uint8_t *make_frames(void)
{
    uint8_t *v = malloc((size_t)FR * W * H * 3);
    assert_non_null(v);
    for (int f = 0; f < FR; f++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *p = v + (((size_t)f * H + y) * W + x) * 3;
                p[0] = (uint8_t)(x * 3 + f * 20);
                p[1] = (uint8_t)(y * 4 + 10);
                p[2] = (uint8_t)(128 + 60 * sin((x + y + f * 6) * 0.1));
            }
    return v;
}

static const dt_image_text meta[] = {{"prompt", "a fox in the snow"}, {"seed", "7"}};

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void roundtrip(const char *dir, const char *name, double fps, double min_psnr, int has_rate, int has_meta)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *frames = make_frames();
    dt_video_frames v = {FR, W, H, fps, frames, meta, 2};
    dt_err err = {0};
    if (dt_video_write(path, &v, &err) != DT_OK) fail_msg("%s: %s", name, err.msg);
    dt_video r;
    if (dt_video_read(path, &r, &err) != DT_OK) fail_msg("%s: %s", name, err.msg);
    assert_int_equal(r.frames, FR);
    assert_int_equal(r.width, W);
    assert_int_equal(r.height, H);
    if (has_rate && fabs(r.fps - fps) > 1e-3 * fps) fail_msg("%s: rate %g, expected %g", name, r.fps, fps);
    if (has_meta && (!r.comment || !strstr(r.comment, "prompt: a fox in the snow"))) fail_msg("%s: metadata missing", name);
    double worst = INFINITY;
    for (int f = 0; f < FR; f++) {
        double p = dt_image_psnr(r.rgb + (size_t)f * W * H * 3, frames + (size_t)f * W * H * 3, W, H);
        worst = p < worst ? p : worst;
    }
    printf("  %-14s %d frames %dx%d @ %g fps, worst PSNR %.1f dB\n", name, r.frames, r.width, r.height, r.fps, worst);
    if (!(worst >= min_psnr)) fail_msg("%s: frame PSNR %.1f < %.0f", name, worst, min_psnr);
    dt_video_free(&r);
    free(frames);
}

static void test_formats(void **state)
{
    (void)state;
    char dir[256], sub[300];
    tu_tmpdir(dir, sizeof dir);
    roundtrip(dir, "clip.mp4", 8, 27, 1, 1); /* 4:2:0 chroma costs the colour detail */
    roundtrip(dir, "clip.webp", 8, 26, 1, 1); /* lossy, quality 90 */
    roundtrip(dir, "clip.MP4", 12.5, 27, 1, 0);
    roundtrip(dir, "f_%03d.png", 8, INFINITY, 0, 0);
    snprintf(sub, sizeof sub, "%s/frames", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    roundtrip(dir, "frames/", 8, INFINITY, 0, 0);
    /* the PNG frames carry the parameters */
    char p[400];
    snprintf(p, sizeof p, "%s/f_004.png", dir);
    assert_int_equal(access(p, R_OK), 0);
    /* everything renamed into place: 3 videos + 5 pattern frames + the frames folder */
    assert_int_equal(count_entries(dir), 3 + FR + 1);
    assert_int_equal(count_entries(sub), FR);
    tu_rmtree(dir);
}

static void test_bad_paths(void **state)
{
    (void)state;
    char dir[256], p[400];
    tu_tmpdir(dir, sizeof dir);
    dt_video_kind k;
    dt_err err = {0};
    const char *bad[] = {"%s/clip.avi", "%s/missing/clip.mp4", "%s/missing/", "%s/f_%%d_%%d.png", "%s/f_%%s.png", "%s/f_%%03d.jpg"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(p, sizeof p, bad[i], dir);
        dt_err_clear(&err);
        if (dt_video_check_writable(p, &k, &err) == DT_OK) fail_msg("%s was accepted", p);
        assert_non_null(strstr(err.msg, dir));
        assert_null(strchr(err.msg, '\n'));
    }
    snprintf(p, sizeof p, "%s/ok.webp", dir);
    assert_int_equal(dt_video_check_writable(p, &k, &err), DT_OK);
    assert_int_equal(k, DT_VIDEO_WEBP);
    /* odd size for yuv420p: fails, and leaves nothing behind */
    uint8_t px[3 * 3 * 3] = {0};
    dt_video_frames v = {1, 3, 3, 8, px, NULL, 0};
    snprintf(p, sizeof p, "%s/odd.mp4", dir);
    dt_err_clear(&err);
    assert_int_not_equal(dt_video_write(p, &v, &err), DT_OK);
    assert_int_equal(count_entries(dir), 0);
    tu_rmtree(dir);
}

/* `ditrt compare` on two videos: per-frame lines, means, thresholds on the means. */
static void test_cli_compare(void **state)
{
    (void)state;
    char dir[256], cmd[1200], p[600];
    tu_tmpdir(dir, sizeof dir);
    uint8_t *frames = make_frames();
    dt_video_frames v = {FR, W, H, 8, frames, meta, 2};
    dt_err err = {0};
    const char *names[] = {"a.mp4", "b.webp", "c_%02d.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (dt_video_write(p, &v, &err) != DT_OK) fail_msg("%s", err.msg);
    }
    snprintf(cmd, sizeof cmd, "./ditrt compare %s/c_%%02d.png %s/c_%%02d.png --min-psnr 100 > %s/out.txt", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'mean PSNR: inf dB' %s/out.txt && test $(grep -c '^frame' %s/out.txt) -eq %d", dir, dir, FR);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s/a.mp4 %s/c_%%02d.png --min-psnr 25 >/dev/null", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s/b.webp %s/a.mp4 --min-psnr 60 >/dev/null 2>&1", dir, dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    /* frame counts differ: bad input, exit 2 */
    v.frames = FR - 1;
    snprintf(p, sizeof p, "%s/short.webp", dir);
    if (dt_video_write(p, &v, &err) != DT_OK) fail_msg("%s", err.msg);
    snprintf(cmd, sizeof cmd, "./ditrt compare %s/b.webp %s/short.webp >/dev/null 2>&1", dir, dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    free(frames);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_cli_compare),
    };
    return cmocka_run_group_tests_name("video", tests, NULL, NULL);
}
