#!/bin/sh
# The architecture as a test (run by `make test`): which folder may include which, that no file
# outside runtime/models names a concrete model, and that the user commands of the CLI see only
# the public API. One line per violation, exit 1 if any.
#
# Layers, bottom up (a folder may include its own files and those of the folders listed):
#   runtime/core                      (tensor, error, arena, json, safetensors, rng)
#   kernels         -> core           (the backend interface and backends)
#   schedulers      -> core
#   runtime/text    -> core
#   runtime/io      -> core
#   runtime/models  -> core kernels text
#   runtime/plans   -> core kernels schedulers models        (attention plans, quantizer, model schedules)
#   runtime/pipeline-> core kernels schedulers text io models plans
#   runtime/tuning  -> everything below                       (calibration and search drivers)
#   runtime/api     -> everything below                       (include/ditrt.h)
#   runtime/cli     -> user commands: client.h / ditrt.h only; developer tools: anything
cd "$(dirname "$0")/.."
fail=0
allowed() { # folder -> allowed include prefixes
    case $1 in
    runtime/core) echo "runtime/core" ;;
    kernels*) echo "runtime/core kernels" ;;
    schedulers) echo "runtime/core schedulers" ;;
    runtime/text) echo "runtime/core runtime/text" ;;
    runtime/io) echo "runtime/core runtime/io" ;;
    runtime/models) echo "runtime/core kernels runtime/text runtime/models" ;;
    runtime/plans) echo "runtime/core kernels schedulers runtime/models runtime/plans" ;;
    runtime/pipeline) echo "runtime/core kernels schedulers runtime/text runtime/io runtime/models runtime/plans runtime/pipeline" ;;
    runtime/tuning) echo "runtime/core kernels schedulers runtime/text runtime/io runtime/models runtime/plans runtime/pipeline runtime/tuning" ;;
    runtime/api) echo "runtime/core kernels schedulers runtime/text runtime/io runtime/models runtime/plans runtime/pipeline runtime/tuning runtime/api" ;;
    *) echo "*" ;;
    esac
}
# The user commands: the CLI files that must be clients of the public API.
USER_COMMANDS="cli_generate.c cli_compare.c cli_compare_video.c cli_quant.c cli_fastattn.c
               cli_search_solver.c cli_search_models.c client.c client.h"
# Concrete denoisers: the model files the registry lists (runtime/models/denoiser.c).
CONCRETE=$(sed -n 's/^ *&dt_\([a-z0-9_]*\)_class,.*/runtime\/models\/\1.h/p' runtime/models/denoiser.c)
[ -n "$CONCRETE" ] || { echo "check-layers: no registry entries found in runtime/models/denoiser.c"; exit 1; }

for f in $(git ls-files 'runtime/*.c' 'runtime/*.h' 'runtime/*.cc' 'kernels/*.c' 'kernels/*.h' 'kernels/*.cu' 'schedulers/*.c' 'schedulers/*.h'); do
    dir=$(dirname "$f")
    incs=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
    for inc in $incs; do
        # resolve: a bare or relative name is the including folder's; ditrt.h is the public header
        case $inc in
        ditrt.h) target=include/ditrt.h ;;
        */*) if [ -f "$dir/$inc" ] && [ "${inc#../}" != "$inc" -o "${inc#./}" != "$inc" ]; then target=$(realpath --relative-to=. "$dir/$inc"); else target=$inc; fi ;;
        *) target="$dir/$inc" ;;
        esac
        tdir=$(dirname "$target")
        case $dir in runtime/models) ;; *)
            for c in $CONCRETE; do
                [ "$target" = "$c" ] && { echo "check-layers: $f includes the concrete model header $c (use runtime/models/denoiser.h)"; fail=1; }
            done ;;
        esac
        case $dir in runtime/cli)
            base=$(basename "$f")
            for u in $USER_COMMANDS; do
                if [ "$base" = "$u" ] && [ "$inc" != client.h ] && [ "$inc" != ditrt.h ]; then
                    echo "check-layers: $f is a user command and includes \"$inc\" (only client.h / ditrt.h)"; fail=1
                fi
            done
            continue ;;
        esac
        [ "$target" = include/ditrt.h ] && continue
        ok=0
        for a in $(allowed "$dir"); do
            case $a in '*') ok=1 ;; esac
            case $tdir in "$a"|"$a"/*) ok=1 ;; esac
        done
        [ $ok = 1 ] || { echo "check-layers: $f ($dir) includes $inc ($tdir): not a layer below it"; fail=1; }
    done
done
# user-command files must exist (a renamed file would silently escape the check)
for u in $USER_COMMANDS; do [ -f "runtime/cli/$u" ] || { echo "check-layers: runtime/cli/$u is listed as a user command but missing"; fail=1; }; done
[ $fail = 0 ] && echo "check-layers: ok (folder layers, no concrete model outside runtime/models, user commands over ditrt.h)"
exit $fail
