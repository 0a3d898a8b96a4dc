#!/bin/sh
# Golden outputs for your own models: record what ditrt makes for a list of cases, then check
# later runs (a new ditrt, another machine, a changed model folder) against the record.
#
#   scripts/golden.sh update CASES GOLDEN_DIR    # (re)writes GOLDEN_DIR from the cases
#   scripts/golden.sh check  CASES GOLDEN_DIR    # regenerates every case and compares
#
# CASES: one case a line, `NAME<TAB>ditrt arguments` (txt2img or txt2vid, without -o), e.g.
#   red_circle	txt2img -m my-model -p "a red circle" --steps 20 --cfg 4.5 --seed 1 --dtype f32
#   clip	txt2vid -m my-video-model -p "a boat" --steps 25 --seed 3 --dtype f32
# Empty lines and lines starting with # are skipped; the arguments are read by the shell (quote
# prompts as on a command line; the file is yours, it is evaluated as shell words).
# Each case is stored as GOLDEN_DIR/NAME.png (txt2img) or GOLDEN_DIR/NAME/ (txt2vid: PNG frames,
# lossless; an MP4 re-encode alone moves a clip by ~40 dB) and GOLDEN_DIR/NAME.json, the
# settings the run reported (`--json` without its timings and output paths).
#
# check passes a case when (1) the settings are the same as recorded (the exact text, so a
# changed default, solver, step count, cfg, seed, size or dtype is caught even where the pixels
# barely move: 19 vs 20 steps is 47-63 dB on the demo model) and (2) `ditrt compare` reaches
# GOLDEN_MIN_PSNR (default inf: identical pixels, right on the machine and build that made the
# goldens, where ditrt is deterministic; use 40 across machines or builds: f32 results move by
# 50+ dB with the CPU's kernels, a changed seed or prompt lands below 40).
# Environment: DITRT (the binary, default `ditrt` on the PATH, else ./ditrt), GOLDEN_MIN_PSNR.
# Exit: 0 every case passed (check) or was written (update), 1 a case failed a check,
# 2 an error (bad arguments or case line, a run that failed).
set -u
usage() { echo "usage: $0 update|check CASES GOLDEN_DIR" >&2; exit 2; }
[ $# -eq 3 ] || usage
mode=$1 cases=$2 dir=$3
case $mode in update|check) ;; *) usage ;; esac
[ -f "$cases" ] || { echo "golden: $cases: no such file" >&2; exit 2; }
if [ -z "${DITRT:-}" ]; then
    if command -v ditrt >/dev/null 2>&1; then DITRT=ditrt; else DITRT=./ditrt; fi
fi
min_psnr=${GOLDEN_MIN_PSNR:-inf}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ditrt-golden.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
[ "$mode" = check ] || mkdir -p "$dir" || exit 2

# run NAME OUTDIR ARGS...: one case into OUTDIR (NAME.png or NAME/, and NAME.json)
run() {
    name=$1 out=$2
    shift 2
    case ${1:-} in
        txt2img) target=$out/$name.png ;;
        txt2vid) target=$out/$name/; rm -rf "${out:?}/$name"; mkdir -p "$target" ;;
        *) echo "golden: $cases: case $name: expected txt2img or txt2vid, got \"${1:-}\"" >&2; return 2 ;;
    esac
    "$DITRT" "$@" --quiet --json --force -o "$target" >"$tmp/run.json" 2>"$tmp/run.err" ||
        { echo "golden: case $name: $DITRT $* failed: $(cat "$tmp/run.err")" >&2; return 2; }
    # the settings: drop the timings (a "seconds" object) and the output paths
    sed -e '/"seconds":/,/}/d' -e '/"outputs":/d' "$tmp/run.json" >"$out/$name.json"
}

fails=0 count=0
tab=$(printf '\t')
while IFS= read -r line || [ -n "$line" ]; do
    case $line in ''|'#'*) continue ;; esac
    name=${line%%"$tab"*}
    args=${line#*"$tab"}
    [ "$name" != "$line" ] && [ -n "$name" ] || { echo "golden: $cases: bad line (want NAME<TAB>arguments): $line" >&2; exit 2; }
    eval "set -- $args" || { echo "golden: $cases: case $name: cannot read its arguments" >&2; exit 2; }
    count=$((count + 1))
    if [ "$mode" = update ]; then
        run "$name" "$dir" "$@" || exit 2
        echo "golden: wrote $name"
        continue
    fi
    run "$name" "$tmp" "$@" || exit 2
    golden=$dir/$name.png new=$tmp/$name.png
    [ "$1" = txt2vid ] && golden=$dir/$name new=$tmp/$name
    if ! [ -e "$golden" ] || ! [ -f "$dir/$name.json" ]; then
        echo "golden: case $name: no golden in $dir (run: $0 update $cases $dir)" >&2; exit 2
    fi
    if ! diff -u "$dir/$name.json" "$tmp/$name.json" >"$tmp/settings.diff"; then
        echo "FAIL $name: the settings differ from the golden's:"; sed -n '3,$p' "$tmp/settings.diff"
        fails=$((fails + 1))
        continue
    fi
    "$DITRT" compare "$new" "$golden" --min-psnr "$min_psnr" >"$tmp/cmp.txt" 2>&1
    rc=$?
    metric=$(grep -i 'psnr' "$tmp/cmp.txt" | tail -1)
    case $rc in
        0) echo "ok   $name ($metric)" ;;
        1) echo "FAIL $name: $metric, below $min_psnr dB"; fails=$((fails + 1)) ;;
        *) echo "golden: case $name: $(cat "$tmp/cmp.txt")" >&2; exit 2 ;;
    esac
done <"$cases"
[ "$count" -gt 0 ] || { echo "golden: $cases: no cases" >&2; exit 2; }
if [ "$mode" = check ]; then
    echo "golden: $((count - fails)) of $count cases passed"
    [ "$fails" -eq 0 ] || exit 1
fi
exit 0
