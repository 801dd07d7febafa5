"""How and where COMPASS runs: one :class:`Runtime`, built once at the edge and passed down.

The command line builds it from its options (``--model``, ``--cache-dir``, ``--device``,
``--dtype``, ``--progress``, ``--verbose``), the experiment runner and the ECDA worker
from their settings; ``select``, ``train``, ``evaluate``, ``probe``, the update policy and
the rest take ``runtime=`` (``None``: the defaults). It owns what those steps share:
the embedding cache and encoders (made on first use), progress display
(:mod:`compass.progress`) and output hygiene: the libraries' warnings, info logs and
per-load bars are hidden unless ``verbose``, so a user sees COMPASS's own progress and
results. Loading a model stays in :mod:`compass.adapt.models`, which takes a Runtime.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import warnings
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .embed import EmbeddingCache, Encoder, embed_texts, get_encoder
from .errors import ConfigError
from .options import option
from .progress import progress_bar

if TYPE_CHECKING:
    import numpy as np

DTYPES = ("float32", "bfloat16", "float16")
# Libraries whose warnings and logs a user cannot act on.
NOISY = ("transformers", "peft", "torch", "accelerate", "huggingface_hub", "sentence_transformers",
         "tokenizers", "datasets", "ray")
QUIET_ENV = {  # read when a library is imported: set before, it starts quiet
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also transformers' "Loading weights" bars
    "TOKENIZERS_PARALLELISM": "false",  # no fork warning (a forked child may not use it anyway)
}


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The model, cache, device, dtype, progress and verbosity of a run (see the module
    docstring). ``progress``: ``None`` is a bar on a terminal and a line a minute in a log."""

    model: str | None = option(None, help="Base model: a hub id or a folder; default the bundled "
                               "Gemma 3 270M.")
    cache_dir: Path | None = option(None, help="Cache: embeddings and the converted bundled model "
                                    "(default $COMPASS_CACHE_DIR or ~/.cache/compass; with --engine "
                                    "ray, pool embeddings go to .compass-cache/ beside each shard).")
    device: str | None = option(None, help="Torch device of the model (cpu, cuda, cuda:1, ...); "
                                "default CUDA when present, else the CPU.")
    dtype: str | None = option(None, choices=DTYPES, help="Dtype of the model's weights; default "
                               "bfloat16 on CUDA, float32 on the CPU.")
    progress: bool | None = option(None, flag="--progress/--no-progress", help="Progress bars "
                                   "(default: on a terminal; in a log, a line a minute on long steps).")
    verbose: bool = option(False, flag="--verbose", help="Show the libraries' own warnings, logs and "
                           "loading bars (hidden by default).")

    def __post_init__(self) -> None:
        if self.cache_dir is not None and not isinstance(self.cache_dir, Path):
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r}: choose from {', '.join(DTYPES)}")

    def with_model(self, model: str | None) -> Runtime:
        """This runtime for ``model`` (a config's base model, e.g. an experiment's)."""
        return self if model == self.model else dataclasses.replace(self, model=model)

    @property
    def cache(self) -> EmbeddingCache:
        """The embedding cache under ``cache_dir``, opened on first use and shared by the
        steps of a run: one per thread (an SQLite connection stays in its thread, and the
        service embeds in its monitor thread)."""
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = EmbeddingCache(self.cache_dir)
        return cache

    @cached_property
    def _local(self) -> threading.local:
        return threading.local()

    def encoder(self, spec: str | Encoder) -> Encoder:
        """The encoder ``spec`` names, made once per runtime (a model loads on first encode)."""
        if not isinstance(spec, str):
            return spec
        if spec not in self._encoders:
            self.hush()
            self._encoders[spec] = get_encoder(spec)
        return self._encoders[spec]

    @cached_property
    def _encoders(self) -> dict[str, Encoder]:
        return {}

    def embed(self, texts: list[str], encoder: str | Encoder, *, desc: str = "embedding") -> np.ndarray:
        """:func:`~compass.embed.embed_texts` with this run's encoder, cache and progress display."""
        return embed_texts(texts, self.encoder(encoder), cache=self.cache, progress=self.progress, desc=desc)

    def bar(self, total: int | None, desc: str, unit: str, **kw: Any) -> Any:
        """A progress display for a long step (see :func:`compass.progress.progress_bar`)."""
        return progress_bar(self.progress, total, desc, unit, **kw)

    def hush(self) -> None:
        """Hide library noise unless ``verbose``: FutureWarnings and DeprecationWarnings,
        the libraries' warnings and info logs, and their download and loading bars
        (environment variables for libraries not yet imported; :mod:`compass.adapt.models`
        turns transformers' own switches once it is). COMPASS's warnings stay."""
        if self.verbose:
            return
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)
        for name in NOISY:
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", module=rf"({'|'.join(NOISY)})(\.|$)")

