/* Reading videos back (MP4 through libavformat/libavcodec, animated WebP through
 * libwebpdemux, PNG sequences through image.h): for tests and `ditrt compare`. Every frame is
 * bounded like an image (DITRT_MAX_IMAGE_PIXELS) and the decoded video as a whole by
 * DITRT_MAX_VIDEO_BYTES, checked on the container's sizes before the decoders allocate and
 * again before each frame is stored. */
#include "video.h"
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
#include <inttypes.h>
#include <limits.h>
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

/* The frames read so far and the bounds: each frame passes dt_image_check_size and all of them
 * together stay within DITRT_MAX_VIDEO_BYTES, both checked before the buffer grows. */
typedef struct {
    dt_video *v;
    uint64_t max_bytes;
    size_t cap; /* bytes allocated at v->rgb */
} frame_sink;

static dt_status sink_init(frame_sink *k, dt_video *v, dt_err *err)
{
    *k = (frame_sink){.v = v};
    return dt_video_max_bytes(&k->max_bytes, err);
}

/* Fails unless `frames` frames of w x h fit the bounds (naming path). */
static dt_status check_frames(const frame_sink *k, const char *path, uint64_t frames, uint64_t w, uint64_t h, dt_err *err)
{
    DT_TRY(dt_image_check_size(path, w, h, err));
    uint64_t fb = w * h * 3; /* w * h is within the pixel limit */
    if (frames > k->max_bytes / fb)
        return dt_fail(err, DT_EFORMAT,
                       "%s: video too large (%" PRIu64 " frames of %" PRIu64 "x%" PRIu64 "; the limit is %" PRIu64
                       " decoded bytes, set by DITRT_MAX_VIDEO_BYTES)", path, frames, w, h, k->max_bytes);
    return DT_OK;
}

/* Appends one frame of w x h RGB; the first frame fixes the size. */
static dt_status push_frame(frame_sink *k, const char *path, int w, int h, const uint8_t *rgb, int stride, int bpp, dt_err *err)
{
    dt_video *v = k->v;
    if (v->frames && (w != v->width || h != v->height))
        return dt_fail(err, DT_EFORMAT, "%s: frame %d is %dx%d, the first was %dx%d", path, v->frames, w, h, v->width, v->height);
    DT_TRY(check_frames(k, path, (uint64_t)v->frames + 1, (uint64_t)(w < 0 ? 0 : w), (uint64_t)(h < 0 ? 0 : h), err));
    size_t fb = (size_t)w * h * 3, need = ((size_t)v->frames + 1) * fb; /* within max_bytes */
    if (need > k->cap) {
        size_t cap = k->cap * 2 > need ? k->cap * 2 : need;
        if (cap > k->max_bytes) cap = need;
        uint8_t *n = realloc(v->rgb, cap);
        if (!n) return dt_fail(err, DT_ENOMEM, "%s: out of memory for %d frames of %dx%d", path, v->frames + 1, w, h);
        v->rgb = n;
        k->cap = cap;
    }
    uint8_t *d = v->rgb + (size_t)v->frames * fb;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) d[((size_t)y * w + x) * 3 + c] = rgb[(size_t)y * stride + (size_t)x * bpp + c];
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
    long sz = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    fseek(f, 0, SEEK_SET);
    if (sz > (1L << 30)) {
        fclose(f);
        return dt_fail(err, DT_EFORMAT, "%s: file too large for a WebP video (%ld bytes; at most 1 GiB)", path, sz);
    }
    *data = sz > 0 ? malloc((size_t)sz) : NULL;
    int ok = *data && fread(*data, 1, (size_t)sz, f) == (size_t)sz;
    fclose(f);
    if (!ok) { free(*data); return dt_fail(err, DT_EIO, "%s: cannot read", path); }
    *n = (size_t)sz;
    return DT_OK;
}

static dt_status read_webp(const char *path, dt_video *v, dt_err *err)
{
    frame_sink k;
    DT_TRY(sink_init(&k, v, err));
    uint8_t *bytes = NULL;
    size_t n = 0;
    DT_TRY(read_file(path, &bytes, &n, err));
    WebPData data = {bytes, n};
    /* The canvas and the frame count from the container, checked before the animation decoder
     * allocates its two canvases and before any frame is decoded. */
    WebPDemuxer *dm0 = WebPDemux(&data);
    dt_status s = dm0 ? DT_OK : dt_fail(err, DT_EFORMAT, "%s: not a WebP file, or a damaged one", path);
    if (s == DT_OK)
        s = check_frames(&k, path, WebPDemuxGetI(dm0, WEBP_FF_FRAME_COUNT), WebPDemuxGetI(dm0, WEBP_FF_CANVAS_WIDTH),
                         WebPDemuxGetI(dm0, WEBP_FF_CANVAS_HEIGHT), err);
    WebPDemuxDelete(dm0);
    if (s != DT_OK) {
        free(bytes);
        return s;
    }
    WebPAnimDecoderOptions o;
    WebPAnimDecoderOptionsInit(&o);
    o.color_mode = MODE_RGBA;
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &o);
    WebPAnimInfo info;
    s = dec && WebPAnimDecoderGetInfo(dec, &info) ? DT_OK : dt_fail(err, DT_EFORMAT, "%s: not an animated WebP", path);
    int last_ms = 0;
    while (s == DT_OK && WebPAnimDecoderHasMoreFrames(dec)) {
        uint8_t *buf;
        int ts;
        if (!WebPAnimDecoderGetNext(dec, &buf, &ts)) { s = dt_fail(err, DT_EFORMAT, "%s: frame %d does not decode", path, v->frames); break; }
        s = push_frame(&k, path, (int)info.canvas_width, (int)info.canvas_height, buf, (int)info.canvas_width * 4, 4, err);
        last_ms = ts; /* the end time of this frame */
    }
    if (s == DT_OK && !v->frames) s = dt_fail(err, DT_EFORMAT, "%s: no frames", path);
    if (s == DT_OK && last_ms > 0) v->fps = v->frames * 1000.0 / last_ms;
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
    int fmt;              /* the first frame's pixel format (sws was made for it) */
    frame_sink sink;
} mp4_reader;

static dt_status take_frames(mp4_reader *r, const char *path, dt_video *v, dt_err *err)
{
    for (;;) {
        int rc = avcodec_receive_frame(r->cc, r->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return DT_OK;
        if (rc < 0) return dt_fail(err, DT_EFORMAT, "%s: decoding failed", path);
        int w = r->frame->width, h = r->frame->height;
        /* checked before sws_scale writes into r->rgb, sized for the first frame */
        if (r->sws && (w != v->width || h != v->height || r->frame->format != r->fmt))
            return dt_fail(err, DT_EFORMAT, "%s: frame %d changes the size or pixel format (%dx%d, the first was %dx%d)", path,
                           v->frames, w, h, v->width, v->height);
        DT_TRY(check_frames(&r->sink, path, (uint64_t)v->frames + 1, (uint64_t)(w < 0 ? 0 : w), (uint64_t)(h < 0 ? 0 : h), err));
        if (!r->sws) {
            r->fmt = r->frame->format;
            r->sws = sws_getContext(w, h, r->frame->format, w, h, AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
            r->rgb = av_frame_alloc();
            if (!r->sws || !r->rgb) return dt_fail(err, DT_ENOMEM, "out of memory");
            r->rgb->format = AV_PIX_FMT_RGB24;
            r->rgb->width = w;
            r->rgb->height = h;
            if (av_frame_get_buffer(r->rgb, 0) < 0) return dt_fail(err, DT_ENOMEM, "out of memory");
        }
        sws_scale(r->sws, (const uint8_t *const *)r->frame->data, r->frame->linesize, 0, h, r->rgb->data, r->rgb->linesize);
        DT_TRY(push_frame(&r->sink, path, w, h, r->rgb->data[0], r->rgb->linesize[0], 3, err));
    }
}

static dt_status read_mp4(const char *path, dt_video *v, dt_err *err)
{
    mp4_reader r = {0};
    DT_TRY(sink_init(&r.sink, v, err));
    /* ditrt reports a bad file in one line of its own: FFmpeg's decoder chatter about the same
     * file goes only where an application asked for it (a level other than the default). */
    if (av_log_get_level() == AV_LOG_INFO) av_log_set_level(AV_LOG_FATAL);
    uint64_t max_pixels;
    DT_TRY(dt_image_max_pixels(&max_pixels, err));
    char mp[24];
    snprintf(mp, sizeof mp, "%" PRIu64, max_pixels > INT_MAX ? (uint64_t)INT_MAX : max_pixels);
    /* Only the MP4 (ISO BMFF) demuxer reading the local file: no format probing (ffmpeg's other
     * demuxers, playlists among them, may open further files or URLs named inside the input). */
    const AVInputFormat *mp4 = av_find_input_format("mp4");
    AVDictionary *fo = NULL;
    av_dict_set(&fo, "protocol_whitelist", "file", 0);
    dt_status s = mp4 && avformat_open_input(&r.fc, path, mp4, &fo) == 0 ? DT_OK
                      : dt_fail(err, DT_EFORMAT, "%s: not a readable MP4 file", path);
    av_dict_free(&fo);
    /* find_stream_info decodes a few frames: with the pixel limit set on its decoders too */
    AVDictionary **so = s == DT_OK && r.fc->nb_streams ? calloc(r.fc->nb_streams, sizeof *so) : NULL;
    for (unsigned i = 0; so && i < r.fc->nb_streams; i++) av_dict_set(&so[i], "max_pixels", mp, 0);
    if (s == DT_OK && avformat_find_stream_info(r.fc, so) < 0) s = dt_fail(err, DT_EFORMAT, "%s: not a readable MP4 file", path);
    for (unsigned i = 0; so && i < r.fc->nb_streams; i++) av_dict_free(&so[i]);
    free(so);
    const AVCodec *codec = NULL;
    int si = s == DT_OK ? av_find_best_stream(r.fc, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0) : -1;
    if (s == DT_OK && (si < 0 || !codec)) s = dt_fail(err, DT_EFORMAT, "%s: no decodable video stream", path);
    if (s == DT_OK) {
        const AVCodecParameters *par = r.fc->streams[si]->codecpar;
        s = check_frames(&r.sink, path, r.fc->streams[si]->nb_frames > 0 ? (uint64_t)r.fc->streams[si]->nb_frames : 1,
                         (uint64_t)(par->width < 0 ? 0 : par->width), (uint64_t)(par->height < 0 ? 0 : par->height), err);
    }
    if (s == DT_OK) {
        r.cc = avcodec_alloc_context3(codec);
        if (r.cc) r.cc->max_pixels = max_pixels > INT_MAX ? INT_MAX : (int64_t)max_pixels;
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
    if (s == DT_OK && !v->frames) s = dt_fail(err, DT_EFORMAT, "%s: no video frames decode", path);
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
    frame_sink k;
    DT_TRY(sink_init(&k, v, err));
    char p[4200];
    for (int f = 0; f < INT_MAX; f++) {
        dt_video_frame_path(path, kind, f, p, sizeof p);
        if (access(p, R_OK) != 0) break;
        dt_image img;
        DT_TRY(dt_image_read(p, &img, err));
        dt_status s = push_frame(&k, p, img.width, img.height, img.rgb, img.width * 3, 3, err);
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
