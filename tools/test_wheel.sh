#!/usr/bin/env bash
# Installs the wheel tools/build_wheel.sh left in dist/ the way a user does — a fresh
# venv, no Rust toolchain on PATH, binary packages only — and tests the installed copy
# from outside the checkout: the pytest suite (python/tests), the typed example under
# `mypy --strict` and run for real, and the wheel workflow against GitHub's schema.
#
#   bash tools/test_wheel.sh
#
# Environment: RSP_EXPECT_ADAPTER (a substring the adapter's name must contain, e.g.
# llvmpipe in CI), RSP_TEST_REQUIRE (optional test packages that must be present, e.g.
# torch,PIL,ray; they are installed into the venv when named: ray as the [ray] extra).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
wheel=$(ls "$repo"/dist/rsp_xai-*.whl 2>/dev/null || true)
if [ -z "$wheel" ]; then
    echo "error: no wheel in $repo/dist; run tools/build_wheel.sh first" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# No Rust on PATH: only the system's directories (cargo and rustc live in ~/.cargo/bin).
export PATH=/usr/local/bin:/usr/bin:/bin
if command -v cargo >/dev/null || command -v rustc >/dev/null; then
    echo "error: cargo or rustc is still on PATH ($(command -v cargo rustc))" >&2
    exit 1
fi

python3 -m venv "$work/venv"
pip=("$work/venv/bin/pip" install --quiet --disable-pip-version-check)
extras=()
case ",${RSP_TEST_REQUIRE:-}," in *,torch,*) extras+=(torch) ;; esac
case ",${RSP_TEST_REQUIRE:-}," in *,PIL,*) extras+=(pillow) ;; esac
start=$(date +%s%N)
"${pip[@]}" --only-binary=:all: --find-links "$repo/dist" rsp-xai
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "installed $(basename "$wheel") with numpy in $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
"${pip[@]}" pytest mypy check-jsonschema "${extras[@]}"
# The [ray] extra (Ray Data, nvidia-ml-py) for python/tests/test_ray.py.
case ",${RSP_TEST_REQUIRE:-}," in
    *,ray,*) "${pip[@]}" --only-binary=:all: --find-links "$repo/dist" "rsp-xai[ray]" ;;
esac

cd "$work"
export RSP_EXPECT_INSTALLED=1
"$work/venv/bin/python" -c 'import rsp, sys; print("rsp from", rsp.__file__)'
"$work/venv/bin/pytest" -q -rs -p no:cacheprovider "$repo/python/tests"
# The installed package's own annotations, and a typed use of them.
"$work/venv/bin/mypy" --strict --no-incremental -p rsp
"$work/venv/bin/mypy" --strict --no-incremental "$repo/python/examples/explain_image.py"
"$work/venv/bin/python" "$repo/python/examples/explain_image.py" \
    "$repo/tests/golden/vgg_tiny.safetensors" "$repo/docs/synth/ring_star.jpg" "$work/maps" 32
# The workflow that builds the other platforms' wheels (it has not run here) is at
# least a valid GitHub workflow (the schema ships inside check-jsonschema: offline).
"$work/venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows \
    "$repo/.github/workflows/wheels.yml"
