"""Vector files from and for other tools, with their layer conventions converted on the way.

- refusal_direction (Arditi et al.): ``direction.pt`` (``[d]``) + ``direction_metadata.json``
  (``{"pos", "layer"}``); its layer is the input of block ``layer``, the same site as ours.
- persona_vectors: ``[L+1, d]`` tensors indexed like ``hidden_states`` (row 0 = embeddings, row ``l``
  = resid_pre[l]; the last row is after the last block and is dropped).
- llama.cpp control vectors (GGUF): ``direction.N`` is added to the *output* of block ``N``, which
  is our resid_pre[N+1]; llama.cpp never applies ``direction.0``, so resid_pre[0] and [1] cannot be
  exported.
All ``.pt`` files are read with ``weights_only=True``: never plain pickle.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import torch

from personagate import checks
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.outputs import write_bytes

MAX_IMPORT_BYTES = 2**30  # a direction file of any model is far smaller


def _load_tensor(path: Path) -> torch.Tensor:
    checks.input_file(path, "tensor", MAX_IMPORT_BYTES)
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unsafe or corrupt pickles
        raise PersonagateError(f"{path} is not a plain tensor file ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(value, torch.Tensor) or value.is_complex() or value.dtype == torch.bool:
        raise PersonagateError(f"{path} holds a {type(value).__name__}, expected a real-valued tensor")
    if not torch.isfinite(value.to(torch.float32)).all():
        raise PersonagateError(f"{path} holds NaN or infinite values")
    return value.to(torch.float32)


def import_refusal_direction(folder: str | Path, *, model: str | None = None) -> Direction:
    """A refusal_direction run's ``direction.pt`` + ``direction_metadata.json`` (a folder or the .pt)."""
    folder = Path(folder)
    pt = folder if folder.suffix == ".pt" else folder / "direction.pt"
    vector = _load_tensor(pt)
    if vector.dim() != 1:
        raise PersonagateError(f"{pt} has shape {tuple(vector.shape)}, expected [d]")
    meta_path = pt.parent / "direction_metadata.json"
    meta: dict = {}
    if meta_path.exists():
        try:
            meta = checks.nesting(json.loads(checks.read_text(meta_path, "metadata")), str(meta_path))
        except (ValueError, RecursionError):
            raise PersonagateError(f"{meta_path} is not valid JSON") from None
        if not isinstance(meta, dict):
            raise PersonagateError(f"{meta_path} must hold a JSON object")
    return Direction(
        vector,
        name="refusal",
        meta={
            "method": "imported: refusal_direction (diff-in-means, Arditi et al.)",
            "layer": meta.get("layer"),
            "position": meta.get("pos"),
            "model": model or "unknown",
            "source": str(pt),
        },
    )


def import_persona_vectors(path: str | Path, *, name: str = "persona", model: str | None = None) -> Direction:
    """A persona_vectors ``[L+1, d]`` file (rows indexed like ``hidden_states``) as our ``[L, d]``."""
    path = Path(path)
    vectors = _load_tensor(path)
    if vectors.dim() != 2 or vectors.shape[0] < 2:
        raise PersonagateError(f"{path} has shape {tuple(vectors.shape)}, expected [n_layers + 1, d]")
    return Direction(
        vectors[:-1].clone(),
        name=name,
        meta={
            "method": "imported: persona_vectors (hidden_states rows 0..L-1 = resid_pre)",
            "model": model or "unknown",
            "source": str(path),
        },
    )


def export_llamacpp_control_vector(
    direction: Direction, n_layers: int, path: str | Path, *, coeff: float = 1.0, model_hint: str = "llama"
) -> Path:
    """Write a llama.cpp control vector: ``direction.N`` = coeff x our resid_pre[N+1], N = 1..n_layers-2."""
    path = Path(path)
    if direction.per_layer and any(direction.at(layer).norm() > 0 for layer in (0, 1)):
        warnings.warn("llama.cpp cannot steer resid_pre[0] or [1]; those layers are left out", stacklevel=2)
    with tempfile.TemporaryDirectory() as folder:  # gguf writes to a path: there, then by our one writer
        staged = Path(folder) / "control.gguf"
        _write_gguf(direction, n_layers, staged, coeff, model_hint)
        write_bytes(path, staged.read_bytes())
    return path


def _write_gguf(direction: Direction, n_layers: int, path: Path, coeff: float, model_hint: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", model_hint)
    writer.add_uint32("controlvector.layer_count", n_layers - 2)
    for block in range(1, n_layers - 1):
        vector = (coeff * direction.at(block + 1)).to(torch.float32).numpy()
        writer.add_tensor(f"direction.{block}", vector)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def read_llamacpp_control_vector(path: str | Path, n_layers: int) -> Direction:
    """Read a control vector back into our convention (resid_pre[0] and [1] are zero)."""
    import gguf

    path = checks.input_file(Path(path), "GGUF", MAX_IMPORT_BYTES)
    try:
        reader = gguf.GGUFReader(str(path))
        tensors = {t.name: torch.tensor(t.data.copy()).to(torch.float32) for t in reader.tensors}
    except Exception as exc:  # the gguf reader raises many types for a malformed file
        raise PersonagateError(f"{path} is not a readable GGUF file ({type(exc).__name__})") from None
    if not tensors:
        raise PersonagateError(f"{path} holds no control-vector tensors")
    blocks = {}
    for name, value in tensors.items():
        kind, _, index = name.partition(".")
        if kind != "direction" or not index.isdigit():
            raise PersonagateError(f"{path}: tensor {name!r} is not a control vector's direction.N")
        blocks[int(index)] = value.reshape(-1)
    sizes = {v.numel() for v in blocks.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise PersonagateError(f"{path}: its direction tensors have different or empty sizes {sorted(sizes)}")
    d = sizes.pop()
    vectors = torch.zeros(n_layers, d)
    for block, value in blocks.items():
        if block + 1 < n_layers:
            vectors[block + 1] = value
    return Direction(vectors, name=Path(path).stem, meta={"method": "imported: llama.cpp control vector"})
