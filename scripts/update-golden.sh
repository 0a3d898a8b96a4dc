#!/bin/sh
# Regenerates the golden images of assets/golden/ from assets/demo-pixart, and the golden videos
# (folders of PNG frames) from assets/demo-latte, with ./ditrt (`make update-golden`). Run it
# only when a change is meant to alter them, look at the new PNGs, and commit them with that
# change. tests/test_golden.c checks ditrt against them.
set -eu
cd "$(dirname "$0")/.."
model=assets/demo-pixart
dir=assets/golden
grep -v '^#' "$dir/cases.tsv" | while IFS="$(printf '\t')" read -r name steps cfg seed dtype prompt; do
  [ -n "$name" ] || continue
  echo "ditrt txt2img -m $model -p \"$prompt\" --steps $steps --cfg $cfg --seed $seed --dtype $dtype -o $dir/$name.png"
  ./ditrt txt2img -m "$model" -p "$prompt" --steps "$steps" --cfg "$cfg" --seed "$seed" --dtype "$dtype" \
    --threads 1 --quiet -o "$dir/$name.png"
done
grep -v '^#' "$dir/video_cases.tsv" | while IFS="$(printf '\t')" read -r name steps cfg seed dtype prompt; do
  [ -n "$name" ] || continue
  echo "ditrt txt2vid -m assets/demo-latte -p \"$prompt\" --steps $steps --cfg $cfg --seed $seed --dtype $dtype -o $dir/$name/"
  rm -rf "${dir:?}/$name" && mkdir "$dir/$name"
  ./ditrt txt2vid -m assets/demo-latte -p "$prompt" --steps "$steps" --cfg "$cfg" --seed "$seed" --dtype "$dtype" \
    --threads 1 --quiet -o "$dir/$name/"
done
