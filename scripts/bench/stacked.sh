#!/bin/sh
# The stacked end-to-end headline (issue 24, item 5): txt2img at RES² on a PixArt-XL-2 + T5-XXL
# shaped pipeline with random weights, rounds alternated, for
#   (a) diffusers' default, 20 steps DPM-Solver++ (only with DIFFUSERS=1: needs /work/venv-cur),
#   (b) ditrt's default, 20 steps DPM-Solver++,
#   (c) ditrt stacked: the 8-NFE USF schedule, a W8A8 quantization plan (INT8_ATTN=1 adds int8
#       self-attention), a DiTFastAttn plan at 8 steps and the T5 encoder with int8 weights
#       (--text-encoder-dtype int8; C_TEXT_DTYPE=f32 or bf16 leaves T5 as in (b)).
# The dtype of all three is DTYPE, default bf16 where the CPU has native bf16, else f32 (ditrt's
# own default rule; stacked_diffusers.py applies the same).
# Plans for (c), made once into DIR.stacked/: the W8A8 plan is calibrated on this random model
# (one prompt, 8 steps) at CALIB_RES² (default 256: activation ranges per input channel, the
# resolution only changes how many tokens are observed); the attention plan, for an XL-2-shaped
# transformer (16 heads, up to 28 layers) at 512², is the shipped XL-2 proxy plan
# configs/attn/xl2-proxy-1024-d0.05.json cut to the model's layers and its first 8 steps, its
# window rescaled to 1/8 of 1024 tokens (ATTN_PLAN=FILE gives another; other shapes are
# calibrated here with calibrate-attn). Random weights: the plans say nothing
# about a trained model's quality (scripts/bench/stacked_quality.py scores the setting on the demo model).
# Prints, per setting, the T5 + sampling + decode seconds (ditrt's --json, diffusers' pipe call;
# loading excluded), the process's wall seconds, CPU seconds (user+sys) and peak RSS
# (/usr/bin/time's %M, as -v prints it), min and median of the rounds, then the ratios.
#
#   scripts/bench/stacked.sh [PIPELINE_DIR]     # default build/xl-pipe
#   make the folder: /work/venv-cur/bin/python scripts/bench/make_random_folder.py pipeline DIR \
#                      [--layers L] [--t5-layers L]      (full size: 28 and 24 layers, 10.6 GB bf16)
# Env: ROUNDS (default 3), RES (512), THREADS (default: ditrt's), DTYPE (default: as above),
#      DIFFUSERS=1 to run (a), PY (default /work/venv-cur/bin/python), ORDER (default "a b c": the
#      settings of one round, in order), LOCKS (files; every timed run holds `flock` on each, e.g.
#      LOCKS="/work/bigmem.lock /work/bench.lock" on a shared machine: the locks are released
#      between runs, so other jobs may run between them), CALIB_LOCKS (the same for the plan
#      calibrations; default LOCKS), INT8_ATTN=1, CALIB_RES, ATTN_PLAN, C_TEXT_DTYPE (default int8),
#      B_TEXT_DTYPE (default DTYPE), TEXT_FIRST (1: diffusers encodes the prompt with the text
#      encoder alone, frees it, then loads the rest, the low-memory way of its PixArt docs; 0: one
#      pipeline; default 1 when the folder's weights in DTYPE pass 80% of MemTotal, e.g. the full
#      T5-XXL in f32).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/build/xl-pipe}
rounds=${ROUNDS:-3}
res=${RES:-512}
py=${PY:-/work/venv-cur/bin/python}
bin=$root/ditrt
[ -x "$bin" ] || { echo "stacked.sh: build ditrt first (make)" >&2; exit 2; }
[ -f "$dir/model_index.json" ] || {
    echo "stacked.sh: no pipeline folder $dir; make one with scripts/bench/make_random_folder.py pipeline $dir" >&2
    exit 2
}
if [ -z "${DTYPE:-}" ]; then
    if grep -q -E 'avx512_bf16|amx_bf16' /proc/cpuinfo; then DTYPE=bf16; else DTYPE=f32; fi
fi
work=$dir.stacked
mkdir -p "$work"
prompt="a red circle on the left of a blue square on a black background"
printf '%s\n' "$prompt" > "$work/prompts.txt"
# --no-binning: stacked_diffusers.py passes use_resolution_binning=False, so diffusers generates
# RES² as asked; with binning, ditrt (as diffusers' default) would generate the 1024² bin of a
# 1024-px model (4x the tokens) and resize it back, which is not the same work.
common="-m $dir -p \"$prompt\" -W $res -H $res --no-binning --seed 0 -q --json ${THREADS:+--threads $THREADS} --dtype $DTYPE"
locked="" # the flock prefix of every timed run
for l in ${LOCKS:-}; do locked="$locked flock $l"; done
calib_locked="" # the calibrations are not timed: CALIB_LOCKS (default LOCKS), e.g. the big-memory lock only
for l in ${CALIB_LOCKS-${LOCKS:-}}; do calib_locked="$calib_locked flock $l"; done
int8=""
[ "${INT8_ATTN:-0}" = 1 ] && int8=" --int8-attn"
quant=$work/quant
[ -n "$int8" ] && quant=$work/quant-int8attn
layers=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_layers'])" "$dir/transformer/config.json")

# Plans for (c), made once (calibration runs this model a few times: it holds the big-memory lock too).
if [ ! -f "$quant/plan.json" ]; then
    echo "calibrating the W8A8$int8 plan at ${CALIB_RES:-256}² ..." >&2
    eval "$calib_locked $bin quantize -m $dir --prompts $work/prompts.txt --out $quant --scheme w8a8$int8 --steps 8 \
        -W ${CALIB_RES:-256} -H ${CALIB_RES:-256} --dtype $DTYPE -q ${THREADS:+--threads $THREADS}"
fi
attn=${ATTN_PLAN:-$work/attn.json}
if [ ! -f "$attn" ] && [ "$layers" -le 28 ] && [ "$res" = 512 ] && [ "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('num_attention_heads'))" "$dir/transformer/config.json")" = 16 ]; then
    echo "attention plan: configs/attn/xl2-proxy-1024-d0.05.json, first $layers layers and 8 steps, window 128 of 1024 tokens" >&2
    python3 - "$root/configs/attn/xl2-proxy-1024-d0.05.json" "$attn" "$layers" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))
n = int(sys.argv[3])
p["model"] = ("scripts/bench/stacked.sh: " + sys.argv[1].split("/")[-1] + f" cut to its first {n} layers and 8 steps, "
              "window 512 of 4096 tokens rescaled to 128 of 1024 (512 px); random-weight proxy plan: times the machinery only")
p["steps"], p["window"], p["tokens"] = 8, 128, 1024
p["layers"] = [row[:8] for row in p["layers"][:n]]
json.dump(p, open(sys.argv[2], "w"))
PYEOF
elif [ ! -f "$attn" ]; then
    echo "calibrating the DiTFastAttn plan ..." >&2
    eval "$calib_locked $bin calibrate-attn -m $dir --prompts $work/prompts.txt --threshold 0.05 --window $(( (res / 16) * (res / 16) / 8 + 1 )) --steps 8 -W $res -H $res -o $attn --dtype $DTYPE -q ${THREADS:+--threads $THREADS}"
fi
"$bin" info -m "$dir" --attn-plan "$attn" >&2 || true

stamp() { # NAME: appends "name inner wall rss_kb cpu_s load1" from $work/inner.txt and time.txt
    read -r wall rss usr sys < "$work/time.txt"
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "$1 $(cat "$work/inner.txt") $wall $rss $(python3 -c "print($usr + $sys)") $load" >> "$work/times"
    echo "  $1: $(tail -n 1 "$work/times")" >&2
}
run_ditrt() { # NAME ARGS...: one timed run
    name=$1; shift
    eval "$locked /usr/bin/time -f '%e %M %U %S' -o $work/time.txt $bin txt2img $common -o $work/$name.png $* > $work/$name.json"
    python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['seconds']; print(s['text']+s['sampling']+s['decode'])" \
        "$work/$name.json" > "$work/inner.txt"
    # each run's T5 / sampling / decode seconds (the JSON is overwritten by the next round)
    python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['seconds']; print(sys.argv[2], *(round(s[k], 2) for k in ('text', 'sampling', 'decode')))" \
        "$work/$name.json" "$name" >> "$work/splits"
    stamp "$name"
}
if [ -z "${TEXT_FIRST:-}" ]; then # the folder's weights in DTYPE against the machine's memory
    TEXT_FIRST=$(python3 - "$dir" "$DTYPE" <<'PYEOF'
import glob, json, os, struct, sys
d, dt = sys.argv[1], sys.argv[2]
n = 0
for f in glob.glob(os.path.join(d, "*", "*.safetensors")):
    with open(f, "rb") as fh:
        h = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    for k, v in h.items():
        if k != "__metadata__":
            e = 1
            for x in v["shape"]:
                e *= x
            n += e * (2 if dt == "bf16" else 4)
mem = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]) * 1024
print(1 if n > 0.8 * mem else 0)
PYEOF
)
fi
[ "$TEXT_FIRST" = 1 ] && echo "(a) encodes the prompt with the text encoder alone, then samples without it (TEXT_FIRST=1)" >&2
run_diffusers() {
    tf=""
    [ "$TEXT_FIRST" = 1 ] && tf=" --text-first"
    eval "$locked /usr/bin/time -f '%e %M %U %S' -o $work/time.txt $py $root/scripts/bench/stacked_diffusers.py $dir \"$prompt\" $res $DTYPE$tf" \
        > "$work/inner.txt"
    stamp a_diffusers
}

: > "$work/times"
: > "$work/splits"
echo "load: $(uptime)" >&2
r=0
while [ "$r" -lt "$rounds" ]; do
    r=$((r + 1))
    echo "round $r/$rounds" >&2
    for s in ${ORDER:-a b c}; do
        case $s in
        a) if [ "${DIFFUSERS:-0}" = 1 ]; then run_diffusers; fi ;;
        b) run_ditrt b_ditrt_default --steps 20 --text-encoder-dtype "${B_TEXT_DTYPE:-$DTYPE}" ;;
        c) run_ditrt c_ditrt_stacked --steps 8 --solver-schedule "$root/configs/solvers/demo-pixart-usf-nfe8.json" \
               --quant "$quant" --attn-plan "$attn" --text-encoder-dtype "${C_TEXT_DTYPE:-int8}" ;;
        esac
    done
done
echo "load: $(uptime)" >&2
echo "ditrt's seconds per run (T5 incl. loading it / sampling / decode):" >&2
sed 's/^/  /' "$work/splits" >&2
python3 - "$work/times" "$res" "$DTYPE" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, inner, wall, rss, cpu, load = line.split()
    rows.setdefault(name, []).append((float(inner), float(wall), int(rss) / 1e6, float(cpu), float(load)))
n = len(next(iter(rows.values())))
print(f"txt2img {sys.argv[2]}x{sys.argv[2]} {sys.argv[3]}, {n} round(s) alternated (seconds: T5 + sampling + decode, "
      "loading excluded; wall, CPU user+sys and peak RSS of the whole process; load: 1-min load average after the run)")
print(f"  {'setting':18} {'min s':>8} {'median s':>9} {'wall min':>9} {'CPU s min':>10} {'peak RSS GB':>12} {'load':>10}")
med = {}
for name, v in sorted(rows.items()):
    inner = [x[0] for x in v]
    cpu = [x[3] for x in v]
    med[name] = (min(inner), statistics.median(inner), max(x[2] for x in v), min(cpu))
    loads = "-".join(f"{x[4]:.1f}" for x in v)
    print(f"  {name:18} {min(inner):8.2f} {statistics.median(inner):9.2f} {min(x[1] for x in v):9.2f} {min(cpu):10.1f} "
          f"{med[name][2]:12.2f} {loads:>10}")
b, c = med.get("b_ditrt_default"), med.get("c_ditrt_stacked")
if b and c:
    print(f"  (c) vs (b): {b[0] / c[0]:.2f}x faster (min), {b[1] / c[1]:.2f}x (median), CPU {b[3] / c[3]:.2f}x; "
          f"peak RSS (c)/(b) {c[2] / b[2]:.2f}")
a = med.get("a_diffusers")
if a and c:
    print(f"  (c) vs (a): {a[0] / c[0]:.2f}x faster (min), {a[1] / c[1]:.2f}x (median), CPU {a[3] / c[3]:.2f}x")
if a and b:
    print(f"  (b) vs (a): {a[0] / b[0]:.2f}x faster (min), {a[1] / b[1]:.2f}x (median), CPU {a[3] / b[3]:.2f}x; "
          f"peak RSS (b)/(a) {b[2] / a[2]:.2f}")
