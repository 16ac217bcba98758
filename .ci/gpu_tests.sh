#!/usr/bin/env bash
# The GPU test suite, on a machine with a CUDA device (run from anywhere; it works in the repo root):
#   .ci/gpu_tests.sh [OUTPUT_FILE] [extra pytest arguments]
# Runs every test marked `gpu` that needs only torch, transformers and Triton (tests/gpu and the
# Triton cases of tests/resources/test_fast_divergence.py), plus the GPU tests that need the
# project's full environment (dagster, the embedded model) where it is installed. Output, with the
# GPU and library versions first, is tee'd to OUTPUT_FILE (default
# benchmarks/results/gpu_tests_<gpu>.txt). Exit status: pytest's.
#
# Needs pytest (not hypothesis). Without network on the GPU machine, bring pytest as wheels:
#   here:   pip download --only-binary=:all: --python-version 3.10 --dest .ci/wheels pytest
#   there:  the script installs them from .ci/wheels (pure-Python wheels, any Python 3.10+)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c "import pytest" 2>/dev/null; then
  if [ -d .ci/wheels ]; then
    "$PYTHON" -m pip install --quiet --no-index --find-links .ci/wheels pytest || exit 2
  else
    echo "pytest is not installed. With network: $PYTHON -m pip install pytest. Without: on a machine with" >&2
    echo "network run 'pip download --only-binary=:all: --python-version 3.10 --dest .ci/wheels pytest'" >&2
    echo "in the repository, bring .ci/wheels here, and run this script again." >&2
    exit 2
  fi
fi

gpu_name=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
if [ -z "$gpu_name" ] && [ -z "${ALLOW_NO_GPU:-}" ]; then
  echo "no CUDA device visible to torch: every GPU test would skip (set ALLOW_NO_GPU=1 to run them anyway)" >&2
  exit 3
fi
slug=$(echo "$gpu_name" | tr 'A-Z' 'a-z' | grep -oE 'h200|h100|a100|l40s|l4|a10g|[a-z]+[0-9]+' | head -1)
out="${1:-benchmarks/results/gpu_tests_${slug:-gpu}.txt}"
shift $(( $# > 0 ? 1 : 0 ))

targets=(tests/gpu tests/resources/test_fast_divergence.py)
if "$PYTHON" -c "import dagster, gguf" 2>/dev/null; then
  targets+=(tests/resources/test_noise_floor_scoring.py tests/resources/test_vllm_generation.py)
fi

{
  echo "# python -m pytest -m gpu ${targets[*]}   ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
  "$PYTHON" - <<'PY'
import platform
import torch
import transformers
try:
    import triton
    triton_version = triton.__version__
except ImportError:
    triton_version = "not installed"
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
memory = f", {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB" if torch.cuda.is_available() else ""
print(f"# GPU: {gpu}{memory}; torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"Triton {triton_version}, Python {platform.python_version()}")
PY
  PYTHONPATH=. PYTHONUNBUFFERED=1 "$PYTHON" -m pytest -m gpu -v -s -rs -p no:cacheprovider "${targets[@]}" "$@"
} 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
echo "written: $out (exit status $status)"
exit "$status"
