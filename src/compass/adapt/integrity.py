"""Adapter integrity: ``compass train`` records its weight file, every loader checks it.

A weight file that lost tensors still loads (PEFT leaves the missing LoRA layers at
zero and only warns), so ``compass.json`` records the SHA-256 of
``adapter_model.safetensors`` and each tensor's name and shape, and
:func:`verify_adapter` refuses a file that no longer matches them.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from ..errors import CompassWarning, DataError

WEIGHTS = "adapter_model.safetensors"
META = "compass.json"
OVERRIDE = "--no-verify / verify=False loads it anyway"


def weights_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``weights`` entry of ``compass.json``: the weight file's hash and tensor shapes."""
    file = Path(folder) / WEIGHTS
    return {"file": WEIGHTS, "sha256": _sha256(file), "tensors": _tensor_shapes(file)}


def read_meta(folder: str | Path) -> dict[str, Any] | None:
    """An adapter's ``compass.json`` (``None`` if it has none)."""
    file = Path(folder) / META
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", source=str(file)) from None
    if not isinstance(meta, dict):
        raise DataError("not a JSON object", source=str(file))
    return meta


def verify_adapter(folder: str | Path, *, verify: bool = True) -> None:
    """Refuse an adapter whose weight file is unreadable or differs from its manifest.

    An unreadable (truncated, mangled) file is refused even with ``verify=False``:
    nothing could load it. An adapter without a manifest (older, or trained
    elsewhere) passes with a warning.
    """
    folder = Path(folder)
    file = folder / WEIGHTS
    expected = _manifest(folder)
    if not file.is_file():
        if expected is not None:
            raise DataError(f"missing, though {META} records it", source=str(file))
        return  # no safetensors weights: PEFT reports what it cannot read
    shapes = _tensor_shapes(file)
    if not verify:
        return
    if expected is None:
        warnings.warn(f"adapter {folder} has no weights manifest in {META} (older or external "
                      "adapter): its weights are not verified", CompassWarning, stacklevel=2)
        return
    problem = _shape_problem(expected["tensors"], shapes)
    if problem is None and _sha256(file) != expected["sha256"]:
        problem = f"SHA-256 differs from the one in {META}"
    if problem is not None:
        raise DataError(f"{problem}: the weights were edited or corrupted after training ({OVERRIDE})",
                        source=str(file))


def _manifest(folder: Path) -> dict[str, Any] | None:
    meta = read_meta(folder)
    if meta is None or "weights" not in meta:
        return None
    entry = meta["weights"]
    if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("tensors"), dict)):
        raise DataError("expected {'sha256': ..., 'tensors': {name: shape}}", source=str(folder / META),
                        field="weights")
    return entry


def _shape_problem(expected: dict[str, list[int]], found: dict[str, list[int]]) -> str | None:
    missing = [n for n in expected if n not in found]
    if missing:
        return f"lacks {len(missing)} of the {len(expected)} tensors in {META} (first: {missing[0]})"
    extra = [n for n in found if n not in expected]
    if extra:
        return f"holds {len(extra)} tensors not in {META} (first: {extra[0]})"
    reshaped = next((n for n in expected if list(found[n]) != list(expected[n])), None)
    if reshaped is not None:
        return f"tensor {reshaped} has shape {found[reshaped]}, {META} records {expected[reshaped]}"
    return None


def _tensor_shapes(file: Path) -> dict[str, list[int]]:
    """Each tensor's shape, from the header; safetensors checks the header covers the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="numpy") as weights:
            return {name: list(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except (SafetensorError, OSError) as exc:
        raise DataError(f"not a readable safetensors file, truncated or corrupted ({exc})",
                        source=str(file)) from None


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
