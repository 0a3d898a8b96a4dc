/* Reading videos back (MP4 through libavformat/libavcodec, animated WebP through
 * libwebpdemux, PNG sequences through image.h): for tests and `ditrt compare`. */
#include "video.h"
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <webp/demux.h>

void dt_video_free(dt_video *v)
{
    free(v->rgb);
    free(v->comment);
    *v = (dt_video){0};
}

/* Appends one frame of w x h RGB; the first frame fixes the size. */
static dt_status push_frame(dt_video *v, const char *path, int w, int h, const uint8_t *rgb, int stride, int bpp, dt_err *err)
{
    if (v->frames && (w != v->width || h != v->height))
        return dt_fail(err, DT_EFORMAT, "%s: frame %d is %dx%d, the first was %dx%d", path, v->frames, w, h, v->width, v->height);
    size_t fb = (size_t)w * h * 3;
    uint8_t *n = realloc(v->rgb, (v->frames + 1) * fb);
    if (!n) return dt_fail(err, DT_ENOMEM, "out of memory");
    v->rgb = n;
    uint8_t *d = n + v->frames * fb;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) d[((size_t)y * w + x) * 3 + c] = rgb[(size_t)y * stride + x * bpp + c];
    v->width = w;
    v->height = h;
    v->frames++;
    return DT_OK;
}

static dt_status read_file(const char *path, uint8_t **data, size_t *n, dt_err *err)
{
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(err, DT_EIO, "%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = sz > 0 ? malloc((size_t)sz) : NULL;
    int ok = *data && fread(*data, 1, (size_t)sz, f) == (size_t)sz;
    fclose(f);
    if (!ok) { free(*data); return dt_fail(err, DT_EIO, "%s: cannot read", path); }
    *n = (size_t)sz;
    return DT_OK;
}

static dt_status read_webp(const char *path, dt_video *v, dt_err *err)
{
    uint8_t *bytes = NULL;
    size_t n = 0;
    DT_TRY(read_file(path, &bytes, &n, err));
    WebPData data = {bytes, n};
    WebPAnimDecoderOptions o;
    WebPAnimDecoderOptionsInit(&o);
    o.color_mode = MODE_RGBA;
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &o);
    WebPAnimInfo info;
    dt_status s = dec && WebPAnimDecoderGetInfo(dec, &info) ? DT_OK : dt_fail(err, DT_EFORMAT, "%s: not an animated WebP", path);
    int last_ms = 0;
    while (s == DT_OK && WebPAnimDecoderHasMoreFrames(dec)) {
        uint8_t *buf;
        int ts;
        if (!WebPAnimDecoderGetNext(dec, &buf, &ts)) { s = dt_fail(err, DT_EFORMAT, "%s: frame %d does not decode", path, v->frames); break; }
        s = push_frame(v, path, (int)info.canvas_width, (int)info.canvas_height, buf, (int)info.canvas_width * 4, 4, err);
        last_ms = ts; /* the end time of this frame */
    }
    if (s == DT_OK && v->frames && last_ms > 0) v->fps = v->frames * 1000.0 / last_ms;
    const WebPDemuxer *dm = dec ? WebPAnimDecoderGetDemuxer(dec) : NULL;
    WebPChunkIterator it;
    if (s == DT_OK && dm && WebPDemuxGetChunk(dm, "XMP ", 1, &it)) {
        v->comment = malloc(it.chunk.size + 1);
        if (v->comment) { memcpy(v->comment, it.chunk.bytes, it.chunk.size); v->comment[it.chunk.size] = 0; }
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPAnimDecoderDelete(dec);
    free(bytes);
    return s;
}

typedef struct {
    AVFormatContext *fc;
    AVCodecContext *cc;
    AVFrame *frame, *rgb; /* rgb: swscale's padded, aligned destination */
    AVPacket *pkt;
    struct SwsContext *sws;
} mp4_reader;

static dt_status take_frames(mp4_reader *r, const char *path, dt_video *v, dt_err *err)
{
    for (;;) {
        int rc = avcodec_receive_frame(r->cc, r->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return DT_OK;
        if (rc < 0) return dt_fail(err, DT_EFORMAT, "%s: decoding failed", path);
        int w = r->frame->width, h = r->frame->height;
        if (!r->sws) {
            r->sws = sws_getContext(w, h, r->frame->format, w, h, AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
            r->rgb = av_frame_alloc();
            if (!r->sws || !r->rgb) return dt_fail(err, DT_ENOMEM, "out of memory");
            r->rgb->format = AV_PIX_FMT_RGB24;
            r->rgb->width = w;
            r->rgb->height = h;
            if (av_frame_get_buffer(r->rgb, 0) < 0) return dt_fail(err, DT_ENOMEM, "out of memory");
        }
        sws_scale(r->sws, (const uint8_t *const *)r->frame->data, r->frame->linesize, 0, h, r->rgb->data, r->rgb->linesize);
        DT_TRY(push_frame(v, path, w, h, r->rgb->data[0], r->rgb->linesize[0], 3, err));
    }
}

static dt_status read_mp4(const char *path, dt_video *v, dt_err *err)
{
    mp4_reader r = {0};
    dt_status s = avformat_open_input(&r.fc, path, NULL, NULL) == 0 && avformat_find_stream_info(r.fc, NULL) >= 0
                      ? DT_OK : dt_fail(err, DT_EFORMAT, "%s: not a readable video file", path);
    const AVCodec *codec = NULL;
    int si = s == DT_OK ? av_find_best_stream(r.fc, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0) : -1;
    if (s == DT_OK && (si < 0 || !codec)) s = dt_fail(err, DT_EFORMAT, "%s: no decodable video stream", path);
    if (s == DT_OK) {
        r.cc = avcodec_alloc_context3(codec);
        r.frame = av_frame_alloc();
        r.pkt = av_packet_alloc();
        if (!r.cc || !r.frame || !r.pkt || avcodec_parameters_to_context(r.cc, r.fc->streams[si]->codecpar) < 0 ||
            avcodec_open2(r.cc, codec, NULL) < 0)
            s = dt_fail(err, DT_EFORMAT, "%s: cannot open the decoder", path);
    }
    while (s == DT_OK && av_read_frame(r.fc, r.pkt) >= 0) {
        if (r.pkt->stream_index == si && avcodec_send_packet(r.cc, r.pkt) < 0) s = dt_fail(err, DT_EFORMAT, "%s: bad packet", path);
        av_packet_unref(r.pkt);
        if (s == DT_OK) s = take_frames(&r, path, v, err);
    }
    if (s == DT_OK && avcodec_send_packet(r.cc, NULL) >= 0) s = take_frames(&r, path, v, err);
    if (s == DT_OK) {
        AVRational fr = r.fc->streams[si]->avg_frame_rate;
        v->fps = fr.den ? av_q2d(fr) : 0;
        AVDictionaryEntry *e = av_dict_get(r.fc->metadata, "comment", NULL, 0);
        if (e) v->comment = strdup(e->value);
    }
    sws_freeContext(r.sws);
    av_frame_free(&r.rgb);
    av_frame_free(&r.frame);
    av_packet_free(&r.pkt);
    avcodec_free_context(&r.cc);
    avformat_close_input(&r.fc);
    return s;
}

static dt_status read_pngs(const char *path, dt_video_kind kind, dt_video *v, dt_err *err)
{
    char p[4200];
    for (int f = 0;; f++) {
        dt_video_frame_path(path, kind, f, p, sizeof p);
        if (access(p, R_OK) != 0) break;
        dt_image img;
        DT_TRY(dt_image_read(p, &img, err));
        dt_status s = push_frame(v, p, img.width, img.height, img.rgb, img.width * 3, 3, err);
        dt_image_free(&img);
        DT_TRY(s);
    }
    return v->frames ? DT_OK : dt_fail(err, DT_EIO, "%s: no frames found", path);
}

dt_status dt_video_read(const char *path, dt_video *out, dt_err *err)
{
    *out = (dt_video){0};
    size_t n = strlen(path);
    struct stat st;
    int dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    dt_status s;
    if (dir) s = read_pngs(path, DT_VIDEO_PNG_DIR, out, err);
    else if (strchr(path, '%')) s = read_pngs(path, DT_VIDEO_PNG_PATTERN, out, err);
    else if (n > 5 && !strcasecmp(path + n - 5, ".webp")) s = read_webp(path, out, err);
    else s = read_mp4(path, out, err);
    if (s != DT_OK) dt_video_free(out);
    return s;
}
