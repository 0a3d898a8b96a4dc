/* Runtime core: tensors, the activation arena, JSON helpers, error reporting. */
#include "testutil.h"
#include "runtime/core/arena.h"
#include "runtime/core/json.h"

static void test_tensor_views(void **state)
{
    (void)state;
    int64_t s[5] = {2, 3, 4, 5, 6};
    dt_tensor t = dt_tensor_view(NULL, DT_BF16, 5, s);
    assert_int_equal(dt_tensor_numel(&t), 720);
    assert_int_equal(dt_tensor_nbytes(&t), 1440);
    assert_int_equal(t.strides[0], 360);
    assert_int_equal(t.strides[4], 1);
    assert_true(dt_tensor_is_contiguous(&t));
    t.strides[1] = 200;
    assert_false(dt_tensor_is_contiguous(&t));
    dt_dtype d;
    assert_true(dt_dtype_parse("bfloat16", &d) && d == DT_BF16);
    assert_true(dt_dtype_parse("i32", &d) && d == DT_I32);
    assert_false(dt_dtype_parse("f64", &d));
    char buf[64];
    assert_string_equal(dt_shape_str(3, s, buf, sizeof buf), "[2, 3, 4]");
    assert_string_equal(dt_shape_str(0, s, buf, sizeof buf), "[]");
}

static void test_arena(void **state)
{
    (void)state;
    dt_arena a;
    dt_arena_init(&a);
    void *p1 = dt_arena_alloc(&a, 10), *p2 = dt_arena_alloc(&a, 1);
    assert_true(((uintptr_t)p1 % 64) == 0 && ((uintptr_t)p2 % 64) == 0);
    assert_true((char *)p2 - (char *)p1 == 64);
    /* grows past one chunk; every block stays writable */
    size_t big = (size_t)20 << 20;
    char *b1 = dt_arena_alloc(&a, big), *b2 = dt_arena_alloc(&a, big);
    assert_non_null(b1);
    assert_non_null(b2);
    memset(b1, 1, big);
    memset(b2, 2, big);
    size_t peak = a.peak;
    assert_true(peak >= 2 * big);
    /* reset folds the chunks into one of the high-water size: the same step again
     * allocates nothing new */
    dt_arena_reset(&a);
    assert_int_equal(a.used_total, 0);
    size_t reserved = a.reserved;
    assert_true(reserved >= peak);
    dt_arena_alloc(&a, 10); dt_arena_alloc(&a, 1); dt_arena_alloc(&a, big); dt_arena_alloc(&a, big);
    assert_int_equal(a.reserved, reserved);
    dt_tensor t;
    dt_err err = {0};
    int64_t s[2] = {3, 5};
    assert_int_equal(dt_arena_tensor(&a, &t, DT_F32, 2, s, &err), DT_OK);
    assert_non_null(t.data);
    assert_int_equal(t.strides[0], 5);
    dt_arena_free(&a);
    assert_null(a.head);
}

static void test_json_fields(void **state)
{
    (void)state;
    cJSON *j = cJSON_Parse("{\"a\": 3, \"b\": 2.5, \"c\": true, \"d\": \"x\", \"n\": null}");
    int i, b;
    double d;
    char s[8];
    dt_err err = {0};
    assert_int_equal(dt_json_int(j, "f.json", "a", 0, 0, &i, &err), DT_OK);
    assert_int_equal(i, 3);
    assert_int_equal(dt_json_int(j, "f.json", "n", 1, 7, &i, &err), DT_OK); /* null: default */
    assert_int_equal(i, 7);
    assert_int_equal(dt_json_num(j, "f.json", "b", 0, 0, &d, &err), DT_OK);
    assert_true(d == 2.5);
    assert_int_equal(dt_json_bool(j, "f.json", "c", 0, &b, &err), DT_OK);
    assert_int_equal(b, 1);
    assert_int_equal(dt_json_str(j, "f.json", "d", NULL, s, sizeof s, &err), DT_OK);
    assert_string_equal(s, "x");
    assert_int_equal(dt_json_int(j, "f.json", "b", 0, 0, &i, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "f.json: field \"b\" must be an integer"));
    dt_err_clear(&err);
    assert_int_equal(dt_json_str(j, "f.json", "zz", NULL, s, sizeof s, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "missing field \"zz\""));
    cJSON_Delete(j);
}

static void test_json_python_literals(void **state)
{
    (void)state;
    char path[] = "/tmp/ditrt-json-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *txt = "{\"lambda_min_clipped\": -Infinity, \"m\": Infinity, \"n\": null, \"s\": \"-Infinity \\\" NaN\"}";
    assert_int_equal(write(fd, txt, strlen(txt)), (ssize_t)strlen(txt));
    close(fd);
    cJSON *j;
    dt_err err = {0};
    assert_int_equal(dt_json_load(path, &j, &err), DT_OK);
    double d;
    assert_int_equal(dt_json_num(j, path, "lambda_min_clipped", 0, 0, &d, &err), DT_OK);
    assert_true(isinf(d) && d < 0);
    assert_int_equal(dt_json_num(j, path, "m", 0, 0, &d, &err), DT_OK);
    assert_true(isinf(d) && d > 0);
    assert_int_equal(dt_json_num(j, path, "n", 1, 5.0, &d, &err), DT_OK);
    assert_true(d == 5.0);
    char s[64];
    assert_int_equal(dt_json_str(j, path, "s", NULL, s, sizeof s, &err), DT_OK);
    assert_string_equal(s, "-Infinity \" NaN"); /* strings untouched */
    cJSON_Delete(j);
    unlink(path);
}

/* A bare NaN (Python's json.dump of a float NaN) is refused naming the line and column. It
 * used to be rewritten in place to the longer "null", writing past the buffer: many NaNs
 * ran far past it. */
static void test_json_nan_refused(void **state)
{
    (void)state;
    char path[] = "/tmp/ditrt-json-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = 4 * 20000 + 64;
    char *txt = malloc(n), *p = txt;
    p += sprintf(p, "{\"ok\": Infinity,\n \"a\": [NaN");
    for (int i = 1; i < 20000; i++) p += sprintf(p, ",NaN");
    p += sprintf(p, "]}");
    assert_int_equal(write(fd, txt, strlen(txt)), (ssize_t)strlen(txt));
    close(fd);
    free(txt);
    cJSON *j = NULL;
    dt_err err = {0};
    assert_int_equal(dt_json_load(path, &j, &err), DT_EFORMAT);
    assert_null(j);
    char want[128];
    snprintf(want, sizeof want, "%s: NaN at line 2 column 8", path);
    if (!strstr(err.msg, want)) fail_msg("message: %s", err.msg);
    /* -NaN too; NaN inside strings and keys is text */
    const char *t2 = "{\"NaN\": \"NaN\", \"x\": -NaN}";
    FILE *f = fopen(path, "w");
    fputs(t2, f);
    fclose(f);
    dt_err_clear(&err);
    assert_int_equal(dt_json_load(path, &j, &err), DT_EFORMAT);
    assert_non_null(strstr(err.msg, "NaN at line 1 column 21"));
    unlink(path);
}

static void test_error_first_wins(void **state)
{
    (void)state;
    dt_err err = {0};
    assert_int_equal(dt_fail(&err, DT_EIO, "a.bin: first\nsecond"), DT_EIO);
    assert_int_equal(dt_fail(&err, DT_EINVAL, "later"), DT_EIO);
    assert_string_equal(err.msg, "a.bin: first second"); /* one line */
    dt_err_clear(&err);
    assert_int_equal(err.status, DT_OK);
    assert_string_equal(ditrt_status_name(DITRT_EFORMAT), "format error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_views),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_python_literals),
        cmocka_unit_test(test_json_nan_refused),
        cmocka_unit_test(test_error_first_wins),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
