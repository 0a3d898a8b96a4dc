#!/bin/sh
# The stacked end-to-end headline (issue 24, item 5): txt2img at RES² on a PixArt-XL-2 + T5-XXL
# shaped pipeline with random weights, rounds alternated, for
#   (a) diffusers' default, 20 steps DPM-Solver++ (only with DIFFUSERS=1: needs /work/venv-cur),
#   (b) ditrt's default, 20 steps DPM-Solver++,
#   (c) ditrt stacked: the 8-NFE USF schedule, a W8A8 quantization plan with int8 attention and
#       a DiTFastAttn plan (both calibrated here once, on this random model, at 8 steps).
# Prints, per setting, the T5 + sampling + decode seconds (ditrt's --json, diffusers' pipe call;
# loading excluded) and the process's wall seconds and peak RSS, min and median of the rounds,
# then the ratios. Random weights: the plans say nothing about a trained model's quality.
#
#   scripts/bench/stacked.sh [PIPELINE_DIR]     # default build/xl-pipe
#   make the folder: /work/venv-cur/bin/python scripts/bench/make_random_folder.py pipeline DIR \
#                      [--layers L] [--t5-layers L]      (full size: 28 and 24 layers, 10.6 GB bf16)
# Env: ROUNDS (default 3), RES (512), THREADS (default: ditrt's), DTYPE (default: ditrt's),
#      DIFFUSERS=1 to run (a), PY (default /work/venv-cur/bin/python).
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
work=$dir.stacked
mkdir -p "$work"
prompt="a red circle on the left of a blue square on a black background"
printf '%s\n' "$prompt" > "$work/prompts.txt"
common="-m $dir -p \"$prompt\" -W $res -H $res --seed 0 -q --json ${THREADS:+--threads $THREADS} ${DTYPE:+--dtype $DTYPE --text-encoder-dtype $DTYPE}"

# Plans for (c), made once (calibration is a few generations of this model).
if [ ! -f "$work/quant/plan.json" ] && [ ! -d "$work/quant" ]; then
    echo "calibrating the W8A8 + int8-attention plan ..." >&2
    eval "$bin quantize -m $dir --prompts $work/prompts.txt --out $work/quant --scheme w8a8 --int8-attn --steps 8 -W $res -H $res -q ${THREADS:+--threads $THREADS}"
fi
if [ ! -f "$work/attn.json" ]; then
    echo "calibrating the DiTFastAttn plan ..." >&2
    eval "$bin calibrate-attn -m $dir --prompts $work/prompts.txt --threshold 0.05 --window 256 --steps 8 -W $res -H $res -o $work/attn.json -q ${THREADS:+--threads $THREADS}"
fi

run_ditrt() { # NAME ARGS...: one timed run, appends "name inner wall rss_kb" to $work/times
    name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/time.txt" sh -c "$bin txt2img $common -o $work/$name.png $* > $work/$name.json"
    inner=$(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['seconds']; print(s['text']+s['sampling']+s['decode'])" "$work/$name.json")
    echo "$name $inner $(cat "$work/time.txt")" >> "$work/times"
}
run_diffusers() {
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$py" "$root/scripts/bench/stacked_diffusers.py" "$dir" "$prompt" "$res" > "$work/a.txt"
    echo "a_diffusers $(cat "$work/a.txt") $(cat "$work/time.txt")" >> "$work/times"
}

: > "$work/times"
echo "load: $(uptime)" >&2
r=0
while [ "$r" -lt "$rounds" ]; do
    r=$((r + 1))
    echo "round $r/$rounds" >&2
    [ "${DIFFUSERS:-0}" = 1 ] && run_diffusers
    run_ditrt b_ditrt_default --steps 20
    run_ditrt c_ditrt_stacked --solver-schedule "$root/configs/solvers/demo-pixart-usf-nfe8.json" \
        --quant "$work/quant" --attn-plan "$work/attn.json"
done
echo "load: $(uptime)" >&2
python3 - "$work/times" "$res" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, inner, wall, rss = line.split()
    rows.setdefault(name, []).append((float(inner), float(wall), int(rss) / 1e6))
print(f"txt2img {sys.argv[2]}x{sys.argv[2]}, {len(next(iter(rows.values())))} rounds alternated "
      "(seconds: T5 + sampling + decode, loading excluded; wall and peak RSS of the whole process)")
print(f"  {'setting':18} {'min s':>8} {'median s':>9} {'wall min':>9} {'peak RSS GB':>12}")
med = {}
for name, v in sorted(rows.items()):
    inner = [x[0] for x in v]
    med[name] = (min(inner), statistics.median(inner), max(x[2] for x in v))
    print(f"  {name:18} {min(inner):8.2f} {statistics.median(inner):9.2f} {min(x[1] for x in v):9.2f} {med[name][2]:12.2f}")
b, c = med.get("b_ditrt_default"), med.get("c_ditrt_stacked")
if b and c:
    print(f"  (c) vs (b): {b[0] / c[0]:.2f}x faster (min), {b[1] / c[1]:.2f}x (median); peak RSS {c[2] / b[2]:.2f}x")
a = med.get("a_diffusers")
if a and c:
    print(f"  (c) vs (a): {a[0] / c[0]:.2f}x faster (min), {a[1] / c[1]:.2f}x (median); (b) vs (a): {a[1] / b[1]:.2f}x (median)")
EOF
