#!/usr/bin/env bash
# Exercises the real-SDK build switch without the proprietary SDK. It builds stand-in "vendor
# SDKs" shaped like the public ones (epics-modules/xspress3, xspress3Support/) but made only from
# our own declarations (c/xsp3_api.h) and the simulator, builds the shim against each with nothing
# but XSPRESS3_SDK_DIR set, and runs the smoke example. It proves the switch, the layout and
# prototype detection and the link lines; not the real SDK (README: "Building against the real
# Xspress3 SDK" lists the real generations it was built against).
#
# What the stand-ins reproduce, each a way the real SDKs broke the build before:
#  - the headers take their Linux branch only when the macro `linux` is defined (else they
#    include a file that does not exist here), and use struct timeval as a complete type (needs
#    _DEFAULT_SOURCE, not only POSIX);
#  - "2021": a macro defined differently in two of the SDK's own headers (only -isystem makes
#    that legal under -Werror), one-parameter xsp3_close and no Xsp3Unlink enum, no
#    xsp3_is_xsp3m_plus, static libraries only and not position-independent (-no-pie);
#  - "2025": the flat EPICS layout, the Xsp3Unlink enum declared but a one-parameter xsp3_close
#    prototype (with the two-parameter form in a comment) over a library that takes two and
#    insists on Xsp3UnlinkAll; libxspress3.so needing libimg_mod and libm without naming them;
#  - "2024-05": include/ + lib/, a two-parameter prototype, and xsp3_is_xsp3m_plus declared in
#    the header but absent from the library.
# Usage: sdk-shim/scripts/vendor-build-check.sh   (honours CARGO_TARGET_DIR)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/fake-xspress3-sdks"
cflags=(-std=c11 -O2 -Wall -Wextra -Werror -pthread -I"$here/c")

# $1 header path; $2 close form (1 | 1-with-enum | 2); $3 mini_plus declared (yes|no);
# $4 macro clash (yes|no). Writes xspress3.h, datamod.h and os9types.h next to $1.
make_headers() {
    local h="$1" dir
    dir="$(dirname "$h")"
    python3 - "$here/c/xsp3_api.h" "$h" "$2" "$3" "$4" <<'PY'
import re, sys
src, out, close, plus, clash = sys.argv[1:]
s = open(src).read()
s = re.sub(r"#ifndef X3S_XSP3_CLOSE_ARGS\n#define X3S_XSP3_CLOSE_ARGS 2\n#endif\n", "", s)
block = re.search(r"#if X3S_XSP3_CLOSE_ARGS == 1\n.*?#endif\n", s, re.S)
proto = {
    "1": "int xsp3_close(int path);\n",
    "1-with-enum": "/* int xsp3_close(int path, Xsp3Unlink unlink); (not this generation) */\n"
                   "int xsp3_close(int path);\n",
    "2": "int xsp3_close(int path, Xsp3Unlink unlink);\n",
}[close]
s = s[:block.start()] + proto + s[block.end():]
if close == "1":
    s = re.sub(r"typedef enum \{ Xsp3UnlinkNone.*?\} Xsp3Unlink;\n", "", s)
if plus == "no":
    s = s.replace("int xsp3_is_xsp3m_plus(int path);\n", "")
pre = '#include "datamod.h"\n'
if clash == "yes":
    s = s.replace("#define XSP3_MAX_CARDS 16", "#define XSP3_MAX_CARDS 18")
s = s.replace("#include <stdint.h>\n", "#include <stdint.h>\n" + pre, 1)
open(out, "w").write(s)
PY
    cat > "$dir/datamod.h" <<EOF
/* Stand-in: like the vendor's, its Linux branch depends on the macro 'linux'. */
#ifndef STANDIN_DATAMOD_H
#define STANDIN_DATAMOD_H
#if defined(linux) || defined(__LINUX__)
#include "os9types.h"
#else
#include <module.h>
#endif
int munlink(void *mod_head);
$( [ "$4" = yes ] && echo "#define XSP3_MAX_CARDS 16" )
#endif
EOF
    cat > "$dir/os9types.h" <<'EOF'
/* Stand-in: needs struct timeval complete, which glibc gives with _DEFAULT_SOURCE. */
#ifndef STANDIN_OS9TYPES_H
#define STANDIN_OS9TYPES_H
#include <sys/types.h>
typedef struct { struct timeval stamp; int id; } standin_mod_stamp;
#endif
EOF
}

# $1 lib dir; $2 library's xsp3_close parameters (1|2); $3 kind (so | a-nopic);
# $4 xsp3_is_xsp3m_plus in the library (yes|no).
make_libs() {
    local lib="$1" args="$2" kind="$3" plus="$4" o="$1/obj" pic=(-fPIC)
    mkdir -p "$o"
    [ "$kind" = a-nopic ] && pic=(-fno-pic -fno-pie)
    for f in xsp3_sim x3s_sim_content; do
        gcc "${cflags[@]}" "${pic[@]}" -DX3S_XSP3_CLOSE_ARGS="$args" -c "$here/c/$f.c" -o "$o/$f.o"
    done
    [ "$plus" = no ] && objcopy --localize-symbol=xsp3_is_xsp3m_plus "$o/xsp3_sim.o"
    # The library uses libimg_mod and libm without recording them as needed, as the vendor's does.
    printf '#include <math.h>\nint munlink(void *m);\nint standin_glue(double x);\n%s\n' \
        'int standin_glue(double x) { return munlink(0) + (int)exp(x); }' > "$o/glue.c"
    printf 'int munlink(void *m);\nint munlink(void *m) { (void)m; return 0; }\n' > "$o/img.c"
    gcc "${cflags[@]}" "${pic[@]}" -c "$o/glue.c" -o "$o/glue.o"
    gcc "${cflags[@]}" "${pic[@]}" -c "$o/img.c" -o "$o/img.o"
    if [ "$kind" = so ]; then
        gcc -shared -Wl,-soname,libxspress3.so.1 -o "$lib/libxspress3.so.1" \
            "$o/xsp3_sim.o" "$o/x3s_sim_content.o" "$o/glue.o" -pthread
        ln -sf libxspress3.so.1 "$lib/libxspress3.so"
        gcc -shared -Wl,-soname,libimg_mod.so.1 -o "$lib/libimg_mod.so.1" "$o/img.o"
        ln -sf libimg_mod.so.1 "$lib/libimg_mod.so"
    else
        ar rcs "$lib/libxspress3.a" "$o/xsp3_sim.o" "$o/x3s_sim_content.o" "$o/glue.o"
        ar rcs "$lib/libimg_mod.a" "$o/img.o"
    fi
    rm -rf "$o"
}

# $1 name; $2 layout (std|flat); $3 header close form; $4 library close args; $5 lib kind;
# $6 mini_plus in header; $7 mini_plus in library; $8 macro clash.
check() {
    local name="$1" layout="$2" sdk inc lib out
    sdk="$work/$name"
    rm -rf "$sdk"
    if [ "$layout" = std ]; then
        inc="$sdk/include" lib="$sdk/lib"
    else
        sdk="$sdk/xspress3Support" inc="$sdk" lib="$sdk/os/linux-x86_64"
    fi
    mkdir -p "$inc" "$lib"
    make_headers "$inc/xspress3.h" "$3" "$6" "$8"
    make_libs "$lib" "$4" "$5" "$7"
    out="$(cd "$root" && env -u X3S_XSP3_CLOSE_ARGS -u XSPRESS3_SDK_STATIC XSPRESS3_SDK_DIR="$sdk" \
        LD_LIBRARY_PATH="$lib" cargo run -q -p sdk-shim --example x3s_smoke -- frames=3 2>&1)" || {
        echo "$out" >&2
        echo "vendor-build-check: $name: the smoke example failed" >&2
        exit 1
    }
    grep -q '^real system: 4 channels' <<<"$out" ||
        { echo "$out" >&2; echo "vendor-build-check: $name: the shim did not use the stand-in SDK" >&2; exit 1; }
    grep -q '^frame 2: ' <<<"$out" ||
        { echo "$out" >&2; echo "vendor-build-check: $name: no frames" >&2; exit 1; }
    echo "vendor-build-check: $name ($layout layout): built, linked, 3 frames, closed"
}

rm -rf "$work"
#     name     layout header-close  lib-close kind     plus-h plus-lib clash
check sdk-2021 std    1             1         a-nopic  no     no       yes
check sdk-2025 flat   1-with-enum   2         so       yes    yes      no
check sdk-2024 std    2             2         so       yes    no       no
echo "vendor-build-check: ok"
