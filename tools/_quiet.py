"""Warnings of the stack that tell a user of the tools nothing they can act on.
Every tool imports this first, before MMEngine is imported."""
import warnings

STACK_NOISE = (
    # MMEngine and MMDetection import pkg_resources, which setuptools<82 keeps
    # (pinned for them); the warning repeats on every config with a scope
    (UserWarning, r'pkg_resources is deprecated'),
    # torch.utils.cpp_extension on a CPU machine that has a CUDA toolkit installed
    (UserWarning, r'No CUDA runtime is found'),
    # fvcore (with Detectron2) scripts its losses at import
    (FutureWarning, r'`torch\.jit\.script` is deprecated'),
)

for category, message in STACK_NOISE:
    warnings.filterwarnings('ignore', message=message, category=category)
