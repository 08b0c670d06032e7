"""Load a chat model by Hub id, local folder, GGUF file, or bundled name, with one dtype/device policy."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from personagate import checks
from personagate.errors import PersonagateError
from personagate.models.adapters import ArchitectureAdapter, adapter_for, architecture_of
from personagate.models.bundled import BUNDLED, load_cached


@dataclass
class ChatModel:
    """A causal LM, its tokenizer, and where its blocks live. Everything downstream takes this."""

    model: nn.Module
    tokenizer: Any
    adapter: ArchitectureAdapter
    name: str
    load_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def wrap(cls, model: nn.Module, tokenizer: Any, adapter: ArchitectureAdapter | None = None) -> ChatModel:
        """Use a model you loaded yourself."""
        name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        return cls(model=model, tokenizer=tokenizer, adapter=adapter_for(model, adapter), name=name)

    @property
    def n_layers(self) -> int:
        return len(self.adapter.get_blocks(self.model))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def architecture(self) -> str:
        return architecture_of(self.model)

    def config_hash(self) -> str:
        """Short hash of the model config: what a direction file records to refuse the wrong model."""
        return config_hash(self.model.config)

    def weights_fingerprint(self) -> str:
        """Short hash of the weights themselves (a sample of every tensor): tells a fine-tune from its
        base model, which share a config."""
        return weights_fingerprint(self.model)


def config_hash(config: Any) -> str:
    keys = (
        "architectures",
        "hidden_size",
        "num_hidden_layers",
        "vocab_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
    )
    data = {k: getattr(config, k, None) for k in keys}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def check_device(device: str | None) -> None:
    """A device string torch understands (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked
    before anything loads; a missing accelerator is named too."""
    if device in (None, "auto"):
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise PersonagateError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise PersonagateError(f"device {device!r} cannot run a model here; use auto, cpu, cuda, cuda:N or mps")
    if parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise PersonagateError(f"device {device!r} asked for, but torch sees no Apple GPU (MPS) here; use cpu or auto")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise PersonagateError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use cpu or auto")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise PersonagateError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")


# Values sampled from each tensor for the weights fingerprint: enough that any real fine-tune or
# re-quantisation changes it, few enough that a 7B model is fingerprinted in well under a second.
_FINGERPRINT_SAMPLES = 4096


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) over every parameter's name, shape, dtype and an evenly strided sample
    of its values (the same positions every time)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _FINGERPRINT_SAMPLES)
            sample = flat[::step][:_FINGERPRINT_SAMPLES].to("cpu", torch.float32).contiguous()
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def resolve_device(device: str | None) -> torch.device:
    check_device(device)
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow and lossy there), bf16 on accelerators."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def _parse_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise PersonagateError(f"unknown dtype {dtype!r}; use one of {', '.join(table)}")
    return table[dtype]


def load_model(
    spec: str,
    *,
    device: str | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    adapter: ArchitectureAdapter | None = None,
) -> ChatModel:
    """Load ``spec``: ``default`` (bundled Qwen2.5-Coder-0.5B-Instruct), another bundled name,
    a ``.gguf`` file, a local Hugging Face folder, or a Hub id.

    ``device_map="auto"`` spreads a model larger than one GPU over the available devices.
    ``trust_remote_code`` stays off unless you pass it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info: dict[str, Any] = {"spec": spec}
    target = resolve_device(device)
    torch_dtype = _parse_dtype(dtype, target)
    started = time.perf_counter()

    def from_folder(folder: str | Path, **extra: Any) -> tuple[nn.Module, Any]:
        kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code, **extra}
        if device_map is not None:
            kwargs["device_map"] = device_map
        info["folder"] = str(folder)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code, **extra)
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        if device_map is None:
            model.to(target)
        return model, tokenizer

    if spec in BUNDLED:
        bundle = BUNDLED[spec]
        model, tokenizer = load_cached(bundle, from_folder)  # type: ignore[misc]
        name, info["bundle"] = bundle.name, bundle.name
        info["gguf_sha256"] = bundle.sha256
    else:
        path = Path(spec).expanduser()
        check_model_source(spec)
        if spec.endswith(".gguf"):
            model, tokenizer = _local(spec, lambda: from_folder(path.parent, gguf_file=path.name))
        elif path.is_dir():
            model, tokenizer = _local(spec, lambda: from_folder(path))
        else:
            model, tokenizer = _from_hub(spec, from_folder)
        name = spec
    model.eval()
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]
    chat = ChatModel(model=model, tokenizer=tokenizer, adapter=adapter_for(model, adapter), name=name, info=info)
    _ensure_pad_token(tokenizer)
    chat.load_seconds = time.perf_counter() - started
    return chat


GGUF_MAGIC = b"GGUF"


def check_model_source(spec: str) -> None:
    """What can be told about a model argument without loading it: a bundled name, a GGUF file that
    starts like one, a folder with a ``config.json``, or something that may be a Hub id."""
    if not isinstance(spec, str) or not spec.strip():
        raise PersonagateError("the model is empty; pass 'default', a Hub id, a folder or a .gguf file")
    if spec in BUNDLED:
        return
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.exists():
            raise PersonagateError(f"no such GGUF file: {spec}")
        checks.input_file(path, "GGUF")  # a FIFO would block the read below for ever
        with open(path, "rb") as f:
            if f.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
                raise PersonagateError(f"{spec} is not a GGUF file (it does not start with 'GGUF')")
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise PersonagateError(f"{spec} is a folder without config.json; it is not a Hugging Face model folder")
    elif path.exists() or spec.startswith((".", "/", "~")):
        raise PersonagateError(f"{spec} is not a model folder or a .gguf file")


def _local(spec: str, load: Any) -> Any:
    """A local model load whose failures (a truncated GGUF, missing weight files) are one-line errors."""
    try:
        return load()
    except PersonagateError:
        raise
    except Exception as exc:  # a damaged local file fails inside whichever parser reads it, with its own type
        raise PersonagateError(
            f"could not load the model in {spec} ({type(exc).__name__}: {_first_line(exc)}); is the file complete?"
        ) from None


def model_shape(spec: str) -> tuple[int, int] | None:
    """(blocks, hidden size) from the config alone, without weights (None when it cannot be read offline)."""
    if spec in BUNDLED:
        return BUNDLED[spec].n_layers, BUNDLED[spec].hidden_size
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") or not path.is_dir():
        return None
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        return int(config.num_hidden_layers), int(config.hidden_size)
    except Exception:  # an unusual config: checked again once loaded
        return None


def model_layer_count(spec: str) -> int | None:
    """The number of decoder blocks, read without loading weights (None when it cannot be read offline)."""
    if spec in BUNDLED:
        return BUNDLED[spec].n_layers
    path = Path(spec).expanduser()
    try:
        if spec.endswith(".gguf"):
            if not path.is_file():
                raise PersonagateError(f"no such GGUF file: {spec}")
            import gguf

            reader = gguf.GGUFReader(str(path))
            arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
            return int(reader.fields[f"{arch}.block_count"].parts[-1][0])
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(path) if path.is_dir() else spec, local_files_only=True)
        return int(config.num_hidden_layers)
    except PersonagateError:
        raise
    except Exception:  # not cached locally, or an unusual config: checked again once loaded
        return None


def load_tokenizer(spec: str, *, trust_remote_code: bool = False) -> tuple[Any, int | None] | None:
    """The tokenizer and context length of ``spec`` without its weights, when they are on this machine
    (None otherwise: the checks that need them run once the model is loaded)."""
    from transformers import AutoConfig, AutoTokenizer

    def from_folder(folder: str | Path, **extra: Any) -> tuple[Any, int | None]:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code, **extra)
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code, **extra)
        limit = getattr(config, "max_position_embeddings", None)
        _ensure_pad_token(tokenizer)
        return tokenizer, limit if isinstance(limit, int) else None

    path = Path(spec).expanduser()
    try:
        if spec in BUNDLED:
            return load_cached(BUNDLED[spec], from_folder)  # type: ignore[return-value]
        if spec.endswith(".gguf"):
            return from_folder(path.parent, gguf_file=path.name)
        return from_folder(path if path.is_dir() else spec, local_files_only=True)
    except PersonagateError:
        raise
    except Exception:  # not on this machine, or unusual files: the full load decides
        return None


def _from_hub(spec: str, from_folder: Any) -> tuple[nn.Module, Any]:
    """The local Hugging Face cache first; the Hub only when it answers, so offline fails fast in one line."""
    try:
        return from_folder(spec, local_files_only=True)
    except OSError:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise PersonagateError(f"model {spec!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or 443), timeout=5).close()
    except OSError:
        raise PersonagateError(
            f"model {spec!r} is not cached locally and the Hugging Face Hub cannot be reached (offline?); "
            "pass a local folder, a .gguf file, or 'default'"
        ) from None
    try:
        return from_folder(spec)
    except OSError as exc:
        raise PersonagateError(
            f"could not load model {spec!r} from the Hugging Face Hub ({_first_line(exc)}); check the id or your "
            "access to it, or pass a local folder, a .gguf file, or 'default'"
        ) from None


def _ensure_pad_token(tokenizer: Any) -> None:
    """Left padding needs a pad id; reuse EOS when the tokenizer has none (padded positions are masked)."""
    if getattr(tokenizer, "pad_token_id", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        tokenizer.pad_token = tokenizer.eos_token


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
