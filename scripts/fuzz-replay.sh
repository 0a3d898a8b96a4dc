#!/bin/sh
# Part of `make test`: replays the committed regression corpus (every input a fuzzer ever
# crashed on, tests/fuzz/corpus/<target>/) through each harness's LLVMFuzzerTestOneInput,
# built with the normal compiler and flags (build/fuzz-replay/fuzz_<target>; no libFuzzer, no
# clang). Inputs listed in tests/fuzz/known-issues.txt (defects not fixed on this branch yet)
# are left out and counted.
set -u
cd "$(dirname "$0")/.."
fail=0
skipped=0
for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    t=${t#fuzz_}
    set --
    for f in tests/fuzz/corpus/$t/*; do
        [ -f "$f" ] || continue
        if grep -q "^$f\([[:space:]]\|\$\)" tests/fuzz/known-issues.txt 2>/dev/null; then skipped=$((skipped + 1)); continue; fi
        set -- "$@" "$f"
    done
    if OMP_NUM_THREADS=1 "build/fuzz-replay/fuzz_$t" "$@" > /dev/null; then
        echo "fuzz replay $t: $# inputs ok"
    else
        echo "fuzz replay $t: FAILED"
        fail=1
    fi
done
[ $skipped -eq 0 ] || echo "fuzz replay: $skipped known-issue inputs left out (tests/fuzz/known-issues.txt)"
exit $fail
