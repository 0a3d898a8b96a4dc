#!/bin/sh
# Regenerates the golden images of assets/golden/ with ./ditrt (`make update-golden`): cases.tsv
# from assets/demo-pixart, scenes_cases.tsv from assets/demo-pixart-scenes, and the golden videos
# (folders of PNG frames) of video_cases.tsv from assets/demo-latte. Run it only when a change is
# meant to alter them, look at the new PNGs, and commit them with that change.
# tests/test_golden.c checks ditrt against them.
set -eu
cd "$(dirname "$0")/.."
dir=assets/golden

# regen TSV MODEL txt2img|txt2vid: one PNG (or a folder of frames) per case of TSV
regen() {
  grep -v '^#' "$dir/$1" | while IFS="$(printf '\t')" read -r name steps cfg seed dtype prompt; do
    [ -n "$name" ] || continue
    if [ "$3" = txt2vid ]; then
      out="$dir/$name/"
      rm -rf "${dir:?}/$name" && mkdir "$dir/$name"
    else
      out="$dir/$name.png"
    fi
    echo "ditrt $3 -m $2 -p \"$prompt\" --steps $steps --cfg $cfg --seed $seed --dtype $dtype -o $out"
    ./ditrt "$3" -m "$2" -p "$prompt" --steps "$steps" --cfg "$cfg" --seed "$seed" --dtype "$dtype" \
      --threads 1 --quiet -o "$out"
  done
}

regen cases.tsv assets/demo-pixart txt2img
regen scenes_cases.tsv assets/demo-pixart-scenes txt2img
regen video_cases.tsv assets/demo-latte txt2vid
