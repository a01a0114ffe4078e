#!/bin/sh
# Install golfq into the current Python environment, with the build of torch that suits this
# machine: PyPI's (CUDA) build where an NVIDIA GPU is, PyTorch's CPU build everywhere else, so a
# laptop or a CI runner never downloads gigabytes of CUDA libraries it cannot use.
#
#   ./install.sh          the package with every extra (trainer, Redis/RQ, Modal, plots, MCP)
#   ./install.sh dev      the same, plus what the test suite needs
set -eu
cd "$(dirname "$0")"
python=${PYTHON:-python3}
torch_version=2.13.0  # the version the trainer is tested with; golfq's own requirement accepts it

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install.sh: NVIDIA GPU found: torch $torch_version with CUDA"
    "$python" -m pip install "torch==$torch_version"
else
    echo "install.sh: no NVIDIA GPU: torch $torch_version, CPU build"
    # The CPU build carries a local version (2.13.0+cpu), which pip prefers to PyPI's CUDA build.
    "$python" -m pip install --retries 1 --extra-index-url https://download.pytorch.org/whl/cpu "torch==$torch_version"
fi
extras=all${1:+,$1}
"$python" -m pip install -e ".[$extras]"
