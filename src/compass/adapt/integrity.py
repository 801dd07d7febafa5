"""Adapter integrity: ``compass train`` records its weight file, every loader checks it.

A weight file that lost tensors still loads (PEFT leaves the missing LoRA layers at
zero and only warns), so an adapter's provenance records the SHA-256 of its weight
file and each tensor's name and shape, and :func:`verify_weights` refuses a file that
no longer matches them. :class:`~compass.adapt.adapter.Adapter` names the files and
runs the check whenever an adapter is loaded.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

from ..errors import CompassWarning, DataError

OVERRIDE = "--no-verify / verify=False loads it anyway"


def weights_manifest(file: Path) -> dict[str, Any]:
    """The ``weights`` entry of the provenance: the weight file's hash and tensor shapes."""
    return {"file": file.name, "sha256": _sha256(file), "tensors": _tensor_shapes(file)}


def recorded_manifest(provenance: dict[str, Any] | None, source: Path) -> dict[str, Any] | None:
    """The provenance's ``weights`` entry (``None``: older or external adapter, no manifest)."""
    if provenance is None or "weights" not in provenance:
        return None
    entry = provenance["weights"]
    if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("tensors"), dict)):
        raise DataError("expected {'sha256': ..., 'tensors': {name: shape}}", source=str(source),
                        field="weights")
    return entry


def verify_weights(file: Path, expected: dict[str, Any] | None, *, recorded_in: str,
                   verify: bool = True) -> None:
    """Refuse a weight file that is unreadable or differs from ``expected`` (the manifest
    kept in the file named ``recorded_in``).

    An unreadable (truncated, mangled) file is refused even with ``verify=False``:
    nothing could load it. An adapter without a manifest (older, or trained
    elsewhere) passes with a warning.
    """
    if not file.is_file():
        if expected is not None:
            raise DataError(f"missing, though {recorded_in} records it", source=str(file))
        return  # no safetensors weights: PEFT reports what it cannot read
    shapes = _tensor_shapes(file)
    if not verify:
        return
    if expected is None:
        warnings.warn(f"adapter {file.parent} has no weights manifest in {recorded_in} (older or "
                      "external adapter): its weights are not verified", CompassWarning, stacklevel=3)
        return
    problem = _shape_problem(expected["tensors"], shapes, recorded_in)
    if problem is None and _sha256(file) != expected["sha256"]:
        problem = f"SHA-256 differs from the one in {recorded_in}"
    if problem is not None:
        raise DataError(f"{problem}: the weights were edited or corrupted after training ({OVERRIDE})",
                        source=str(file))


def _shape_problem(expected: dict[str, list[int]], found: dict[str, list[int]], meta: str) -> str | None:
    missing = [n for n in expected if n not in found]
    if missing:
        return f"lacks {len(missing)} of the {len(expected)} tensors in {meta} (first: {missing[0]})"
    extra = [n for n in found if n not in expected]
    if extra:
        return f"holds {len(extra)} tensors not in {meta} (first: {extra[0]})"
    reshaped = next((n for n in expected if list(found[n]) != list(expected[n])), None)
    if reshaped is not None:
        return f"tensor {reshaped} has shape {found[reshaped]}, {meta} records {expected[reshaped]}"
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
