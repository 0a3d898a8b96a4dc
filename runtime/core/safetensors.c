#include "fileio.h"
#include "safetensors.h"
#include "json.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define MAX_HEADER ((uint64_t)100 << 20)

typedef struct {
    char *path;
    void *map;
    size_t size;
} st_file;

struct dt_safetensors {
    st_file *files;
    int nfiles;
    dt_st_entry *entries;
    int n, cap;
};

static const struct { const char *name; dt_dtype t; } st_dtypes[] = {
    {"F32", DT_F32}, {"F16", DT_F16}, {"BF16", DT_BF16}, {"I8", DT_I8}, {"U8", DT_U8}, {"I32", DT_I32},
};

static int entry_cmp_offset(const void *a, const void *b)
{
    const dt_st_entry *x = *(dt_st_entry *const *)a, *y = *(dt_st_entry *const *)b;
    uintptr_t p = (uintptr_t)x->data, q = (uintptr_t)y->data;
    return p < q ? -1 : p > q;
}

static dt_status push_entry(dt_safetensors *st, dt_st_entry *e, dt_err *err)
{
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 64;
        dt_st_entry *n = realloc(st->entries, (size_t)cap * sizeof *n);
        if (!n) return dt_fail(err, DT_ENOMEM, "out of memory reading safetensors header");
        st->entries = n;
        st->cap = cap;
    }
    st->entries[st->n++] = *e;
    return DT_OK;
}

/* Length of the valid UTF-8 prefix of s[0..n) (RFC 3629: no overlongs, surrogates or
 * code points above U+10FFFF); n when all of it is valid. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 4;
        if (k == 4 || i + k >= n) return i;
        if (k == 0) { i++; continue; }
        unsigned cp = c & (0x3f >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        static const unsigned min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += k + 1;
    }
    return n;
}

/* Parses one tensor's header record into e; data offsets are relative to `data`. */
static dt_status parse_record(const char *path, const cJSON *rec, const unsigned char *data,
                              uint64_t data_size, dt_st_entry *e, dt_err *err)
{
    const char *nm = rec->string;
    if (!cJSON_IsObject(rec)) return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": header record is not an object", path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(rec, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(rec, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(rec, "data_offsets");
    if (!cJSON_IsString(dt)) return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": missing dtype", path, nm);
    int found = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (!strcmp(dt->valuestring, st_dtypes[i].name)) { e->dtype = st_dtypes[i].t; found = 1; }
    if (!found) return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": unsupported dtype \"%s\" (expected F32, F16, BF16, I8, U8 or I32)", path, nm, dt->valuestring);
    if (!cJSON_IsArray(sh)) return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": missing shape", path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > DT_MAX_DIMS) return dt_fail(err, DT_EUNSUPPORTED, "%s: tensor \"%s\": %d dims, at most %d supported", path, nm, nd, DT_MAX_DIMS);
    e->ndim = nd;
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 || d->valuedouble != (double)(int64_t)d->valuedouble)
            return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": shape entry %d is not a non-negative integer", path, nm, i);
        e->shape[i] = (int64_t)d->valuedouble;
        if (e->shape[i] && numel > UINT64_MAX / (uint64_t)e->shape[i]) return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": shape overflows", path, nm);
        numel *= (uint64_t)e->shape[i];
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": data_offsets must be [begin, end]", path, nm);
    double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) || b < 0 || en < b)
        return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": bad data_offsets", path, nm);
    if (en > (double)data_size)
        return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": data_offsets [%.0f, %.0f] past the end of the data (%llu bytes)", path, nm, b, en, (unsigned long long)data_size);
    uint64_t want = numel * dt_dtype_size(e->dtype);
    if ((uint64_t)(en - b) != want)
        return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\": shape needs %llu bytes but data_offsets span %.0f", path, nm, (unsigned long long)want, en - b);
    e->data = data + (uint64_t)b;
    e->nbytes = (size_t)want;
    e->name = strdup(nm);
    if (!e->name) return dt_fail(err, DT_ENOMEM, "out of memory");
    return DT_OK;
}

static dt_status check_overlaps(const char *path, dt_st_entry *ents, int n, dt_err *err)
{
    if (n < 2) return DT_OK;
    dt_st_entry **v = malloc((size_t)n * sizeof *v);
    if (!v) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) v[i] = &ents[i];
    qsort(v, (size_t)n, sizeof *v, entry_cmp_offset);
    dt_status s = DT_OK;
    for (int i = 1; i < n && s == DT_OK; i++)
        if ((const unsigned char *)v[i - 1]->data + v[i - 1]->nbytes > (const unsigned char *)v[i]->data)
            s = dt_fail(err, DT_EFORMAT, "%s: tensors \"%s\" and \"%s\" overlap", path, v[i - 1]->name, v[i]->name);
    free(v);
    return s;
}

static int entry_cmp_name(const void *a, const void *b)
{
    return strcmp((*(dt_st_entry *const *)a)->name, (*(dt_st_entry *const *)b)->name);
}

/* A name names one tensor: a JSON object with a repeated key (or two shards holding the same
 * tensor) would let lookups and loads disagree about which one is meant. */
static dt_status check_names(const char *path, const dt_st_entry *ents, int n, dt_err *err)
{
    if (n < 2) return DT_OK;
    const dt_st_entry **v = malloc((size_t)n * sizeof *v);
    if (!v) return dt_fail(err, DT_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) v[i] = &ents[i];
    qsort(v, (size_t)n, sizeof *v, entry_cmp_name);
    dt_status s = DT_OK;
    for (int i = 1; i < n && s == DT_OK; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name)) s = dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\" is listed twice", path, v[i]->name);
    free(v);
    return s;
}

/* Maps `path` and appends its entries to st as shard number st->nfiles. */
static dt_status add_file(dt_safetensors *st, const char *path, dt_err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return dt_fail(err, DT_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) { close(fd); return dt_fail(err, DT_EIO, "%s: cannot stat: %s", path, strerror(errno)); }
    size_t size = (size_t)sb.st_size;
    if (size < 8) { close(fd); return dt_fail(err, DT_EFORMAT, "%s: truncated: %zu bytes, not a safetensors file", path, size); }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return dt_fail(err, DT_EIO, "%s: mmap failed: %s", path, strerror(errno));
    st_file *nf = realloc(st->files, (size_t)(st->nfiles + 1) * sizeof *nf);
    if (!nf) { munmap(map, size); return dt_fail(err, DT_ENOMEM, "out of memory"); }
    st->files = nf;
    st->files[st->nfiles] = (st_file){.path = strdup(path), .map = map, .size = size};
    int fileno_ = st->nfiles++;

    const unsigned char *p = map;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)p[i] << (8 * i);
    if (hlen > size - 8) return dt_fail(err, DT_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", path, (unsigned long long)hlen, size);
    if (hlen > MAX_HEADER) return dt_fail(err, DT_EFORMAT, "%s: header length %llu is implausibly large", path, (unsigned long long)hlen);
    /* The format's header is a UTF-8 JSON object, optionally padded with trailing spaces. */
    size_t bad = utf8_valid_prefix(p + 8, (size_t)hlen);
    if (bad != hlen) return dt_fail(err, DT_EFORMAT, "%s: header is not valid UTF-8 (byte %zu of the header)", path, bad);
    const char *end = NULL;
    cJSON *h = cJSON_ParseWithLengthOpts((const char *)p + 8, (size_t)hlen, &end, 0);
    if (!h || !cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return dt_fail(err, DT_EFORMAT, "%s: header is not a valid JSON object", path);
    }
    for (const char *q = end; q < (const char *)p + 8 + hlen; q++)
        if (*q != ' ') {
            cJSON_Delete(h);
            return dt_fail(err, DT_EFORMAT, "%s: header has data after its JSON object (byte %zu of the header; only "
                           "spaces may pad it)", path, (size_t)(q - (const char *)p - 8));
        }
    const unsigned char *data = p + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    int first = st->n;
    dt_status s = DT_OK;
    for (const cJSON *rec = h->child; rec && s == DT_OK; rec = rec->next) {
        if (!strcmp(rec->string, "__metadata__")) continue;
        dt_st_entry e = {.file = fileno_};
        s = parse_record(path, rec, data, data_size, &e, err);
        if (s == DT_OK) s = push_entry(st, &e, err);
        if (s != DT_OK) free(e.name);
    }
    cJSON_Delete(h);
    if (s == DT_OK && st->n > first) s = check_overlaps(path, st->entries + first, st->n - first, err); /* {}: entries may be NULL */
    if (s == DT_OK) s = check_names(path, st->entries, st->n, err); /* this file's and the shards' before it */
    return s;
}

dt_status dt_st_open(const char *path, dt_safetensors **out, dt_err *err)
{
    dt_safetensors *st = calloc(1, sizeof *st);
    if (!st) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_status s = add_file(st, path, err);
    if (s != DT_OK) { dt_st_close(st); return s; }
    *out = st;
    return DT_OK;
}

static dt_status open_sharded(const char *dir, const char *index_path, dt_safetensors **out, dt_err *err)
{
    cJSON *idx;
    DT_TRY(dt_json_load(index_path, &idx, err));
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(idx);
        return dt_fail(err, DT_EFORMAT, "%s: missing object field \"weight_map\"", index_path);
    }
    dt_safetensors *st = calloc(1, sizeof *st);
    dt_status s = st ? DT_OK : dt_fail(err, DT_ENOMEM, "out of memory");
    char path[4096];
    for (const cJSON *m = wm->child; m && s == DT_OK; m = m->next) {
        if (!cJSON_IsString(m) || strchr(m->valuestring, '/')) {
            s = dt_fail(err, DT_EFORMAT, "%s: weight_map[\"%s\"] must be a file name in the same folder", index_path, m->string);
            break;
        }
        snprintf(path, sizeof path, "%s/%s", dir, m->valuestring);
        int have = 0;
        for (int i = 0; i < st->nfiles; i++) have |= !strcmp(st->files[i].path, path);
        if (!have) s = add_file(st, path, err);
        if (s == DT_OK && !dt_st_find(st, m->string))
            s = dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\" listed in %s is not in that shard", path, m->string, index_path);
    }
    cJSON_Delete(idx);
    if (s != DT_OK) { dt_st_close(st); return s; }
    *out = st;
    return DT_OK;
}

dt_status dt_st_open_dir(const char *dir, const char *stem, dt_safetensors **out, dt_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.safetensors.index.json", dir, stem);
    if (access(path, F_OK) == 0) return open_sharded(dir, path, out, err);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, stem);
    if (access(path, F_OK) != 0)
        return dt_fail(err, DT_EIO, "%s: no %s.safetensors or %s.safetensors.index.json in this folder", dir, stem, stem);
    return dt_st_open(path, out, err);
}

void dt_st_close(dt_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->entries[i].name);
    for (int i = 0; i < st->nfiles; i++) {
        munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->entries);
    free(st->files);
    free(st);
}

int dt_st_count(const dt_safetensors *st) { return st->n; }
const dt_st_entry *dt_st_at(const dt_safetensors *st, int i) { return &st->entries[i]; }
const char *dt_st_file_of(const dt_safetensors *st, const dt_st_entry *e) { return st->files[e->file].path; }

size_t dt_st_total_bytes(const dt_safetensors *st)
{
    size_t n = 0;
    for (int i = 0; i < st->n; i++) n += st->entries[i].nbytes;
    return n;
}

const dt_st_entry *dt_st_find(const dt_safetensors *st, const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->entries[i].name, name)) return &st->entries[i];
    return NULL;
}

dt_status dt_st_expect(const dt_safetensors *st, const char *name, int ndim,
                       const int64_t *shape, const dt_st_entry **out, dt_err *err)
{
    const dt_st_entry *e = dt_st_find(st, name);
    const char *where = st->nfiles == 1 ? st->files[0].path : "weights";
    if (!e) return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\" is missing", where, name);
    int ok = e->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == e->shape[i];
    if (!ok) {
        char a[96], b[96];
        return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\" has shape %s, expected %s",
                       dt_st_file_of(st, e), name, dt_shape_str(e->ndim, e->shape, a, sizeof a),
                       dt_shape_str(ndim, shape, b, sizeof b));
    }
    if (e->dtype != DT_F32 && e->dtype != DT_F16 && e->dtype != DT_BF16)
        return dt_fail(err, DT_EFORMAT, "%s: tensor \"%s\" has dtype %s, expected a float type",
                       dt_st_file_of(st, e), name, dt_dtype_name(e->dtype));
    *out = e;
    return DT_OK;
}

/* bf16 -> f32 is a 16-bit shift (as dt_bf16_to_f32), eight at a time: the scalar loop through
 * dt_convert_to_f32 was the largest user-space cost of loading a bf16 file. Bytes may be
 * unaligned (the format does not align tensors), hence the loadu/storeu and memcpy. */
static void bf16_to_f32(const unsigned char *src, float *dst, size_t n)
{
    size_t i = 0;
#ifdef __AVX2__
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + 2 * i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(v, 16));
    }
#endif
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = dt_bf16_to_f32(h);
    }
}

static void convert_chunk(const unsigned char *src, dt_dtype t, float *dst, size_t n)
{
    if (t == DT_BF16) bf16_to_f32(src, dst, n);
    else dt_convert_to_f32(src, t, dst, n);
}

void dt_st_read_f32(const dt_st_entry *e, float *dst)
{
    size_t es = dt_dtype_size(e->dtype), n = e->nbytes / es;
    /* Chunks of 1 Mi elements over the threads: the conversion also takes the mapping's page
     * faults, which then happen on every core. Each element is converted alone, so the result
     * does not depend on the split. */
    const size_t chunk = (size_t)1 << 20;
    long nc = (long)((n + chunk - 1) / chunk);
    if (nc < 2) { convert_chunk(e->data, e->dtype, dst, n); return; }
    const unsigned char *src = e->data;
#pragma omp parallel for schedule(dynamic, 1)
    for (long c = 0; c < nc; c++) {
        size_t a = (size_t)c * chunk, k = n - a < chunk ? n - a : chunk;
        convert_chunk(src + a * es, e->dtype, dst + a, k);
    }
}

void dt_st_release(const dt_st_entry *e)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t p = (uintptr_t)e->data, a = (p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1),
              b = (p + e->nbytes) & ~((uintptr_t)pg - 1);
    /* MAP_PRIVATE, read-only and never written: DONTNEED just drops clean page-cache pages */
    if (pg > 0 && b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

dt_status dt_st_read_input(const dt_safetensors *st, const char *file, const char *name, int ndim,
                        const int64_t *shape, int optional, dt_tensor *t, float **out, dt_err *err)
{
    *out = NULL;
    const dt_st_entry *e = dt_st_find(st, name);
    if (!e) return optional ? DT_OK : dt_fail(err, DT_EFORMAT, "%s: input tensor \"%s\" is missing", file, name);
    int ok = e->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == e->shape[i];
    if (!ok) {
        char a[96], b[96];
        return dt_fail(err, DT_EFORMAT, "%s: input tensor \"%s\" has shape %s, expected %s", file, name,
                       dt_shape_str(e->ndim, e->shape, a, sizeof a), dt_shape_str(ndim, shape, b, sizeof b));
    }
    if (e->dtype != DT_F32 && e->dtype != DT_F16 && e->dtype != DT_BF16)
        return dt_fail(err, DT_EFORMAT, "%s: input tensor \"%s\" has dtype %s, expected f32, f16 or bf16", file, name, dt_dtype_name(e->dtype));
    size_t n = e->nbytes / dt_dtype_size(e->dtype);
    *out = malloc((n ? n : 1) * sizeof(float));
    if (!*out) return dt_fail(err, DT_ENOMEM, "out of memory");
    dt_st_read_f32(e, *out);
    *t = dt_tensor_view(*out, DT_F32, e->ndim, e->shape);
    return DT_OK;
}

static const char *st_dtype_name(dt_dtype t)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (st_dtypes[i].t == t) return st_dtypes[i].name;
    return NULL;
}

dt_status dt_st_write(const char *path, const dt_st_item *items, int n, dt_err *err)
{
    cJSON *h = cJSON_CreateObject();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const dt_tensor *t = items[i].t;
        if (!dt_tensor_is_contiguous(t) || t->device != DT_DEV_CPU || !st_dtype_name(t->dtype)) {
            cJSON_Delete(h);
            return dt_fail(err, DT_EINVAL, "%s: tensor \"%s\" is not a contiguous CPU tensor of a storable dtype", path, items[i].name);
        }
        cJSON *r = cJSON_AddObjectToObject(h, items[i].name);
        cJSON_AddStringToObject(r, "dtype", st_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(r, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(r, "data_offsets");
        size_t nb = dt_tensor_nbytes(t);
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!js) return dt_fail(err, DT_ENOMEM, "out of memory");
    size_t hl = strlen(js), padded = (hl + 7) / 8 * 8;

    dt_outfile o;
    dt_status s = dt_outfile_open(&o, path, "wb", err);
    if (s != DT_OK) { free(js); return s; }
    FILE *f = o.f;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(js, 1, hl, f) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n; i++) {
        size_t nb = dt_tensor_nbytes(items[i].t);
        ok = fwrite(items[i].t->data, 1, nb, f) == nb;
    }
    int e = errno;
    free(js);
    errno = e;
    return dt_outfile_close(&o, ok, err);
    return DT_OK;
}
