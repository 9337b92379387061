"""Saving and loading a network: one compact, versioned .npz written atomically.

Synapses are stored sparsely (pre, post, raw weight), together with the lazy
normalization scales, so a loaded network continues with exactly the spikes the saved
one would have produced. A file is checked completely before a network is built from it.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from webapp.sorn.config import SORNConfig
from webapp.sorn.network import RATE_WINDOW, SORN, NetworkArrays

FORMAT = "sornmemory.sorn"
VERSION = 4
# Config keys each version added, with the values that reproduce a network of an older file.
# Version 4 added none: it marks the random draws of randomness's hashed lanes and noise
# table. Files of versions 1-3 were saved by programs drawing Philox blocks; they load and
# continue with these draws (docs/MODEL.md §9), and older programs refuse version 4 files.
ADDED_CONFIG_KEYS = {2: {"fast_inhibition": False}, 3: {"noise_distribution": "normal"}}


class NetworkFileError(ValueError):
    """A network file is truncated, corrupt, of another version or inconsistent."""


_MATRICES = ("ee", "ei", "ie")  # stored sparsely as {name}_pre, {name}_post, {name}_w
# Per-unit arrays: key -> (dtype, shape for (n_e, n_i)).
_VECTORS = {
    "thresholds_e": ("f8", lambda n_e, n_i: (n_e,)),
    "thresholds_i": ("f8", lambda n_e, n_i: (n_i,)),
    "x": ("?", lambda n_e, n_i: (n_e,)),
    "y": ("?", lambda n_e, n_i: (n_i,)),
    "scale_ee": ("f8", lambda n_e, n_i: (n_e,)),
    "scale_ei": ("f8", lambda n_e, n_i: (n_e,)),
    "sum_ee": ("f8", lambda n_e, n_i: (n_e,)),
    "sum_ei": ("f8", lambda n_e, n_i: (n_e,)),
    "rate_counts": ("i8", lambda n_e, n_i: (RATE_WINDOW, 2)),
}


def save_network(net: SORN, path: str | os.PathLike) -> None:
    """Write `net` to `path` atomically: a temp file in the same directory, fsync, rename."""
    path = Path(path)
    state = net.to_arrays()
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, dtype=np.int64),
        "config": np.array(json.dumps(state.config.to_dict(), sort_keys=True)),
        "seed": np.array(state.seed, dtype=np.uint64),
        "step": np.array(state.step, dtype=np.int64),
        "plastic": np.array(state.plastic),
    }
    for key in _VECTORS:
        arrays[key] = getattr(state, key)
    for name in _MATRICES:
        exists = getattr(state, f"{name}_exists")
        pre, post = np.nonzero(exists)
        arrays[f"{name}_pre"] = pre.astype(np.uint16)
        arrays[f"{name}_post"] = post.astype(np.uint16)
        arrays[f"{name}_w"] = getattr(state, f"{name}_weights")[exists]
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez_compressed(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_network(path: str | os.PathLike) -> SORN:
    """Read a network saved by `SORN.save`. Raises NetworkFileError naming the file on
    any defect, FileNotFoundError if there is no file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no network file at {path}")
    try:
        with path.open("rb") as file, np.load(file, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise NetworkFileError(f"{path}: not a readable network file ({exc})") from exc
    try:
        return _build(data)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise NetworkFileError(f"{path}: {exc}") from exc


def _field(data: dict, key: str, dtype: str, shape: tuple | None) -> np.ndarray:
    if key not in data:
        raise KeyError(f"missing array {key!r}")
    array = data[key]
    if np.dtype(array.dtype).kind != np.dtype(dtype).kind:
        raise ValueError(f"array {key!r} has dtype {array.dtype}, expected {dtype}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"array {key!r} has shape {array.shape}, expected {shape}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"array {key!r} holds non-finite values")
    return array


def _build(data: dict) -> SORN:
    if str(_field(data, "format", "U", ())) != FORMAT:
        raise ValueError("not a SORN network file")
    version = int(_field(data, "version", "i8", ()))
    if not 1 <= version <= VERSION:
        raise ValueError(f"file format version {version}, this program reads 1 to {VERSION}")
    config = json.loads(str(_field(data, "config", "U", ())))
    if isinstance(config, dict):
        for added_in, keys in ADDED_CONFIG_KEYS.items():
            if version < added_in:
                config = keys | config
    cfg = SORNConfig.from_dict(config)
    step = int(_field(data, "step", "i8", ()))
    if step < 0:
        raise ValueError("negative step counter")
    n_e, n_i = cfg.n_e, cfg.n_i
    fields = {}
    for key, (dtype, shape) in _VECTORS.items():
        fields[key] = _field(data, key, dtype, shape(n_e, n_i))
    if np.any(fields["scale_ee"] <= 0) or np.any(fields["scale_ei"] <= 0):
        raise ValueError("normalization scales must be positive")
    for name, (n_pre, n_post) in zip(
        _MATRICES, ((n_e, n_e), (n_i, n_e), (n_e, n_i)), strict=True
    ):
        pre = _field(data, f"{name}_pre", "u2", None).astype(np.intp)
        post = _field(data, f"{name}_post", "u2", pre.shape).astype(np.intp)
        weights = _field(data, f"{name}_w", "f8", pre.shape)
        if pre.ndim != 1 or (pre.size and (pre.max() >= n_pre or post.max() >= n_post)):
            raise ValueError(f"{name} synapse indices out of range")
        if np.any(weights < 0):
            raise ValueError(f"{name} holds negative weights")
        exists = np.zeros((n_pre, n_post), dtype=bool)
        exists[pre, post] = True
        if np.count_nonzero(exists) != pre.size:
            raise ValueError(f"{name} lists a synapse twice")
        if name == "ee" and np.any(pre == post):
            raise ValueError("ee holds a self-connection")
        matrix = np.zeros((n_pre, n_post))
        matrix[pre, post] = weights
        fields[f"{name}_exists"] = exists
        fields[f"{name}_weights"] = matrix
    return SORN.from_arrays(NetworkArrays(
        config=cfg,
        seed=int(_field(data, "seed", "u8", ())),
        step=step,
        plastic=bool(_field(data, "plastic", "?", ())),
        **fields,
    ))
