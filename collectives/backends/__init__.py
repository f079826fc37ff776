"""Communication backends behind one `Comm` protocol (see `base`).

`create(name, launch)` imports the backend lazily, so a machine without CuPy or mpi4py can
still run the others. Only modules in this package import torch.distributed, cupy.cuda.nccl
or mpi4py.
"""

from __future__ import annotations

import importlib

from collectives.backends.base import BackendUnavailable, Comm, LaunchInfo

# name -> (module, factory function)
BACKENDS: dict[str, tuple[str, str]] = {
    "gloo": ("collectives.backends.torch_dist", "create_gloo"),
    "torch-nccl": ("collectives.backends.torch_dist", "create_torch_nccl"),
    "fake": ("collectives.backends.torch_dist", "create_fake"),
    "nccl": ("collectives.backends.nccl_cupy", "create"),
    "mpi": ("collectives.backends.mpi", "create"),
}


def create(name: str, launch: LaunchInfo) -> Comm:
    """Create the communicator for backend `name`; BackendUnavailable says what is missing."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module_name, factory = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {name!r} needs {exc.name or 'a missing package'}: {exc}"
        ) from None
    comm: Comm = getattr(module, factory)(launch)
    return comm


__all__ = ["BACKENDS", "BackendUnavailable", "Comm", "LaunchInfo", "create"]
