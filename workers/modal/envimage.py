"""A code folder's environment on Modal: an image layered on the pool's image, one per environment hash.

Layers, in order: the declared system packages (apt), the requirements (uv, into the image's own
Python, so a pinned torch replaces the pool's: `torch==2.9.1+cu128` is honoured here, the
PyTorch index for its CUDA tag added), the build steps (FlashAttention 3 and the like), and
GOLFQ_ENV_PROVIDED naming the environment, so the runner inside knows not to build it again.
Modal keys each layer by its definition, so the same environment is built once and every later
job reuses it; `EnvironmentImages` also keeps one Image object per hash in the dispatcher.

A job whose code folder declares an environment runs in a Sandbox of that image with the pool's
GPU, Volumes and settings (golfq.workers.modal.dispatch.ModalSpawner); the rest keep the pool's
functions.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

import modal

from golfq.core.environment import Environment, kept_requirement
from golfq.workers.codedir import pack_environment

PYTORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
_CUDA_TAG = re.compile(r"^(cu\d+|cpu|rocm[\d.]+)$")


def install_options(environment: Environment) -> list[str]:
    """uv's options for the requirements: the folder's own, plus PyTorch's index for a pinned build tag."""
    options = [part for option in environment.options for part in option.split(" ", 1)]
    tags = {spec.version.split("+", 1)[1] for req in environment.parsed() if kept_requirement(req)
            for spec in req.specifier if "+" in spec.version}
    for tag in sorted(t for t in tags if _CUDA_TAG.match(t)):
        options += ["--extra-index-url", PYTORCH_INDEX.format(tag=tag)]
    if any(o in ("--extra-index-url", "--index-url", "-i") for o in options):
        options += ["--index-strategy", "unsafe-best-match"]  # torch from PyTorch's index, the rest from PyPI
    return options


def environment_image(base: modal.Image, environment: Environment) -> modal.Image:
    """`base` with the environment's layers on top (the pool's image without golfq's source mount)."""
    image = base
    if environment.system:
        image = image.apt_install(*environment.system)
    if environment.requirements:
        options = " ".join(shlex.quote(o) for o in install_options(environment))
        image = image.uv_pip_install(*environment.requirements, extra_options=options)
    if environment.build:
        # `uv pip install` in a step targets the image's Python, as it targets the virtualenv on a worker
        image = image.run_commands(*environment.build, env={"UV_SYSTEM_PYTHON": "1"})
    return image.env({"GOLFQ_ENV_PROVIDED": environment.key})


class EnvironmentImages:
    """One image per environment hash, for the packs the dispatcher reads (by trainer ref)."""

    def __init__(self, base: modal.Image, finish: Callable[[modal.Image], modal.Image],
                 get_code: Callable[[str], bytes]) -> None:
        self.base, self.finish, self.get_code = base, finish, get_code
        self._environments: dict[str, Environment] = {}
        self._images: dict[str, modal.Image] = {}

    def environment(self, trainer: str) -> Environment:
        if trainer not in self._environments:
            self._environments[trainer] = pack_environment(self.get_code(trainer))
        return self._environments[trainer]

    def image(self, trainer: str) -> modal.Image | None:
        """The image a code folder runs in; None when it declares no environment (the pool's function serves it)."""
        environment = self.environment(trainer)
        if environment.empty:
            return None
        if environment.key not in self._images:
            self._images[environment.key] = self.finish(environment_image(self.base, environment))
        return self._images[environment.key]
