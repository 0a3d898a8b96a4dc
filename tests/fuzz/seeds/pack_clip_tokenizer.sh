#!/bin/sh
# Packs a CLIP tokenizer folder and a prompt as tests/fuzz/fuzz_clip_tokenizer.c reads them:
#   sh tests/fuzz/seeds/pack_clip_tokenizer.sh DIR PROMPT OUT
set -eu
dir=$1 prompt=$2 out=$3
le32() { printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)))"; }
n1=0; [ -f "$dir/tokenizer_config.json" ] && n1=$(wc -c < "$dir/tokenizer_config.json")
{ le32 "$n1"; le32 "$(wc -c < "$dir/vocab.json")"; le32 "$(wc -c < "$dir/merges.txt")"
  [ "$n1" -gt 0 ] && cat "$dir/tokenizer_config.json"
  cat "$dir/vocab.json" "$dir/merges.txt"; printf '%s' "$prompt"; } > "$out"
