#!/usr/bin/env bash
# Builds the Python wheel `rsp-xai` (import `rsp`) into dist/: abi3 (one wheel for
# CPython >= 3.9), manylinux_2_28 (glibc 2.28: RHEL 8, Ubuntu 20.04 and later), stripped,
# linked by zig against that glibc so the build machine's newer glibc does not leak in.
# Then checks it: neither the extension's dependency graph nor its binary has a
# command-line or server crate, `abi3audit --strict` (only the stable ABI), `twine
# check` (the metadata the index shows). CI runs this once and installs the result (tools/test_wheel.sh); a developer
# runs it the same way. maturin, ziglang and the checkers come from the package index
# into a build venv (.venv-wheel, reused).
#
#   bash tools/build_wheel.sh            # -> dist/rsp_xai-<version>-cp39-abi3-manylinux_2_28_x86_64.whl
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-wheel
if [ ! -x "$venv/bin/maturin" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'maturin>=1.9,<2' ziglang abi3audit twine
fi

# The extension links the library without its `cli` feature: no argument parser, HTTP
# server, async runtime or plotting. Building it proves the library compiles without
# them; the graph check proves none comes in through another path.
banned='clap|axum|tokio|plotters|hyper'
if cargo tree --quiet -p rsp-python -e normal --prefix none | grep -E "^($banned) " ; then
    echo "error: the Python extension depends on the crates above (the command line's)" >&2
    exit 1
fi

# maturin finds zig as `python3 -m ziglang`: the build venv's python3 first on PATH.
export PATH="$PWD/$venv/bin:$PATH"
rm -rf dist
start=$(date +%s)
"$venv/bin/maturin" build --release --strip --zig --compatibility manylinux_2_28 \
    --out dist
echo "built in $(( $(date +%s) - start )) s"

wheel=$(ls dist/rsp_xai-*.whl)
case "$wheel" in
    *-cp39-abi3-manylinux_2_28_*.whl) ;;
    *) echo "error: $wheel is not a cp39-abi3 manylinux_2_28 wheel" >&2; exit 1 ;;
esac
# And the binary itself: the crates compiled into the extension, read from it.
python3 tools/check_wheel_crates.py "$wheel" "$banned"
"$venv/bin/abi3audit" --strict --report "$wheel"
"$venv/bin/twine" check --strict "$wheel"
echo "$wheel: $(( $(stat -c %s "$wheel") / 1024 )) KiB"
