#!/usr/bin/env bash
# Prepares everything a GPU device run needs in git-ignored folders of the repo (the
# device machine has no Rust toolchain and no network): the rsp binary and the GPU
# test binaries (stripped) plus the full-size golden files of the extra_* tests (from
# the directory given as the first argument, else $RSP_EXTRA_GOLDEN; without either the
# bundle has none and the device runs only the in-repo cases of tests/golden, which
# travel with the working tree), packed as devrun/bundle.tar.xz
# (about 45 MB; unpacked they exceed the 64 MiB a device call may carry), and the
# Vulkan loader debs in .gl/. Then, with the device tool:
#   run(command="bash tools/device_check.sh", carry=[".gl", "devrun"], timeout_s=540)
# Full-size golden files stay out of git (devrun/ is ignored); they travel only to the
# device.
set -euo pipefail
golden_src=${1:-${RSP_EXTRA_GOLDEN:-}}
if [ -n "$golden_src" ]; then golden_src=$(cd "$golden_src" && pwd); fi
cd "$(dirname "$0")/.."
cargo build --release
cargo test --release --no-run 2>&1 | tee /tmp/rsp-test-build.log
stage=$(mktemp -d)
mkdir -p "$stage/devrun/tests" "$stage/devrun/golden"
cp target/release/rsp "$stage/devrun/rsp"
# The three test binaries among cargo's "Executable tests/NAME/main.rs (PATH)" lines:
# the library suite on the GPU, the shader checks and the command line.
for suite in gpu shaders cli; do
    bin=$(grep -o "Executable tests/$suite/main\.rs ([^)]*)" /tmp/rsp-test-build.log | sed 's/.*(\(.*\))/\1/')
    cp "$bin" "$stage/devrun/tests/$suite"
done
strip "$stage/devrun/rsp" "$stage/devrun/tests/"*
if [ -n "$golden_src" ]; then
    cp "$golden_src"/*.safetensors "$stage/devrun/golden/"
else
    echo "no full-size golden directory (argument or RSP_EXTRA_GOLDEN): the bundle has none"
fi
rm -rf devrun && mkdir devrun
tar -C "$stage" -cf - devrun | xz -9 -T0 > devrun/bundle.tar.xz
rm -rf "$stage"
if [ ! -d .gl ] || [ -z "$(ls .gl/*.deb 2>/dev/null)" ]; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update >/dev/null
    # shellcheck disable=SC2086
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh devrun .gl
