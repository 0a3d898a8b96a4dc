/* Video output (PNG sequence, animated WebP, H.264 MP4) and reading back; see video.h. */
#include "video.h"
#include <ctype.h>
#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <webp/demux.h>
#include <webp/encode.h>
#include <webp/mux.h>

/* ---- paths ---- */

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* 1 when `s` holds exactly one %d / %0Nd / %Nd conversion and no other (%% allowed). */
static int one_int_conversion(const char *s)
{
    int n = 0;
    for (const char *c = s; *c; c++) {
        if (*c != '%') continue;
        if (c[1] == '%') { c++; continue; }
        c++;
        while (isdigit((unsigned char)*c)) c++;
        if (*c != 'd') return -1;
        n++;
    }
    return n;
}

static int has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), e = strlen(ext);
    return n > e && !strcasecmp(path + n - e, ext);
}

/* The folder part of path ("." when none). */
static void folder_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, n, ".");
    else if (slash == path) snprintf(out, n, "/");
    else snprintf(out, n, "%.*s", (int)(slash - path), path);
}

static dt_status check_folder(const char *path, const char *folder, dt_err *err)
{
    if (!is_dir(folder)) return dt_fail(err, DT_EIO, "%s: output folder \"%s\" does not exist", path, folder);
    if (access(folder, W_OK) != 0) return dt_fail(err, DT_EIO, "%s: output folder \"%s\" is not writable", path, folder);
    return DT_OK;
}

dt_status dt_video_check_writable(const char *path, dt_video_kind *kind, dt_err *err)
{
    char folder[4096];
    size_t n = strlen(path);
    if (!n) return dt_fail(err, DT_EINVAL, "output: empty path");
    int conv = one_int_conversion(path);
    if (path[n - 1] == '/' || is_dir(path)) {
        *kind = DT_VIDEO_PNG_DIR;
        snprintf(folder, sizeof folder, "%s", path);
        return check_folder(path, folder, err);
    }
    if (conv != 0) {
        if (conv != 1) return dt_fail(err, DT_EINVAL, "%s: a frame pattern needs exactly one integer conversion such as %%03d", path);
        if (!has_ext(path, ".png")) return dt_fail(err, DT_EINVAL, "%s: frame patterns must end in .png", path);
        *kind = DT_VIDEO_PNG_PATTERN;
    } else if (has_ext(path, ".webp")) *kind = DT_VIDEO_WEBP;
    else if (has_ext(path, ".mp4")) *kind = DT_VIDEO_MP4;
    else return dt_fail(err, DT_EINVAL, "%s: unknown video output type (use .mp4, .webp, a folder/ or a %%03d.png pattern)", path);
    folder_of(path, folder, sizeof folder);
    return check_folder(path, folder, err);
}

void dt_video_frame_path(const char *path, dt_video_kind kind, int i, char *out, size_t n)
{
    if (kind == DT_VIDEO_PNG_DIR) {
        size_t l = strlen(path);
        snprintf(out, n, "%s%sframe_%03d.png", path, l && path[l - 1] == '/' ? "" : "/", i);
    } else {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(out, n, path, i); /* validated by one_int_conversion */
#pragma GCC diagnostic pop
    }
}

/* ---- temp files ---- */

static dt_status temp_name(const char *path, char *tmp, size_t n, dt_err *err)
{
    if (snprintf(tmp, n, "%s.tmp.XXXXXX", path) >= (int)n) return dt_fail(err, DT_EINVAL, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return dt_fail(err, DT_EIO, "%s: cannot create a file in its folder: %s", path, strerror(errno));
    fchmod(fd, 0644); /* mkstemp makes 0600; match image.c's outputs */
    close(fd);
    return DT_OK;
}

static dt_status finish_temp(const char *tmp, const char *path, dt_status s, dt_err *err)
{
    if (s == DT_OK && rename(tmp, path) != 0) s = dt_fail(err, DT_EIO, "%s: cannot rename the temp file into place: %s", path, strerror(errno));
    if (s != DT_OK) unlink(tmp);
    return s;
}

/* "key: value" lines of the metadata (malloc'd). */
static char *meta_text(const dt_video_frames *v)
{
    size_t n = 1;
    for (int i = 0; i < v->n_meta; i++) n += strlen(v->meta[i].key) + strlen(v->meta[i].value) + 3;
    char *s = malloc(n), *p = s;
    if (!s) return NULL;
    *p = 0;
    for (int i = 0; i < v->n_meta; i++) p += sprintf(p, "%s: %s\n", v->meta[i].key, v->meta[i].value);
    return s;
}

/* ---- PNG sequence ---- */

static dt_status write_png_frames(const char *path, dt_video_kind kind, const dt_video_frames *v, dt_err *err)
{
    int n = v->n_meta;
    dt_image_text *t = malloc((size_t)(n + 2) * sizeof *t);
    if (!t) return dt_fail(err, DT_ENOMEM, "out of memory");
    char idx[32], fps[32], p[4200];
    snprintf(fps, sizeof fps, "%g", v->fps);
    for (int i = 0; i < n; i++) t[i] = v->meta[i];
    t[n] = (dt_image_text){"frame", idx};
    t[n + 1] = (dt_image_text){"fps", fps};
    size_t fb = (size_t)v->width * v->height * 3;
    dt_status s = DT_OK;
    for (int f = 0; f < v->frames && s == DT_OK; f++) {
        snprintf(idx, sizeof idx, "%d/%d", f, v->frames);
        dt_video_frame_path(path, kind, f, p, sizeof p);
        s = dt_image_write(p, v->rgb + f * fb, v->width, v->height, t, n + 2, err);
    }
    free(t);
    return s;
}

/* ---- WebP ---- */

static dt_status webp_encode(const char *path, const dt_video_frames *v, WebPData *out, dt_err *err)
{
    WebPAnimEncoderOptions eo;
    WebPConfig cfg;
    if (!WebPAnimEncoderOptionsInit(&eo) || !WebPConfigInit(&cfg)) return dt_fail(err, DT_EUNSUPPORTED, "%s: libwebp version mismatch", path);
    eo.anim_params.loop_count = 0;
    cfg.quality = 90;
    WebPAnimEncoder *enc = WebPAnimEncoderNew(v->width, v->height, &eo);
    WebPPicture pic;
    if (!enc || !WebPPictureInit(&pic)) { WebPAnimEncoderDelete(enc); return dt_fail(err, DT_ENOMEM, "%s: cannot create the WebP encoder", path); }
    pic.width = v->width;
    pic.height = v->height;
    pic.use_argb = 1;
    dt_status s = DT_OK;
    size_t fb = (size_t)v->width * v->height * 3;
    int ms = 0;
    for (int f = 0; f < v->frames && s == DT_OK; f++) {
        ms = (int)(f * 1000.0 / v->fps + 0.5);
        if (!WebPPictureImportRGB(&pic, v->rgb + f * fb, v->width * 3) || !WebPAnimEncoderAdd(enc, &pic, ms, &cfg))
            s = dt_fail(err, DT_EIO, "%s: WebP encoding of frame %d failed: %s", path, f, WebPAnimEncoderGetError(enc));
    }
    ms = (int)(v->frames * 1000.0 / v->fps + 0.5);
    if (s == DT_OK && (!WebPAnimEncoderAdd(enc, NULL, ms, NULL) || !WebPAnimEncoderAssemble(enc, out)))
        s = dt_fail(err, DT_EIO, "%s: WebP assembly failed: %s", path, WebPAnimEncoderGetError(enc));
    WebPPictureFree(&pic);
    WebPAnimEncoderDelete(enc);
    return s;
}

/* Adds the metadata as an XMP chunk (plain "key: value" lines inside an XMP packet). */
static dt_status webp_add_meta(const char *path, const dt_video_frames *v, WebPData *data, dt_err *err)
{
    char *txt = meta_text(v);
    if (!txt) return dt_fail(err, DT_ENOMEM, "out of memory");
    WebPMux *mux = WebPMuxCreate(data, 1);
    WebPData xmp = {(const uint8_t *)txt, strlen(txt)}, assembled = {0};
    dt_status s = mux ? DT_OK : dt_fail(err, DT_EIO, "%s: cannot reopen the WebP data", path);
    if (s == DT_OK && v->n_meta && WebPMuxSetChunk(mux, "XMP ", &xmp, 1) != WEBP_MUX_OK)
        s = dt_fail(err, DT_EIO, "%s: cannot add the XMP chunk", path);
    if (s == DT_OK && WebPMuxAssemble(mux, &assembled) != WEBP_MUX_OK) s = dt_fail(err, DT_EIO, "%s: WebP mux assembly failed", path);
    WebPMuxDelete(mux);
    free(txt);
    if (s == DT_OK) { WebPDataClear(data); *data = assembled; }
    return s;
}

static dt_status write_webp(const char *path, const dt_video_frames *v, dt_err *err)
{
    WebPData data;
    WebPDataInit(&data);
    dt_status s = webp_encode(path, v, &data, err);
    if (s == DT_OK) s = webp_add_meta(path, v, &data, err);
    char tmp[4200];
    if (s == DT_OK) s = temp_name(path, tmp, sizeof tmp, err);
    if (s == DT_OK) {
        FILE *f = fopen(tmp, "wb");
        int ok = f && fwrite(data.bytes, 1, data.size, f) == data.size, e = ok ? 0 : errno; /* before close: it may reset errno */
        if (f && fclose(f) != 0 && ok) ok = 0, e = errno;
        s = finish_temp(tmp, path, ok ? DT_OK : dt_fail(err, DT_EIO, "%s: write failed: %s", path, strerror(e ? e : EIO)), err);
    }
    WebPDataClear(&data);
    return s;
}

/* ---- MP4 / H.264 ---- */

typedef struct {
    AVFormatContext *oc;
    AVCodecContext *cc;
    AVStream *st;
    AVFrame *frame, *rgb;  /* rgb: swscale's source, padded and aligned (its SIMD reads past row ends) */
    AVPacket *pkt;
    struct SwsContext *sws;
    int opened;
} mp4_writer;

static dt_status av_fail(dt_err *err, const char *path, const char *what, int rc)
{
    char buf[128];
    av_strerror(rc, buf, sizeof buf);
    return dt_fail(err, DT_EIO, "%s: %s: %s", path, what, buf);
}

static dt_status mp4_drain(mp4_writer *w, const char *path, AVFrame *frame, dt_err *err)
{
    int rc = avcodec_send_frame(w->cc, frame);
    if (rc < 0) return av_fail(err, path, "encoding failed", rc);
    for (;;) {
        rc = avcodec_receive_packet(w->cc, w->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return DT_OK;
        if (rc < 0) return av_fail(err, path, "encoding failed", rc);
        av_packet_rescale_ts(w->pkt, w->cc->time_base, w->st->time_base);
        w->pkt->stream_index = w->st->index;
        rc = av_interleaved_write_frame(w->oc, w->pkt);
        if (rc < 0) return av_fail(err, path, "writing a packet failed", rc);
    }
}

static const AVCodec *h264_encoder(void)
{
    const AVCodec *c = avcodec_find_encoder_by_name("libx264");
    return c ? c : avcodec_find_encoder(AV_CODEC_ID_H264);
}

static dt_status mp4_open(mp4_writer *w, const char *path, const char *tmp, const dt_video_frames *v, dt_err *err)
{
    const AVCodec *codec = h264_encoder();
    if (!codec) return dt_fail(err, DT_EUNSUPPORTED, "%s: this libavcodec has no H.264 encoder", path);
    if (v->width % 2 || v->height % 2) return dt_fail(err, DT_EINVAL, "%s: H.264 (yuv420p) needs an even width and height, got %dx%d", path, v->width, v->height);
    int rc = avformat_alloc_output_context2(&w->oc, NULL, "mp4", tmp);
    if (rc < 0) return av_fail(err, path, "cannot create the MP4 muxer", rc);
    w->st = avformat_new_stream(w->oc, NULL);
    w->cc = avcodec_alloc_context3(codec);
    w->frame = av_frame_alloc();
    w->rgb = av_frame_alloc();
    w->pkt = av_packet_alloc();
    if (!w->st || !w->cc || !w->frame || !w->rgb || !w->pkt) return dt_fail(err, DT_ENOMEM, "out of memory");
    AVRational fps = av_d2q(v->fps, 100000);
    w->cc->width = v->width;
    w->cc->height = v->height;
    w->cc->pix_fmt = AV_PIX_FMT_YUV420P;
    w->cc->time_base = av_inv_q(fps);
    w->cc->framerate = fps;
    w->cc->gop_size = 12;
    w->cc->color_range = AVCOL_RANGE_MPEG;
    w->cc->colorspace = AVCOL_SPC_SMPTE170M; /* swscale's default RGB->YUV matrix is BT.601 */
    /* No AV_CODEC_FLAG_GLOBAL_HEADER: the MP4 muxer takes SPS/PPS from the first keyframe, and
     * with the flag libavcodec's libx264 wrapper prints the encoder banner at info level. */
    av_opt_set(w->cc->priv_data, "crf", "18", 0);
    av_opt_set(w->cc->priv_data, "preset", "medium", 0);
    av_opt_set(w->cc->priv_data, "x264-params", "log=0", 0); /* errors only: no statistics on stderr */
    if ((rc = avcodec_open2(w->cc, codec, NULL)) < 0) return av_fail(err, path, "cannot open the H.264 encoder", rc);
    if ((rc = avcodec_parameters_from_context(w->st->codecpar, w->cc)) < 0) return av_fail(err, path, "codec parameters", rc);
    w->st->time_base = w->cc->time_base;
    w->st->avg_frame_rate = fps;
    for (int i = 0; i < v->n_meta; i++) av_dict_set(&w->oc->metadata, v->meta[i].key, v->meta[i].value, 0);
    char *txt = meta_text(v);
    if (txt) { av_dict_set(&w->oc->metadata, "comment", txt, 0); free(txt); }
    if ((rc = avio_open(&w->oc->pb, tmp, AVIO_FLAG_WRITE)) < 0) return av_fail(err, path, "cannot open the temp file", rc);
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "movflags", "+use_metadata_tags", 0);
    rc = avformat_write_header(w->oc, &opts);
    av_dict_free(&opts);
    if (rc < 0) return av_fail(err, path, "cannot write the MP4 header", rc);
    w->opened = 1;
    w->frame->format = AV_PIX_FMT_YUV420P;
    w->frame->width = v->width;
    w->frame->height = v->height;
    if ((rc = av_frame_get_buffer(w->frame, 0)) < 0) return av_fail(err, path, "frame buffer", rc);
    w->rgb->format = AV_PIX_FMT_RGB24;
    w->rgb->width = v->width;
    w->rgb->height = v->height;
    if ((rc = av_frame_get_buffer(w->rgb, 0)) < 0) return av_fail(err, path, "frame buffer", rc);
    w->sws = sws_getContext(v->width, v->height, AV_PIX_FMT_RGB24, v->width, v->height, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    return w->sws ? DT_OK : dt_fail(err, DT_ENOMEM, "%s: cannot create the colour converter", path);
}

static void mp4_close(mp4_writer *w)
{
    if (w->oc && w->oc->pb) avio_closep(&w->oc->pb);
    avformat_free_context(w->oc);
    avcodec_free_context(&w->cc);
    av_frame_free(&w->frame);
    av_frame_free(&w->rgb);
    av_packet_free(&w->pkt);
    sws_freeContext(w->sws);
}

static dt_status write_mp4(const char *path, const dt_video_frames *v, dt_err *err)
{
    char tmp[4200];
    DT_TRY(temp_name(path, tmp, sizeof tmp, err));
    mp4_writer w = {0};
    dt_status s = mp4_open(&w, path, tmp, v, err);
    size_t fb = (size_t)v->width * v->height * 3;
    for (int f = 0; f < v->frames && s == DT_OK; f++) {
        if (av_frame_make_writable(w.frame) < 0) { s = dt_fail(err, DT_ENOMEM, "out of memory"); break; }
        for (int y = 0; y < v->height; y++)
            memcpy(w.rgb->data[0] + (size_t)y * w.rgb->linesize[0], v->rgb + f * fb + (size_t)y * v->width * 3, (size_t)v->width * 3);
        sws_scale(w.sws, (const uint8_t *const *)w.rgb->data, w.rgb->linesize, 0, v->height, w.frame->data, w.frame->linesize);
        w.frame->pts = f;
        s = mp4_drain(&w, path, w.frame, err);
    }
    if (s == DT_OK) s = mp4_drain(&w, path, NULL, err);
    if (s == DT_OK) {
        int rc = av_write_trailer(w.oc);
        if (rc < 0) s = av_fail(err, path, "cannot finish the MP4", rc);
    }
    if (w.oc && w.oc->pb && avio_closep(&w.oc->pb) < 0 && s == DT_OK) s = dt_fail(err, DT_EIO, "%s: write failed", path);
    mp4_close(&w);
    return finish_temp(tmp, path, s, err);
}

dt_status dt_video_write(const char *path, const dt_video_frames *v, dt_err *err)
{
    if (v->frames <= 0 || v->width <= 0 || v->height <= 0 || !(v->fps > 0) || v->fps > 1000)
        return dt_fail(err, DT_EINVAL, "%s: need frames, a size and an fps in (0, 1000]", path);
    dt_video_kind kind;
    DT_TRY(dt_video_check_writable(path, &kind, err));
    switch (kind) {
    case DT_VIDEO_WEBP: return write_webp(path, v, err);
    case DT_VIDEO_MP4: return write_mp4(path, v, err);
    default: return write_png_frames(path, kind, v, err);
    }
}
