"""Checkpoint files in the user's data folders: found by a relative name, and read as tensors only (safetensors,
or a torch pickle with ``weights_only=True``), so loading a file never runs its code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from sharpbench.data.locate import DataPaths
from sharpbench.errors import CollectionError, Hint

_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def find_checkpoint(name: str | Path, paths: DataPaths) -> Path:
    """The checkpoint file ``name``: as given when absolute, else the first of DIR/name for each data folder
    (``--data-dir``, ``$SHARPBENCH_DATA``), then name relative to the working folder."""
    found = paths.find_file(name)
    if found is None:
        searched = ", ".join(str(root / name) for root in paths.folders) or "no data folder given"
        raise CollectionError(f"checkpoint '{name}' not found (searched: {searched}, {name}). Put it in a data "
                              f"folder, or give its absolute path.", hints=[Hint("data_dir")])
    return found.resolve()


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: a ``.safetensors`` file, or a torch
    pickle (.pt, .pth, .bin) read with ``weights_only=True``, so that loading it runs no code of the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise CollectionError(f"{path} is not a readable safetensors file ({error})") from None
    if path.suffix not in _TORCH_SUFFIXES:
        raise CollectionError(f"{path}: unknown checkpoint format; expected .safetensors or a torch state dict "
                              f"({', '.join(_TORCH_SUFFIXES)})")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError) as error:
        raise CollectionError(
            f"{path} could not be read as a plain state dict of tensors ({error}). Only tensors are loaded "
            f"(torch.load with weights_only=True): re-save it from a trusted session as "
            f"`safetensors.torch.save_file(model.state_dict(), 'model.safetensors')` (for OpenAI's TorchScript "
            f"files, `torch.jit.load(path).state_dict()`).") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CollectionError(f"{path} holds a {type(state).__name__}, not a state dict of tensors: save "
                              f"`model.state_dict()` instead")
    return state
