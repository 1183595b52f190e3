#!/usr/bin/env bash
# One prepared GPU check, run on the device machine from the repo root after
# tools/device_bundle.sh here (the device has no Rust toolchain and no network):
#   run(command="bash tools/device_check.sh", carry=[".gl", "devrun"], timeout_s=560)
# In order of importance, each step skipped once the time budget ($BUDGET seconds,
# default 510) is nearly spent:
#   1. the test binaries (gpu, shaders, cli) on the real adapter, in parallel (gpu's
#      split_fp32 module checks the matrix units' pack pass against its CPU specification
#      bit for bit; the matrix-unit variants' tolerance tests run where the adapter has
#      cooperative matrices; with the full-size golden files bundled, the gpu binary also
#      runs its ignored extra_* tests);
#   1b. the first `rsp IMAGE` of a VGG16 (random weights) at 224 px with an empty
#      autotune cache against the warm run that follows (the issue's bound: at most 10 s
#      more);
#   2. VGG16 and ResNet50 at 224 px, batch 1: `rsp tune` (timed) and `rsp bench
#      --profile` in the default precision (matrix units and the large-tile variants
#      offered), then the PyTorch RSP (benches/torch_rsp.py, float32, TF32 off and on:
#      on is PyTorch's cuDNN default, what the authors' code runs out of the box);
#   3. the same in --precision f16 against PyTorch's float16 autocast;
#   4. batch 16, both precisions, against PyTorch (TF32 off and on, fp16 autocast),
#      with the per-kernel profile of VGG16 (each GEMM problem's TFLOP/s and share of
#      the $PEAK TFLOP/s fp32 peak);
#   5. batch 1 without the matrix units (--no-matrix-units) for the speed-up they bring.
# Everything is written to $OUT/device_check.log, the test suites' whole output to
# $OUT/tests.log, every bench output to $OUT/bench.log and the autotune cache (with
# every candidate's time and any rejection) to $OUT/autotune.json.
set -uo pipefail
OUT=${OUT:-/tmp}
# The image size of every bench, tune and PyTorch run (rehearsals on lavapipe use a
# tiny one: SIZE=32 BUDGET=300 bash tools/device_check.sh).
SIZE=${SIZE:-224}
# fp32 peak of the card in TFLOP/s, for the profile's share-of-peak column (H200: 67).
PEAK=${PEAK:-67}
LOG="$OUT/device_check.log"
exec > >(tee "$LOG") 2>&1
BUDGET=${BUDGET:-510}
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
# Runs "$@" with a timeout of at most $1 seconds and what is left of the budget, or
# says it was skipped.
step() {
    local limit=$1
    shift
    local rest
    rest=$(left)
    if [ "$rest" -lt 20 ]; then
        echo "SKIPPED (budget spent): $*"
        return 0
    fi
    [ "$rest" -lt "$limit" ] && limit=$rest
    timeout "$limit" "$@"
    local rc=$?
    [ $rc -eq 124 ] && echo "TIMED OUT after ${limit}s: $*"
    return 0
}
tar -xJf devrun/bundle.tar.xz
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if ! ldconfig -p | grep -q libvulkan; then echo "no Vulkan loader"; fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
# The test binaries look for the crate (and its tests/golden) at the path it was built in.
[ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
if ls devrun/golden/*.safetensors >/dev/null 2>&1; then
    export RSP_EXTRA_GOLDEN="$PWD/devrun/golden"
    extra=--include-ignored
else
    unset RSP_EXTRA_GOLDEN
    extra=
    echo "no full-size golden files: the extra_* tests stay ignored"
fi
# tests/cli/run.rs runs the binary cargo built (CARGO_BIN_EXE_rsp).
mkdir -p target/release && ln -sf "$PWD/devrun/rsp" target/release/rsp
export RSP_CACHE_DIR="$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
git log -1 --format='commit %h %s' 2>/dev/null || true
./devrun/rsp adapters

echo "== 1. tests on the GPU (in parallel, $(left) s left)"
mkdir -p /tmp/testlogs
pids=()
for t in devrun/tests/${TESTS:-*}; do
    n=$(basename "$t")
    # Only the gpu binary's ignored tests are the extra_* ones (the cli binary's is the
    # browser test, and the device has no browser).
    flags=()
    [ "$n" = gpu ] && [ -n "$extra" ] && flags=("$extra")
    (step 240 "$t" --test-threads 4 --nocapture "${flags[@]}" >"/tmp/testlogs/$n.log" 2>&1) &
    pids+=($!)
done
# Not a bare `wait`: that would also wait for the `tee` of the log.
wait "${pids[@]}"
for f in /tmp/testlogs/*.log; do
    echo "-- $(basename "$f" .log): $(grep -E '^test result' "$f" | tail -1)"
    grep -E "FAILED|panicked|failures:|matrix|coop|TIMED OUT" "$f" | head -20
done
grep -h -E "vs fallback|map [01] \[|winograd-2x2 \[" /tmp/testlogs/gpu.log | head -20
cat /tmp/testlogs/*.log >"$OUT/tests.log"

echo "== 1b. first run (empty autotune cache) vs warm, VGG16 random weights, $SIZE px ($(left) s left)"
step 60 python3 -c "
import torch, torchvision
from safetensors.torch import save_file
torch.manual_seed(0)
m = torchvision.models.vgg16(weights=None).eval()
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, '/tmp/vgg16_random.safetensors')
"
mkdir -p /tmp/first-run
for run in first warm; do
    RSP_CACHE_DIR=/tmp/first-run step 120 /usr/bin/time -f "$run run: %e s" ./devrun/rsp docs/synth/ring_star.jpg \
        --weights /tmp/vgg16_random.safetensors --size "$SIZE" --out /tmp/first-run/out 2>&1 | grep -E "run:|^note|error"
done

bench() { # model batch flags...: the timing lines and, with --profile, the 25 costliest
    # kernels (the whole output, kernel choices included, goes to $OUT/bench.log).
    local m=$1 b=$2
    shift 2
    step 150 ./devrun/rsp bench --model "$m" --size "$SIZE" --batch "$b" --runs 5 "$@" >/tmp/bench.txt 2>&1
    cat /tmp/bench.txt >>"$OUT/bench.log"
    grep -E "^(adapter|model|forward|rsp|GPU time|error)" /tmp/bench.txt
    sed -n '/^GPU time/,$p' /tmp/bench.txt | grep -E "^  +[0-9]" | sort -k1,1 -g -r | head -25
}
torch() { # model batch flags...
    local m=$1 b=$2
    shift 2
    step 90 python3 benches/torch_rsp.py --model "$m" --size "$SIZE" --batch "$b" --runs 5 "$@" |
        grep -E "^(device|forward|rsp)"
}

echo "== 2. batch 1, default precision: tune, bench with profile, PyTorch fp32 ($(left) s left)"
for m in vgg16 resnet50; do
    /usr/bin/time -f "tune $m batch 1 f32: %e s" timeout 150 ./devrun/rsp tune --model "$m" --size "$SIZE" --batch 1 >/tmp/tune.txt 2>&1
    head -2 /tmp/tune.txt
    bench "$m" 1 --profile --peak-tflops "$PEAK"
    torch "$m" 1
    torch "$m" 1 --tf32
done
python3 tools/autotune_summary.py "$OUT/autotune.json"

echo "== 3. batch 1, --precision f16 vs PyTorch fp16 autocast ($(left) s left)"
for m in vgg16 resnet50; do
    bench "$m" 1 --precision f16
    torch "$m" 1 --fp16
done

echo "== 4. batch 16 ($(left) s left)"
for m in vgg16 resnet50; do
    if [ "$m" = vgg16 ]; then
        bench "$m" 16 --profile --peak-tflops "$PEAK"
    else
        bench "$m" 16
    fi
    torch "$m" 16
    torch "$m" 16 --tf32
    bench "$m" 16 --precision f16
    torch "$m" 16 --fp16
done

echo "== 5. batch 1 without matrix units ($(left) s left)"
for m in vgg16 resnet50; do
    bench "$m" 1 --no-matrix-units
done
python3 tools/autotune_summary.py "$OUT/autotune.json"
echo "== done, $(left) s of the budget left"
