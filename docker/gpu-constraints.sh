#!/bin/sh
# Constraints for installing clasp-ingest into a CUDA PyTorch image without replacing its torch:
# the project's pins (constraints.txt) less torch, torchvision, torchaudio, triton and the CUDA
# wheels (nvidia-*, cuda-*), which the image brings matched to its CUDA, plus the exact versions
# of the image's own torch and torchvision, so pip keeps them.
# Usage: gpu-constraints.sh constraints.txt > gpu-constraints.txt   (python: the image's)
set -eu
grep -v -i -E '^[[:space:]]*(torch|torchvision|torchaudio|triton|nvidia-[a-z0-9._-]+|cuda-[a-z0-9._-]+)[[:space:]]*(==|>=|<=|~=|!=|<|>|@|;|$)' "$1" || true
python - <<'PY'
import torch

print(f"torch=={torch.__version__}")
try:
    import torchvision
except ImportError:  # not in the image: pip installs the release that fits its torch
    pass
else:
    print(f"torchvision=={torchvision.__version__}")
PY
