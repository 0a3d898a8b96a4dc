#!/bin/sh
# `make fuzz`: runs each libFuzzer harness (build-fuzz/fuzz_<target>, built by the Makefile
# with clang -fsanitize=fuzzer,address,undefined) for FUZZ_SECONDS, with a 2 GB RSS limit and
# a per-input timeout. Each target's working corpus lives in build-fuzz/corpus/<target>/
# (kept between runs), seeded from the repo's own files (seed_<target> below and
# tests/fuzz/seeds/<target>/). A crash, leak, timeout or OOM leaves the input in
# build-fuzz/artifacts/<target>/; copy it to tests/fuzz/corpus/<target>/crash-<name> so that
# `make test` replays it from then on. Exits 1 if any target failed.
#   FUZZ_SECONDS (20)  FUZZ_TARGETS (all)  FUZZ_TIMEOUT (per input, s; 10)  FUZZ_JOBS (parallel, 1)
#   FUZZ_SEED (unset: random; CI sets one so that its smoke run repeats the same mutations)
set -u
cd "$(dirname "$0")/.."
B=build-fuzz
SECONDS_EACH=${FUZZ_SECONDS:-20}
TIMEOUT=${FUZZ_TIMEOUT:-10}
JOBS=${FUZZ_JOBS:-1}
TARGETS=${FUZZ_TARGETS:-$(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||')}

# copies files (at most 256 KiB each) into the target's corpus folder, named by path
seed() {
    t=$1; shift
    for f in "$@"; do
        [ -f "$f" ] || continue
        [ "$(wc -c < "$f")" -le 262144 ] || continue
        cp "$f" "$B/corpus/$t/seed-$(echo "$f" | tr '/' '_')"
    done
}

# tokenizer inputs: 4-byte little-endian length of tokenizer_config.json, it, spiece.model
pack_tokenizer() {
    dir=$1 out=$2
    if [ -f "$dir/tokenizer_config.json" ]; then n=$(wc -c < "$dir/tokenizer_config.json"); else n=0; fi
    { printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)))"
      [ "$n" -gt 0 ] && cat "$dir/tokenizer_config.json"; cat "$dir/spiece.model"; } > "$out"
}

seed_corpora() {
    for t in $TARGETS; do mkdir -p "$B/corpus/$t" "$B/artifacts/$t"; done
    for t in $TARGETS; do
        case $t in
        safetensors) seed $t $(find tests/fixtures assets -name '*.safetensors' -size -64k | sort | head -40) ;;
        denoiser_config) seed $t $(find tests/fixtures assets \( -path '*transformer/config.json' -o -path '*unet/config.json' \) | sort) ;;
        vae_config) seed $t $(find tests/fixtures assets -path '*vae/config.json' | sort) ;;
        t5_config) seed $t $(find tests/fixtures assets -path '*text_encoder/config.json' | sort) ;;
        scheduler_config) seed $t $(find tests/fixtures assets -name scheduler_config.json | sort) ;;
        attn_plan) seed $t configs/attn/*.json tests/fixtures/fastattn/plan_*.json ;;
        usf_schedule) seed $t configs/solvers/*.json $(find tests/fixtures/usf_v3 -name schedule.json | sort) ;;
        quant_plan)
            printf '%s' '{"format": "ditrt-quant-plan", "version": 1, "scheme": "w8a8", "model": "m", "layers": [{"name": "blocks.0.attn.q", "in": 64, "out": 32, "weight_bits": 8, "act_bits": 8, "balance": true, "alpha": 0.5}, {"name": "blocks.0.ff", "in": 64, "out": 64, "weight_bits": 4, "act_bits": 8, "group": 32, "rotate_seed": 7, "rot_block": 64, "fp_tokens": [0, 3]}, {"name": "proj_out", "in": 64, "out": 16, "weight_bits": 0}]}' > "$B/corpus/$t/seed-plan" ;;
        model_schedule)
            printf '%s' '{"format": "ditrt-model-schedule", "zoo": ["assets/demo-pixart", "w8a8"], "models": [0, 1, 1, 2, 0, 0]}' > "$B/corpus/$t/seed-schedule" ;;
        tokenizer)
            for d in $(find tests/fixtures assets -name spiece.model -size -300k | sort | head -3); do
                pack_tokenizer "$(dirname "$d")" "$B/corpus/$t/seed-$(dirname "$d" | tr '/' '_')"
            done ;;
        image) seed $t tests/fixtures/image/*.png assets/readme/demo.png tests/fuzz/seeds/image/* ;;
        video) seed $t tests/fuzz/seeds/video/* ;;
        clip_tokenizer) seed $t tests/fuzz/seeds/clip_tokenizer/* ;;
        esac
    done
}

run_one() {
    t=$1
    log="$B/logs/$t.log"
    "$B/fuzz_$t" ${FUZZ_SEED:+-seed=$FUZZ_SEED} -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout="$TIMEOUT" \
        -max_len=300000 -print_final_stats=1 -artifact_prefix="$B/artifacts/$t/" "$B/corpus/$t" > "$log" 2>&1
    rc=$?
    export LC_ALL=C
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    last=$(grep -aE '^#[0-9]+.*(cov|ft):' "$log" | tail -1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(ls "$B/corpus/$t" | wc -l)
    if [ $rc -eq 0 ]; then st=ok; else st="FAILED (rc $rc; $(ls "$B/artifacts/$t" | tr '\n' ' ')see $log)"; fi
    echo "fuzz $t: ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, corpus $corp: $st"
    [ $rc -eq 0 ]
}

mkdir -p "$B/logs"
seed_corpora
fail=0
if [ "$JOBS" -le 1 ]; then
    for t in $TARGETS; do run_one "$t" || fail=1; done
else
    # at most JOBS at once
    set -- $TARGETS
    while [ $# -gt 0 ]; do
        pids=""
        i=0
        while [ $i -lt "$JOBS" ] && [ $# -gt 0 ]; do run_one "$1" > "$B/logs/$1.summary" & pids="$pids $!"; shift; i=$((i + 1)); done
        for p in $pids; do wait "$p" || fail=1; done
    done
    for t in $TARGETS; do cat "$B/logs/$t.summary"; done
fi
[ $fail -eq 0 ] && echo "make fuzz: no crashes, leaks, timeouts or OOMs" || echo "make fuzz: FAILED (inputs in $B/artifacts/)"
exit $fail
