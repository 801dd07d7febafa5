"""The ``Adapter`` artifact: a PEFT LoRA folder and its COMPASS provenance (``compass.json``).

Loading one always runs the integrity check (:mod:`compass.adapt.integrity`), so an
adapter whose weights were edited after training is refused wherever it is used:
evaluation, continued training, the registry.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..artifact import load_manifest, stamp, write_json
from ..fsutil import follow_umask
from ..outputs import OutputKind, publish_directory
from ..selection.artifact import Selection
from .integrity import recorded_manifest, verify_weights, weights_manifest


@dataclass
class Adapter:
    """An adapter's provenance (``None``: trained elsewhere, no ``compass.json``) and, once
    saved or loaded, its folder; PEFT's own files hold the weights."""

    CONFIG: ClassVar[str] = "adapter_config.json"  # PEFT's
    WEIGHTS: ClassVar[str] = "adapter_model.safetensors"  # PEFT's
    META: ClassVar[str] = "compass.json"
    README: ClassVar[str] = "README.md"
    REFERENCE: ClassVar[str] = Selection.REFERENCE  # the drift monitor's, from the selection
    KIND: ClassVar[str] = "adapter"
    VERSION: ClassVar[int] = 1
    OUTPUT: ClassVar[OutputKind] = OutputKind(
        "an adapter", frozenset({CONFIG, WEIGHTS, META, README, REFERENCE}), replace=False)

    provenance: dict[str, Any] | None
    path: Path | None = field(default=None, compare=False)

    def save(self, out: str | Path, weights: Any, *, overwrite: bool = False,
             selection: Path | None = None) -> Path:
        """Publish the folder atomically: ``weights`` (a PEFT model) saved by PEFT, the
        provenance with its weights manifest (added to it) and format version, a model
        card, and the drift monitor's reference of ``selection`` when it has one."""
        out, provenance = Path(out), self.provenance
        if provenance is None:
            raise ValueError("an adapter is saved with its provenance (compass.json)")
        with publish_directory(out, self.OUTPUT, overwrite=overwrite) as tmp:
            weights.save_pretrained(tmp)
            provenance["weights"] = weights_manifest(tmp / self.WEIGHTS)
            if selection is not None and (selection / self.REFERENCE).is_file():
                shutil.copyfile(selection / self.REFERENCE, tmp / self.REFERENCE)
            write_json(tmp / self.META, stamp(provenance, {self.KIND: self.VERSION}))
            (tmp / self.README).write_text(model_card(provenance), encoding="utf-8")
            follow_umask(tmp)
        self.path = out
        return out

    @classmethod
    def exists(cls, directory: str | Path) -> bool:
        """Whether ``directory`` holds an adapter COMPASS trained (its provenance)."""
        return (Path(directory) / cls.META).is_file()

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> Adapter:
        """The adapter in ``directory``, once its weights match the manifest in its provenance
        (``verify=False`` skips that, not the check that the file is readable at all)."""
        folder = Path(directory)
        provenance = cls.read_provenance(folder)
        verify_weights(folder / cls.WEIGHTS, recorded_manifest(provenance, folder / cls.META),
                       recorded_in=cls.META, verify=verify)
        return cls(provenance, folder)

    @classmethod
    def read_provenance(cls, directory: str | Path) -> dict[str, Any] | None:
        """``compass.json`` without loading the adapter (``None`` if it has none); one of a
        newer format than this COMPASS reads is refused."""
        file = Path(directory) / cls.META
        return load_manifest(file, cls.KIND, cls.VERSION)[0] if file.is_file() else None


def model_card(p: dict[str, Any]) -> str:
    """The adapter's ``README.md``, as the Hugging Face Hub shows it."""
    c = p["config"]
    d = p["data"]
    return f"""---
library_name: peft
base_model: {p['base_model']}
tags: [compass, lora]
---
# COMPASS LoRA adapter

LoRA (rank {c['rank']}, alpha {c['alpha']}, modules `{c['target_modules']}`) on
`{p['base_model']}` ({p['base_revision']}), trained with COMPASS.

* Target-language train data: {d['train']['records']} records (sha256 {d['train']['sha256']}).
* Selected auxiliary data: {d['selected']['records']} records (sha256 {d['selected']['sha256']}).
* Replayed earlier training data: {d['replay']['records']} records (sha256 {d['replay']['sha256']});
  continued from: {p['init_adapter'] or 'a fresh LoRA'}.
* {p['steps']} optimizer steps, final loss {p['final_loss']:.4f}, {p['tokens_per_second']} tokens/s,
  {p['wall_seconds']} s.

Load it with `peft.PeftModel.from_pretrained(base, "<this folder>")`, or serve it with
vLLM / SGLang as a LoRA module. Full provenance: `{Adapter.META}`.
"""
