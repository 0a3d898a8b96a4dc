"""Synthetic captioned shapes for the ditrt demo model (issue 8).

Each sample is a 32x32 RGB image of one flat-colored shape (circle, square or triangle)
on a plain background, with a caption naming the color, the shape, where it is and the
background color, e.g. "a red circle on the left on a black background". Shapes are drawn
at 4x resolution and box-filtered down, so edges are anti-aliased like real images.
Everything is drawn from a private numpy Generator: a seed fixes the whole stream.

The vocabulary is deliberately tiny (5 colors x 3 shapes x 5 positions x 3 backgrounds =
225 captions) so a model of a few MB learns it on one CPU thread in under an hour.
scripts/demo/quality.py scores generated images against the same palette and geometry.
"""
import numpy as np

SIZE = 32
SS = 4  # supersampling factor for anti-aliasing

COLORS = {  # shape colors (RGB 0..255)
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 200),
}
BACKGROUNDS = {
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = {  # name -> center (x, y) in pixels; "" = centered
    "": (16.0, 16.0),
    "on the left": (9.5, 16.0),
    "on the right": (22.5, 16.0),
    "at the top": (16.0, 9.5),
    "at the bottom": (16.0, 22.5),
}


def caption(color, shape, pos, bg):
    where = f" {pos}" if pos else ""
    return f"a {color} {shape}{where} on a {bg} background"


def all_captions():
    return [caption(c, s, p, b) for c in COLORS for s in SHAPES for p in POSITIONS for b in BACKGROUNDS]


def render(color, shape, pos, bg, rng):
    """One HxWx3 uint8 image; size and position are jittered by rng."""
    cx, cy = POSITIONS[pos]
    cx, cy = cx + rng.uniform(-1.5, 1.5), cy + rng.uniform(-1.5, 1.5)
    return render_at(color, shape, cx, cy, rng.uniform(5.0, 6.5), bg)


def render_at(color, shape, cx, cy, r, bg):
    """One HxWx3 uint8 image of the shape centered at (cx, cy) px with half-extent r px."""
    return render_shapes(color, shape, [(cx, cy)], r, bg)


def _shape_mask(shape, cx, cy, r, xs, ys):
    if shape == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(xs - cx) <= r) & (np.abs(ys - cy) <= r)
    # upright isosceles triangle filling the box [cx-r, cx+r] x [cy-r, cy+r]
    t = (ys - (cy - r)) / (2 * r)  # 0 at the apex, 1 at the base
    return (t >= 0) & (t <= 1) & (np.abs(xs - cx) <= t * r)


def render_shapes(color, shape, centers, r, bg):
    """One HxWx3 uint8 image of the same shape at each (cx, cy) px of centers, half-extent r px."""
    n = SIZE * SS
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    m = np.zeros((n, n), bool)
    for cx, cy in centers:
        m |= _shape_mask(shape, cx * SS, cy * SS, r * SS, xs, ys)
    fg = np.asarray(COLORS[color], np.float32)
    bgc = np.asarray(BACKGROUNDS[bg], np.float32)
    img = np.where(m[..., None], fg, bgc)
    img = img.reshape(SIZE, SS, SIZE, SS, 3).mean(axis=(1, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def sample(rng):
    """(image uint8 [32,32,3], caption) with every attribute uniform."""
    color = list(COLORS)[rng.integers(len(COLORS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    pos = list(POSITIONS)[rng.integers(len(POSITIONS))]
    bg = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    return render(color, shape, pos, bg, rng), caption(color, shape, pos, bg)


def batch(rng, n, draw=None):
    """n samples of draw (default: sample) as float32 [n,3,32,32] in [-1,1] (the VAE's range) and
    a caption list."""
    imgs, caps = zip(*((draw or sample)(rng) for _ in range(n)))
    x = np.stack(imgs).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    return x, list(caps)


# ---- video (the Latte demo model) ----
# A clip is FRAMES frames of one shape sliding TRAVEL px in a straight line at constant speed,
# centered on the middle of its path (jittered like the still images). 8 frames: enough for the
# motion to read at a glance (1.7 px per frame, 3 latent cells in all) while a clip costs only
# 8x an image to train on one CPU thread.
FRAMES = 8
TRAVEL = 12.0
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}  # image y grows downward
OPPOSITE = {d: next(e for e, v in DIRECTIONS.items() if v == (-u[0], -u[1])) for d, u in DIRECTIONS.items()}
STATIC_FRACTION = 0.25  # clips of a still shape, captioned like the images ("... on the left ...")


def video_caption(color, shape, direction, bg):
    return f"a {color} {shape} moving {direction} on a {bg} background"


def all_video_captions():
    return [video_caption(c, s, d, b) for c in COLORS for s in SHAPES for d in DIRECTIONS for b in BACKGROUNDS]


def reversed_caption(cap):
    """The caption of a clip played backwards: a moving shape's direction flipped (a reversed clip of
    render_clip is exactly a clip toward the opposite direction); other captions unchanged."""
    words = cap.split()
    if "moving" in words:
        i = words.index("moving") + 1
        words[i] = OPPOSITE[words[i]]
    return " ".join(words)


def render_clip(color, shape, direction, bg, rng):
    """[FRAMES, H, W, 3] uint8: the shape sliding TRAVEL px toward `direction`."""
    dx, dy = DIRECTIONS[direction]
    cx, cy = 16.0 + rng.uniform(-1.5, 1.5), 16.0 + rng.uniform(-1.5, 1.5)
    r = rng.uniform(5.0, 6.5)
    steps = np.linspace(-TRAVEL / 2, TRAVEL / 2, FRAMES)
    return np.stack([render_at(color, shape, cx + dx * s, cy + dy * s, r, bg) for s in steps])


def sample_clip(rng):
    """(clip uint8 [FRAMES,32,32,3], caption): a moving shape, or (STATIC_FRACTION) a still image
    repeated, with every attribute uniform."""
    if rng.random() < STATIC_FRACTION:
        img, cap = sample(rng)
        return np.repeat(img[None], FRAMES, 0), cap
    color = list(COLORS)[rng.integers(len(COLORS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
    bg = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    return render_clip(color, shape, direction, bg, rng), video_caption(color, shape, direction, bg)


def clip_batch(rng, n):
    """n clips as float32 [n,FRAMES,3,32,32] in [-1,1] and a caption list."""
    clips, caps = zip(*(sample_clip(rng) for _ in range(n)))
    x = np.stack(clips).astype(np.float32).transpose(0, 1, 4, 2, 3) / 127.5 - 1.0
    return x, list(caps)


# ---- scenes: sizes and counts (the demo-pixart-scenes model) ----
# The plain images above plus the same shapes captioned with a size ("a small red circle on the
# left on a black background"; small and large lie outside the plain shapes' 5..6.5 px) or a
# count ("two green squares on a white background": 2 or 3 equal shapes in a row or a column).
SIZES = {"small": (4.0, 4.5), "large": (7.25, 8.25)}  # half-extent ranges, px
COUNTS = {"two": 2, "three": 3}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles"}
COUNT_RADIUS = {2: (4.5, 5.25), 3: (3.75, 4.1)}  # smaller shapes when there are more of them
COUNT_SPACING = {2: 13.0, 3: 10.5}  # center to center, px
SCENE_MIX = {"plain": 0.25, "sized": 0.4, "count": 0.35}


def sized_caption(size, color, shape, pos, bg):
    where = f" {pos}" if pos else ""
    return f"a {size} {color} {shape}{where} on a {bg} background"


def count_caption(count, color, shape, bg):
    return f"{count} {color} {PLURALS[shape]} on a {bg} background"


def all_scene_captions():
    return (all_captions()
            + [sized_caption(z, c, s, p, b) for z in SIZES for c in COLORS for s in SHAPES for p in POSITIONS
               for b in BACKGROUNDS]
            + [count_caption(k, c, s, b) for k in COUNTS for c in COLORS for s in SHAPES for b in BACKGROUNDS])


def render_sized(size, color, shape, pos, bg, rng):
    cx, cy = POSITIONS[pos]
    cx, cy, r = cx + rng.uniform(-1.5, 1.5), cy + rng.uniform(-1.5, 1.5), rng.uniform(*SIZES[size])
    # a large shape on a side is moved in until it fits (still > 3.5 px off center)
    cx, cy = (float(np.clip(v, r + 0.5, SIZE - r - 0.5)) for v in (cx, cy))
    return render_at(color, shape, cx, cy, r, bg)


def count_centers(n, vertical, rng):
    """n centers COUNT_SPACING apart along one axis through the (jittered) image center (the
    shapes stay >= 2.3 px apart, so they read as separate)."""
    c0, c1 = 16.0 + rng.uniform(-1.0, 1.0), 16.0 + rng.uniform(-1.0, 1.0)
    offs = (np.arange(n) - (n - 1) / 2) * COUNT_SPACING[n]
    return [(c1, c0 + o) if vertical else (c0 + o, c1) for o in offs]


def render_count(count, color, shape, bg, rng):
    n = COUNTS[count]
    centers = count_centers(n, bool(rng.integers(2)), rng)
    return render_shapes(color, shape, centers, rng.uniform(*COUNT_RADIUS[n]), bg)


def sample_scene(rng):
    """(image uint8 [32,32,3], caption): plain, sized or counted (SCENE_MIX), attributes uniform."""
    kind = rng.choice(list(SCENE_MIX), p=list(SCENE_MIX.values()))
    if kind == "plain":
        return sample(rng)
    color = list(COLORS)[rng.integers(len(COLORS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    bg = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    if kind == "sized":
        size = list(SIZES)[rng.integers(len(SIZES))]
        pos = list(POSITIONS)[rng.integers(len(POSITIONS))]
        return render_sized(size, color, shape, pos, bg, rng), sized_caption(size, color, shape, pos, bg)
    count = list(COUNTS)[rng.integers(len(COUNTS))]
    return render_count(count, color, shape, bg, rng), count_caption(count, color, shape, bg)


def scene_batch(rng, n):
    """n scenes as float32 [n,3,32,32] in [-1,1] and a caption list."""
    return batch(rng, n, sample_scene)


if __name__ == "__main__":
    import sys
    from PIL import Image
    rng = np.random.default_rng(0)
    draw = sample_scene if "--scenes" in sys.argv else sample
    tiles = [draw(rng) for _ in range(16)]
    grid = np.concatenate([np.concatenate([t[0] for t in tiles[i:i + 4]], 1) for i in range(0, 16, 4)], 0)
    out = [x for x in sys.argv[1:] if not x.startswith("--")]
    Image.fromarray(grid).resize((256, 256), Image.NEAREST).save(out[0] if out else "/tmp/grid.png")
    for _, c in tiles:
        print(c)
