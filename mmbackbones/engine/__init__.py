"""Training-side fixes and helpers for MMEngine runners (docs/reliability.md says
what each one protects against)."""
from .atomic_io import AtomicLocalBackend, install_atomic_local_backend
from .hooks import (CheckpointNetworkHook, EpochSeedHook, UnreadableEvalImagesHook,
                    UnreadableImagesHook)
from .launch import latest_checkpoint, prepare_config
from .precision import MixedPrecisionHook, cpu_bf16_supported

__all__ = ['AtomicLocalBackend', 'install_atomic_local_backend', 'EpochSeedHook', 'CheckpointNetworkHook',
           'UnreadableImagesHook', 'UnreadableEvalImagesHook', 'latest_checkpoint', 'prepare_config', 'MixedPrecisionHook',
           'cpu_bf16_supported']
