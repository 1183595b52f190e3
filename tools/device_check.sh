#!/usr/bin/env bash
# One prepared GPU check (run on the device machine from the repo root, after
# tools/device_bundle.sh here): the GPU test suites on the real adapter (autotune and
# every kernel variant included), then `rsp tune` for VGG16 and ResNet50 at 224 px,
# batch 1 and 16 (the choices are cached for what follows), the end-to-end comparison
# with the PyTorch RSP (benches/torch_rsp.py --rsp-bin) on the tuned kernels, a
# per-kernel profile, autotuned vs fixed heuristics, and the f16 weight mode.
# Everything is also written to $OUT/device_check.log, the autotune cache to
# $OUT/autotune.json.
set -uo pipefail
LOG="${OUT:-/tmp}/device_check.log"
exec > >(tee "$LOG") 2>&1
tar -xJf devrun/bundle.tar.xz
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if ! ldconfig -p | grep -q libvulkan; then echo "no Vulkan loader"; fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
# The test binaries look for the crate (and its tests/golden) at the path it was built in.
[ -e /work/main ] || ln -s "$PWD" /work/main
# The extra_* tests read the full-size golden files from $RSP_EXTRA_GOLDEN: the directory
# given as the first argument, else $RSP_EXTRA_GOLDEN, else what the bundle carried.
extra=${1:-${RSP_EXTRA_GOLDEN:-}}
if [ -z "$extra" ] && ls devrun/golden/*.safetensors >/dev/null 2>&1; then extra="$PWD/devrun/golden"; fi
if [ -n "$extra" ]; then
    export RSP_EXTRA_GOLDEN="$extra"
else
    unset RSP_EXTRA_GOLDEN
    echo "no full-size golden files: the extra_* tests check nothing"
fi
# tests/cli.rs runs the binary cargo built (CARGO_BIN_EXE_rsp).
mkdir -p target/release && ln -sf "$PWD/devrun/rsp" target/release/rsp
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
./devrun/rsp adapters
echo "== tests on the GPU"
for t in devrun/tests/*; do
    echo "-- $(basename "$t")"
    timeout 120 "$t" --test-threads 4 2>&1 | grep -E "^test result|FAILED|panicked" || echo "FAILED to run $t"
done
export RSP_CACHE_DIR="${OUT:-/tmp}"
echo "== autotune (timed once per problem, cached in $RSP_CACHE_DIR/autotune.json)"
for m in vgg16 resnet50; do
    for b in 1 16; do
        /usr/bin/time -f "tune $m batch $b: %e s" timeout 120 ./devrun/rsp tune --model "$m" --size 224 --batch "$b" | head -3
    done
done
echo "== rsp vs PyTorch (float32, TF32 off)"
for m in vgg16 resnet50; do
    for b in 1 16; do
        timeout 150 python3 benches/torch_rsp.py --model "$m" --size 224 --batch "$b" --runs 5 \
            --rsp-bin ./devrun/rsp | grep -E "^device|summary|rsp>|^rsp|^forward"
    done
done
echo "== where the time goes (VGG16 and ResNet50, batch 1)"
timeout 120 ./devrun/rsp bench --model vgg16 --size 224 --batch 1 --runs 3 --profile | head -40
timeout 120 ./devrun/rsp bench --model resnet50 --size 224 --batch 1 --runs 3 --profile | head -30
echo "== autotuned kernels vs fixed heuristics vs one variant everywhere (batch 1)"
for m in vgg16 resnet50; do
    timeout 90 ./devrun/rsp bench --model "$m" --size 224 --batch 1 --runs 5 | grep -E "^(model|rsp)"
    timeout 90 ./devrun/rsp bench --model "$m" --size 224 --batch 1 --runs 5 --autotune off | grep -E "^(model|rsp)"
    timeout 90 ./devrun/rsp bench --model "$m" --size 224 --batch 1 --runs 5 --kernel tiled-64x64-unchecked | grep -E "^(model|rsp)"
done
echo "== f16 weights"
for m in vgg16 resnet50; do
    timeout 90 ./devrun/rsp bench --model "$m" --size 224 --batch 1 --runs 5 --weights-dtype f16
done
