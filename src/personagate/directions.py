"""``Direction``: one vector per layer (or one for all layers) plus where it came from.

Vectors are stored raw (the difference in means, float32) so ``Add(coeff=1)`` moves one class mean
onto the other; the site is always ``resid_pre`` (the residual stream entering block ``l``).
Files are safetensors with the provenance as JSON in the header metadata, so one file carries both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from personagate.errors import PersonagateError

SCHEMA_VERSION = 1
SITE = "resid_pre"
MAX_DIRECTION_BYTES = 2**30  # a direction of a 100-layer, 16k-wide model is 6.4 MB; 1 GB is not one


@dataclass(frozen=True, eq=False)
class Direction:
    """``vectors`` is ``[n_layers, d]`` (one per layer) or ``[d]`` (the same vector at every layer).

    A value: never changed in place. The arithmetic a study does with directions returns new ones
    (``scaled``, ``+``, ``-``, ``unit``, ``renamed``), and ``norms``/``cosine`` read them per layer.
    Equality is identity (two tensors have no single truth value); compare ``vectors`` to compare values.
    """

    vectors: torch.Tensor
    name: str = "direction"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vectors", self.vectors.detach().to(torch.float32))
        object.__setattr__(self, "meta", dict(self.meta))  # its own copy: the caller's dict stays the caller's
        if self.vectors.dim() not in (1, 2):
            raise PersonagateError(
                f"direction {self.name!r} must be [d] or [n_layers, d], got {tuple(self.vectors.shape)}"
            )
        if not torch.isfinite(self.vectors).all():
            raise PersonagateError(f"direction {self.name!r} contains NaN or infinite values; recompute it")

    @property
    def per_layer(self) -> bool:
        return self.vectors.dim() == 2

    @property
    def hidden_size(self) -> int:
        return int(self.vectors.shape[-1])

    def at(self, layer: int) -> torch.Tensor:
        """The raw vector used at ``layer``."""
        return self.vectors[layer] if self.per_layer else self.vectors

    def unit_at(self, layer: int) -> torch.Tensor:
        v = self.at(layer)
        norm = v.norm()
        if norm == 0:
            raise PersonagateError(f"direction {self.name!r} is zero at layer {layer}; it cannot be normalised")
        return v / norm

    # --- arithmetic (each returns a new direction; provenance kept, the name says what was done) ------

    def renamed(self, name: str, **meta: Any) -> Direction:
        """The same vectors under another name, with ``meta`` added to the provenance."""
        return Direction(self.vectors, name=name, meta={**self.meta, **meta})

    def scaled(self, factor: float | torch.Tensor) -> Direction:
        """Every vector times ``factor``: a number, or one number per layer (``[n_layers]``)."""
        if isinstance(factor, torch.Tensor) and factor.dim() == 1 and self.per_layer:
            if factor.shape[0] != self.vectors.shape[0]:
                raise PersonagateError(
                    f"cannot scale {self.name!r} ({self.vectors.shape[0]} layers) by {factor.shape[0]} factors"
                )
            return self._with(self.vectors * factor.to(torch.float32).unsqueeze(-1))
        return self._with(self.vectors * factor)

    def __mul__(self, factor: float) -> Direction:
        return self.scaled(factor)

    __rmul__ = __mul__

    def __neg__(self) -> Direction:
        return self.scaled(-1.0)

    def __add__(self, other: Direction) -> Direction:
        return self._with(self.vectors + self._aligned(other))

    def __sub__(self, other: Direction) -> Direction:
        return self._with(self.vectors - self._aligned(other))

    def norms(self) -> torch.Tensor:
        """The norm of each layer's vector (``[n_layers]``; one value for a shared vector)."""
        return self.vectors.norm(dim=-1).reshape(-1)

    def unit(self) -> Direction:
        """Each layer's vector at norm 1 (a zero vector stays zero: there is no direction to keep)."""
        norms = self.vectors.norm(dim=-1, keepdim=True)
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        return self._with(torch.where(norms > 0, self.vectors / safe, torch.zeros_like(self.vectors)))

    def cosine(self, other: Direction, n_layers: int | None = None) -> torch.Tensor:
        """``[n_layers]``: the cosine of the vectors the two directions use at each layer (0 where
        either is zero). ``n_layers`` is needed only when both are shared vectors."""
        if n_layers is None:
            n_layers = (
                int(self.vectors.shape[0]) if self.per_layer else int(other.vectors.shape[0]) if other.per_layer else 1
            )
        return torch.stack(
            [torch.nn.functional.cosine_similarity(self.at(i), other.at(i), dim=0) for i in range(n_layers)]
        )

    def _aligned(self, other: Direction) -> torch.Tensor:
        if other.hidden_size != self.hidden_size or (
            self.per_layer and other.per_layer and other.vectors.shape[0] != self.vectors.shape[0]
        ):
            raise PersonagateError(
                f"cannot combine {self.name!r} {tuple(self.vectors.shape)} with {other.name!r} "
                f"{tuple(other.vectors.shape)}; they belong to different models"
            )
        return other.vectors

    def _with(self, vectors: torch.Tensor) -> Direction:
        return Direction(vectors, name=self.name, meta=self.meta)

    def check_fits(
        self, n_layers: int, hidden_size: int, *, model_hash: str | None = None, force: bool = False
    ) -> None:
        """Raise unless this direction can be applied to a model of this shape (and, when known, config)."""
        if self.hidden_size != hidden_size:
            raise PersonagateError(
                f"direction {self.name!r} has hidden size {self.hidden_size} but the model has {hidden_size}; "
                "it was made for another model"
            )
        if self.per_layer and self.vectors.shape[0] != n_layers:
            raise PersonagateError(
                f"direction {self.name!r} has {self.vectors.shape[0]} layers but the model has {n_layers}; "
                "it was made for another model"
            )
        made_for = self.meta.get("config_hash")
        if not force and model_hash and made_for and made_for != model_hash:
            raise PersonagateError(
                f"direction {self.name!r} was made for model {self.meta.get('model', '?')} (config {made_for}), "
                f"not this one (config {model_hash}); pass force=True / --force to apply it anyway"
            )

    def save(self, path: str | Path) -> Path:
        """Write the safetensors file (whole or not at all, by the package's one writer)."""
        from personagate.outputs import write_bytes

        path = Path(path)
        write_bytes(path, self.to_bytes())
        return path

    def to_bytes(self) -> bytes:
        """The safetensors file's bytes (what a worker process receives: data, never a pickled object)."""
        from safetensors.torch import save

        header = {"name": self.name, "schema_version": SCHEMA_VERSION, "site": SITE, **self.meta}
        return save({"vectors": self.vectors.contiguous()}, metadata={"personagate": json.dumps(header)})

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "a direction") -> Direction:
        """A direction from a safetensors file's bytes; anything that is not one is a one-line error."""
        from safetensors.torch import load

        try:
            tensors = load(data)
            header = json.loads(_metadata(data).get("personagate", "{}"))
        except (SafetensorError, ValueError, RecursionError, UnicodeDecodeError, OverflowError) as exc:
            raise PersonagateError(f"{where} is not a readable direction file ({exc})") from None
        if not isinstance(header, dict):
            raise PersonagateError(f"{where}: its personagate metadata is not a table; it was not written by us")
        vectors = tensors.get("vectors")
        if vectors is None:
            raise PersonagateError(f"{where} holds no 'vectors' tensor; is it a personagate direction file?")
        if not (vectors.is_floating_point() and vectors.dim() in (1, 2) and vectors.numel() > 0):
            raise PersonagateError(f"{where}: 'vectors' must be a non-empty float tensor [d] or [n_layers, d]")
        version = header.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise PersonagateError(f"{where}: schema_version {version!r} is not a version personagate writes")
        if version > SCHEMA_VERSION:
            raise PersonagateError(f"{where} has schema version {version}; upgrade personagate to read it")
        name = header.pop("name", None)
        return cls(vectors, name=name if isinstance(name, str) and name else Path(where).stem, meta=header)

    @classmethod
    def load(cls, path: str | Path) -> Direction:
        from personagate.checks import read_bytes

        path = Path(path)
        return cls.from_bytes(read_bytes(path, "direction", MAX_DIRECTION_BYTES), str(path))


def _metadata(data: bytes) -> dict[str, str]:
    """The metadata of a safetensors buffer (its JSON header's ``__metadata__``)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return metadata if isinstance(metadata, dict) else {}


def random_direction(
    like: Direction,
    seed: int,
    *,
    orthogonal_to: tuple[Direction, ...] = (),
    name: str | None = None,
) -> Direction:
    """A Haar-random control with ``like``'s shape and per-layer norm, optionally orthogonal to others.

    Each layer's vector is a seeded standard normal draw (uniform on the sphere once normalised),
    Gram-Schmidt-orthogonalised against ``orthogonal_to`` at that layer, then scaled to the norm of
    the vector it stands in for.
    """
    for other in orthogonal_to:
        if other.hidden_size != like.hidden_size:
            raise PersonagateError(
                f"cannot orthogonalise against {other.name!r}: hidden size {other.hidden_size}, "
                f"but {like.name!r} has {like.hidden_size}; they belong to different models"
            )
        if like.per_layer and other.per_layer and other.vectors.shape[0] != like.vectors.shape[0]:
            raise PersonagateError(
                f"cannot orthogonalise against {other.name!r}: {other.vectors.shape[0]} layers, "
                f"but {like.name!r} has {like.vectors.shape[0]}; they belong to different models"
            )
    generator = torch.Generator().manual_seed(seed)
    rows = like.vectors if like.per_layer else like.vectors.unsqueeze(0)
    out = torch.empty_like(rows)
    for layer in range(rows.shape[0]):
        v = torch.randn(rows.shape[1], generator=generator, dtype=torch.float64)
        basis: list[torch.Tensor] = []
        for other in orthogonal_to:
            u = other.at(layer).to(torch.float64)
            for b in basis:
                u = u - (u @ b) * b
            if u.norm() > 0:
                basis.append(u / u.norm())
        for b in basis:
            v = v - (v @ b) * b
        out[layer] = (v / v.norm() * rows[layer].norm().to(torch.float64)).to(torch.float32)
    vectors = out if like.per_layer else out[0]
    meta = {
        **{k: v for k, v in like.meta.items() if k in ("model", "config_hash")},
        "method": "random",
        "seed": seed,
        "controls_for": like.name,
        "orthogonal_to": [d.name for d in orthogonal_to],
    }
    return Direction(vectors, name=name or f"random-{seed}", meta=meta)


def matched_random_direction(like: Direction, anchor: torch.Tensor, seed: int, *, name: str | None = None) -> Direction:
    """A random control that can fail: at every layer it has the same cosine with ``anchor`` (the
    injected vector) as ``like`` has there, and ``like``'s norm; otherwise it is Haar-random.

    Projecting ``like`` out of a window removes a share of the injected vector set by that cosine;
    this control removes the same share. If projecting ``like`` out restores behaviour only because
    it removes injected vector, these controls restore it as well.
    """
    if anchor.dim() != 1 or anchor.shape[0] != like.hidden_size:
        raise PersonagateError(f"the anchor must be one vector of size {like.hidden_size}, got {tuple(anchor.shape)}")
    if float(anchor.norm()) == 0:
        raise PersonagateError("the anchor (the injected vector) is zero; nothing to match")
    generator = torch.Generator().manual_seed(seed)
    a = anchor.to(torch.float64) / anchor.to(torch.float64).norm()
    rows = like.vectors if like.per_layer else like.vectors.unsqueeze(0)
    out = torch.zeros_like(rows)
    for layer in range(rows.shape[0]):
        v = rows[layer].to(torch.float64)
        w = torch.randn(like.hidden_size, generator=generator, dtype=torch.float64)
        if float(v.norm()) == 0:
            continue
        cos = float((v @ a) / v.norm())
        w = w - (w @ a) * a
        w = w / w.norm()
        r = cos * a + (max(0.0, 1.0 - cos * cos) ** 0.5) * w
        out[layer] = (r * v.norm()).to(torch.float32)
    meta = {
        **{k: v for k, v in like.meta.items() if k in ("model", "config_hash")},
        "method": "random, cosine with the injected vector matched per layer",
        "seed": seed,
        "controls_for": like.name,
    }
    return Direction(out if like.per_layer else out[0], name=name or f"matched-{seed}", meta=meta)


def _tilted_energy(values: torch.Tensor, c: torch.Tensor, a: float) -> float:
    """The energy ``u^T M u`` of ``u ~ M^a g`` normalised, from M's eigenvalues and ``c = V^T g``."""
    weights = values ** (2 * a) * c * c
    return float((weights * values).sum() / weights.sum())


def energy_matched_direction(
    like: Direction,
    moments: dict[int, torch.Tensor],
    seed: int,
    *,
    n_layers: int | None = None,
    name: str | None = None,
) -> Direction:
    """A random control that removes as much as ``like`` does: at every layer ``l`` of ``moments`` (the
    second moment ``E[h h^T]`` of the residual stream there), a random unit vector ``u`` carrying the
    same energy ``u^T M u`` as ``like``'s unit vector, scaled to ``like``'s norm; elsewhere Haar-random.

    ``u`` is a Gaussian draw ``g`` tilted by a power of ``M``: ``u ~ M^a g``. The energy of that unit
    vector is ``sum(l_i^(2a+1) c_i^2) / sum(l_i^(2a) c_i^2)`` over ``M``'s eigenpairs (``c = V^T g``), the
    ratio of consecutive moments of a log-convex function, so it grows monotonically with ``a``, and
    ``a`` is found by bisection (``a = 0``: Haar-random). Energy is a projection's bite: how much of the
    stream a direction carries is what projecting it out removes. A shared vector (``like`` one vector
    for every layer) gives a per-layer control over ``n_layers`` layers.
    """
    generator = torch.Generator().manual_seed(seed)
    if not like.per_layer and n_layers is None:
        raise PersonagateError("an energy-matched control of a shared vector needs n_layers")
    rows = like.vectors if like.per_layer else like.vectors.unsqueeze(0).expand(n_layers or 1, -1)
    out = torch.zeros((rows.shape[0], like.hidden_size), dtype=torch.float32)
    achieved: dict[str, list[float]] = {}
    for layer in range(rows.shape[0]):
        v = rows[layer].to(torch.float64)
        g = torch.randn(like.hidden_size, generator=generator, dtype=torch.float64)
        norm = float(v.norm())
        if norm == 0:
            continue
        if layer not in moments:
            out[layer] = (g / g.norm() * norm).to(torch.float32)
            continue
        values, vectors = torch.linalg.eigh(moments[layer].to(torch.float64))
        values = values.clamp_min(float(values.max()) * 1e-12)
        c = vectors.T @ g
        target = float((v / norm) @ moments[layer].to(torch.float64) @ (v / norm))

        low, high = -8.0, 8.0
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if _tilted_energy(values, c, middle) < target else (low, middle)
        a = (low + high) / 2
        u = vectors @ (values**a * c)
        out[layer] = (u / u.norm() * norm).to(torch.float32)
        achieved[str(layer)] = [target, _tilted_energy(values, c, a)]
    meta = {
        **{k: v for k, v in like.meta.items() if k in ("model", "config_hash")},
        "method": "random, energy along it matched per layer (tilted Gaussian)",
        "seed": seed,
        "controls_for": like.name,
        "energy": achieved,  # per layer: [target, achieved]
    }
    return Direction(out, name=name or f"energy-{seed}", meta=meta)
