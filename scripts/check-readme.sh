#!/bin/sh
# Runs the README's commands as a new user would (`make check-readme`): every ```sh block of
# README.md, in order, in a fresh clone of the current commit (HEAD; uncommitted changes are
# not part of it), each block with `sh -e` from the clone's root, so a block sees what the
# blocks before it made (`make demo` first builds ditrt and out/).
#
# ```text blocks (synopses with placeholders) are not run. A ```sh block right after a line
#   <!-- check-readme: skip: REASON -->
# is skipped, printing the reason (slow targets CI runs anyway, the dev-only venv, commands that
# need the reader's own files). Nothing else is skipped.
#
#   scripts/check-readme.sh            # clone, run, summary; exit 0 when every block passed
#   scripts/check-readme.sh --list     # print the blocks (run / skipped, with the reason)
#   KEEP=1 scripts/check-readme.sh     # keep the clone and the logs (their folder is printed)
# Exit: 0 all run blocks passed, 1 a block failed (its README line and output tail printed),
# 2 a setup error (not a git checkout, clone failed).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
readme=README.md

# blocks FILE OUTDIR: writes OUTDIR/N.sh for each block to run and OUTDIR/N.skip (the reason)
# for each skipped one, with OUTDIR/N.line (the README line of its fence); prints the count.
blocks() {
    awk -v out="$2" '
        function flush() { close(f) }
        /^```sh[ \t]*$/ && !inb {
            inb = 1; n++; f = out "/" n (skip != "" ? ".skip" : ".sh")
            print NR > (out "/" n ".line"); close(out "/" n ".line")
            if (skip != "") { print skip > f } else { print "set -e" > f }
            skip = ""; next
        }
        /^```/ && inb { inb = 0; flush(); next }
        /^```/ && !inb { inother = !inother; next }
        inb { if (f !~ /\.skip$/) print > f; next }
        /<!-- check-readme: skip:/ {
            skip = $0; sub(/.*<!-- check-readme: skip: */, "", skip); sub(/ *-->.*/, "", skip); next
        }
        NF { skip = "" }
        END { print n + 0 }' "$1"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ditrt-readme.XXXXXX") || exit 2
if [ -n "${KEEP:-}" ]; then echo "check-readme: keeping $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
mkdir "$tmp/blocks"

if [ "${1:-}" = --list ]; then
    n=$(blocks "$root/$readme" "$tmp/blocks")
    i=1
    while [ "$i" -le "$n" ]; do
        line=$(cat "$tmp/blocks/$i.line")
        if [ -f "$tmp/blocks/$i.skip" ]; then echo "block $i (README line $line): skipped: $(cat "$tmp/blocks/$i.skip")"
        else echo "block $i (README line $line): run"; sed -n '2,$s/^/    /p' "$tmp/blocks/$i.sh"; fi
        i=$((i + 1))
    done
    exit 0
fi

rev=$(git -C "$root" rev-parse HEAD 2>/dev/null) || { echo "check-readme: $root is not a git checkout" >&2; exit 2; }
git -C "$root" diff --quiet HEAD -- "$readme" 2>/dev/null ||
    echo "check-readme: note: $readme has uncommitted changes; the clone checks the committed one ($rev)"
clone=$tmp/clone
git clone -q --no-checkout "$root" "$clone" && git -C "$clone" checkout -q "$rev" ||
    { echo "check-readme: cannot clone $root at $rev" >&2; exit 2; }
n=$(blocks "$clone/$readme" "$tmp/blocks")
echo "check-readme: $n sh blocks in $readme of $rev, run in $clone"

failed=0 ran=0 skipped=0 start=$(date +%s)
i=1
while [ "$i" -le "$n" ]; do
    line=$(cat "$tmp/blocks/$i.line")
    if [ -f "$tmp/blocks/$i.skip" ]; then
        echo "skip  block $i (README line $line): $(cat "$tmp/blocks/$i.skip")"
        skipped=$((skipped + 1)) i=$((i + 1))
        continue
    fi
    t0=$(date +%s)
    (cd "$clone" && sh -e "$tmp/blocks/$i.sh") >"$tmp/blocks/$i.log" 2>&1
    rc=$?
    t=$(($(date +%s) - t0))
    ran=$((ran + 1))
    if [ "$rc" -eq 0 ]; then
        echo "ok    block $i (README line $line, ${t} s): $(sed -n 2p "$tmp/blocks/$i.sh" | cut -c1-80)"
    else
        echo "FAIL  block $i (README line $line, exit $rc after ${t} s):"
        sed -n '2,$s/^/    $ /p' "$tmp/blocks/$i.sh"
        tail -n 15 "$tmp/blocks/$i.log" | sed 's/^/    | /'
        failed=$((failed + 1))
    fi
    i=$((i + 1))
done
echo "check-readme: $((ran - failed)) of $ran blocks passed, $skipped skipped, $(($(date +%s) - start)) s"
[ "$failed" -eq 0 ] || exit 1
exit 0
