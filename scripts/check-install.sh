#!/bin/sh
# The install as an embedding app sees it (run by `make test` and `make check-install`):
#   1. `make install PREFIX=/usr/local DESTDIR=<temp>`: the files and the soname links are there;
#   2. runtime/examples/txt2img_example.c built with `pkg-config --cflags --libs ditrt` (shared,
#      run with LD_LIBRARY_PATH) and with `pkg-config --static ...` linking libditrt.a;
#   3. both run on the tiny pipeline fixture (f32: no native bf16 needed) and write the same image;
#   4. `nm -D --defined-only` of the installed .so lists only ditrt_* symbols.
# Any failure prints "check-install: FAILED: ..." and exits non-zero.
set -u
MAKE=${MAKE:-make}
CC=${CC:-cc}
PREFIX=/usr/local
MODEL=tests/fixtures/pixart-pipe-tiny

fail() { echo "check-install: FAILED: $*" >&2; exit 1; }

command -v pkg-config >/dev/null 2>&1 || fail "pkg-config is not installed (scripts/install-deps.sh installs it)"
command -v nm >/dev/null 2>&1 || fail "nm is not installed (binutils)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ditrt-install.XXXXXX") || fail "mktemp"
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
dest=$tmp/dest
lib=$dest$PREFIX/lib

$MAKE --no-print-directory install PREFIX=$PREFIX DESTDIR="$dest" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "make install PREFIX=$PREFIX DESTDIR=$dest"; }

# The version of the header, the library file name and the soname must agree.
ver=$(pkg-config --modversion "$lib/pkgconfig/ditrt.pc" 2>/dev/null) || fail "pkg-config cannot read $lib/pkgconfig/ditrt.pc"
major=${ver%%.*}
for f in "$dest$PREFIX/include/ditrt.h" "$dest$PREFIX/bin/ditrt" "$lib/libditrt.a" "$lib/libditrt.so.$ver"; do
    [ -f "$f" ] || fail "$f was not installed"
done
for l in "libditrt.so.$major" libditrt.so; do
    [ -L "$lib/$l" ] || fail "$lib/$l is not a symlink"
    [ "$(readlink "$lib/$l")" = "libditrt.so.$ver" ] || fail "$lib/$l -> $(readlink "$lib/$l"), expected libditrt.so.$ver"
done
grep -q "^#define DITRT_VERSION \"$ver\"" "$dest$PREFIX/include/ditrt.h" || fail "ditrt.pc says $ver, ditrt.h's DITRT_VERSION does not"
soname=$(readelf -d "$lib/libditrt.so.$ver" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libditrt.so.$major" ] || fail "soname of libditrt.so.$ver is '$soname', expected libditrt.so.$major"

# Exports: only the public API.
syms=$(nm -D --defined-only "$lib/libditrt.so.$ver" | awk '{ print $NF }') || fail "nm -D $lib/libditrt.so.$ver"
[ -n "$syms" ] || fail "libditrt.so.$ver exports nothing"
bad=$(printf '%s\n' "$syms" | grep -v '^ditrt_')
[ -z "$bad" ] || fail "libditrt.so.$ver exports non-ditrt_ symbols: $(echo $bad | cut -c1-400)"
for s in $(sed -n 's/^DITRT_API [^(]*[ *]\(ditrt_[a-z_]*\)(.*/\1/p' include/ditrt.h); do
    printf '%s\n' "$syms" | grep -qx "$s" || fail "libditrt.so.$ver does not export $s (declared in ditrt.h)"
done

# pkg-config as a user of the staged install sees it: the sysroot maps $PREFIX into DESTDIR.
export PKG_CONFIG_LIBDIR="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
cflags=$(pkg-config --cflags ditrt) || fail "pkg-config --cflags ditrt"
libs=$(pkg-config --libs ditrt) || fail "pkg-config --libs ditrt"
slibs=$(pkg-config --static --libs ditrt) || fail "pkg-config --static --libs ditrt"
# the static link takes libditrt.a even with the .so beside it; the rest stays dynamic
slibs=$(printf '%s\n' "$slibs" | sed 's/-lditrt\( \|$\)/-Wl,-Bstatic -lditrt -Wl,-Bdynamic\1/')
ex=runtime/examples/txt2img_example.c
# shellcheck disable=SC2086
$CC -O2 -std=c11 -Wall -Wextra -Werror $cflags -o "$tmp/ex-shared" $ex $libs || fail "shared build: $CC ... $cflags $libs"
# shellcheck disable=SC2086
$CC -O2 -std=c11 -Wall -Wextra -Werror $cflags -o "$tmp/ex-static" $ex $slibs || fail "static build: $CC ... $cflags $slibs"
readelf -d "$tmp/ex-shared" | grep -q "NEEDED.*\[libditrt.so.$major\]" || fail "the shared example does not need libditrt.so.$major"
! readelf -d "$tmp/ex-static" | grep -q "NEEDED.*libditrt" || fail "the static example still needs libditrt.so"

LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/ex-shared" $MODEL "a red square" "$tmp/shared.ppm" f32 \
    >"$tmp/shared.log" 2>&1 || { cat "$tmp/shared.log" >&2; fail "the shared example failed"; }
# the shared run must have used the installed library, not one elsewhere on the path
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$tmp/ex-shared" | grep -q "libditrt.so.$major => $lib/" ||
    fail "the shared example does not resolve libditrt.so.$major to $lib"
"$tmp/ex-static" $MODEL "a red square" "$tmp/static.ppm" f32 >"$tmp/static.log" 2>&1 ||
    { cat "$tmp/static.log" >&2; fail "the static example failed"; }
grep -q "^ditrt $ver (header $ver)" "$tmp/shared.log" || fail "the shared example reports $(head -1 "$tmp/shared.log"), expected ditrt $ver"
[ -s "$tmp/shared.ppm" ] || fail "the shared example wrote no image"
cmp -s "$tmp/shared.ppm" "$tmp/static.ppm" || fail "the shared and static examples wrote different images"
echo "check-install: ok (ditrt $ver: install, pkg-config shared and static builds, the example run, exports ditrt_* only)"
