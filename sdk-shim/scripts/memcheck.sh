#!/usr/bin/env bash
# Runs the shim's tests under valgrind memcheck; exits non-zero on any memcheck error or leak.
#  1. c/tests/x3s_test.c: the C API over the simulated SDK, built with -Wall -Wextra -Werror and
#     with malloc/calloc/realloc wrapped, which also proves no allocation between arm and close.
#  2. The Rust integration tests (tests/detector.rs, tests/settings.rs) through the safe wrapper.
# Usage: sdk-shim/scripts/memcheck.sh   (honours CARGO_TARGET_DIR; takes about a minute)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/x3s-memcheck"
mkdir -p "$out"

command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed (make setup)" >&2; exit 2; }

vg=(valgrind --quiet --error-exitcode=1 --leak-check=full
    --errors-for-leak-kinds=definite,indirect,possible --show-leak-kinds=definite,indirect,possible)

echo "memcheck: building the C shim test"
gcc -std=c11 -g -O1 -Wall -Wextra -Werror -pthread -DX3S_WITH_SIM -I"$here/c" \
    "$here/c/x3s.c" "$here/c/xsp3_sim.c" "$here/c/x3s_sim_content.c" "$here/c/tests/x3s_test.c" \
    -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc -lm -o "$out/x3s_test"

echo "memcheck: C shim test under valgrind"
"${vg[@]}" "$out/x3s_test"

for test in detector settings; do
    echo "memcheck: building the Rust shim tests ($test)"
    exe="$(cd "$root" && cargo test -q -p sdk-shim --test "$test" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$test")"
    [ -x "$exe" ] || { echo "memcheck: could not build the Rust test binary $test" >&2; exit 2; }

    echo "memcheck: Rust shim tests under valgrind ($exe)"
    # One test thread: valgrind serialises threads anyway, and the simulated SDK's timing is then
    # the only concurrency. The Rust test harness keeps its main-thread handle alive at exit,
    # which memcheck calls "possibly lost" (48 bytes in std::thread::current); definite and
    # indirect leaks are still errors.
    valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --show-leak-kinds=definite,indirect "$exe" --test-threads=1 -q
done

echo "memcheck: 0 errors"
