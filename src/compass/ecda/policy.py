"""What ECDA does on drift: re-select for the new gap, continue training, gate, record.

The recent queries become the new usage set (a held-out share of them is the
adaptation set); a fresh COMPASS selection fills the gap between that usage and
everything the current adapter was trained on (novel queries open clusters of their
own, because clustering runs on the new usage with the old training data); the
current adapter continues training on the selection plus a replay share of its
earlier data, optionally pulled toward its old weights; and the candidate is promoted
only if it helps the new traffic without hurting the old (the gate). Every candidate,
promoted or not, is registered with its numbers and reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..adapt import TrainConfig, evaluate, train
from ..data import Record, load
from ..data.sources import stable_bucket
from ..errors import ConfigError
from ..fsutil import atomic_write_text
from ..langs import normalize_lang
from ..options import option
from ..runtime import Runtime
from ..selection import Selection, select
from .machine import GATING, SELECTING, TRAINING
from .registry import Registry

TRAINED = "trained.jsonl"


@dataclass
class PolicyConfig:
    """Options of an ECDA update.

    budget: auxiliary records selected per update.
    confirm: alarms in consecutive windows before an update starts (a single alarm
        may be one of the ``alpha`` false alarms; the collection still begins at the
        first alarmed window of the run).
    min_queries: queries collected from that window on before the update runs.
    holdout: share of them held out (by a stable hash of the id) as the adaptation set.
    delta: promote only if the adaptation-set NLL improves by at least this share...
    epsilon: ...and the preservation-set NLL worsens by at most this share.
    replay_share / l2_pull: see :class:`compass.adapt.TrainConfig`.
    select / train: further :class:`SelectConfig` / :class:`TrainConfig` options.
    """

    budget: int = option(200, help="Updates: records selected per update.")
    confirm: int = option(2, help="Updates: alarmed windows in a row before an update starts.")
    min_queries: int = option(400, help="Updates: queries after an alarm per update.")
    holdout: float = option(0.25, help="Updates: share of those queries held out as the "
                            "adaptation set.")
    delta: float = option(0.005, help="Gate: least relative NLL gain on new usage.")
    epsilon: float = option(0.01, help="Gate: most relative NLL loss on old usage.")
    replay_share: float = option(0.2, help="Share of replayed earlier training data.")
    l2_pull: float = option(0.0, help="L2 pull toward the previous adapter's weights.")
    seed: int = option(0, flag="--update-seed", help="Updates: seed of selection and training.")
    select: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.budget < 1 or self.min_queries < 2 or self.confirm < 1:
            raise ConfigError("policy budget and confirm must be ≥ 1 and min_queries ≥ 2")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError("policy holdout must be in (0, 1)")
        if self.delta < 0 or self.epsilon < 0:
            raise ConfigError("gate delta and epsilon must be ≥ 0")

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{"seed": self.seed, **self.train, "replay_share": self.replay_share,
                              "l2_pull": self.l2_pull})


@dataclass
class UpdateOutcome:
    """One update: the candidate, the gate's verdict and numbers, where its files are."""

    adapter: str
    parent: str
    promoted: bool
    reason: str
    numbers: dict[str, float]
    selection: str
    tokens: int
    awaiting: bool = False  # passed the gate, left a candidate for an operator to approve

    @property
    def action(self) -> str:
        verb = "await" if self.awaiting else "promote" if self.promoted else "reject"
        return f"{verb}:{self.adapter}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "action": self.action}


def gate(current: dict[str, float], candidate: dict[str, float], *, delta: float,
         epsilon: float) -> tuple[bool, str, dict[str, float]]:
    """Promote iff adaptation NLL falls by ≥ ``delta`` and preservation NLL rises by ≤
    ``epsilon`` (both relative to the current adapter). Returns (ok, reason, numbers)."""
    gain = (current["adaptation"] - candidate["adaptation"]) / current["adaptation"]
    loss = (candidate["preservation"] - current["preservation"]) / current["preservation"]
    numbers = {"adaptation_nll": candidate["adaptation"], "adaptation_nll_current": current["adaptation"],
               "preservation_nll": candidate["preservation"],
               "preservation_nll_current": current["preservation"],
               "adaptation_gain": gain, "preservation_loss": loss, "delta": delta, "epsilon": epsilon}
    if gain < delta:
        return False, f"adaptation NLL improved by {gain:.2%} < delta {delta:.2%}", numbers
    if loss > epsilon:
        return False, f"preservation NLL worsened by {loss:.2%} > epsilon {epsilon:.2%}", numbers
    return True, f"adaptation NLL −{gain:.2%}, preservation {loss:+.2%}", numbers


class UpdatePolicy:
    """Turns a language's recent queries into a gated candidate adapter.

    ``pool``: the auxiliary pool (any source). ``preservation``: held-out old usage of
    the language(s) (any source; records of other languages are ignored per update).
    ``trained``: what the currently active adapter was trained on (train + selection),
    needed once: each update writes the cumulative data of its candidate to
    ``workdir/<id>/trained.jsonl`` and later updates read it from there. ``runtime``: the
    base model, cache and progress of select, train and the gate. ``verify=False``
    loads and registers adapters whose weights no longer match their ``compass.json``.
    """

    def __init__(self, registry: Registry | str | Path | None, pool: Any, preservation: Any, *,
                 workdir: str | Path, trained: Any = None, config: PolicyConfig | None = None,
                 runtime: Runtime | None = None, verify: bool = True) -> None:
        self.registry = registry if isinstance(registry, Registry) else Registry(registry)
        self.pool, self.trained = pool, trained
        self.preservation = load(preservation, name="preservation")
        self.workdir = Path(workdir)
        self.config = config or PolicyConfig()
        self.runtime, self.verify = runtime or Runtime(), verify

    def update(self, lang: str, queries: list[Record], *, adapter_id: str | None = None,
               promote: bool = True, step: Callable[[str, str], object] | None = None) -> UpdateOutcome:
        """Run one update for ``lang`` on its recent ``queries``; register and gate it.

        ``adapter_id`` names the candidate (default: the next free ``<lang>-u<n>``; a
        worker fixes it so a retried job finds its own candidate). ``promote=False``
        leaves a candidate that passed the gate for an operator to promote. ``step(state,
        reason)`` is told as each step starts (the ECDA machine's selecting, training, gating).
        """
        step = step or (lambda state, reason: None)
        lang, cfg = normalize_lang(lang), self.config
        current = self.registry.active(lang)
        if current is None:
            raise ConfigError(f"no active adapter for {lang}: register and promote one first")
        preserve = [r for r in self.preservation if r.lang == lang]
        if not preserve:
            raise ConfigError(f"the preservation set has no {lang} records")
        usage, adaptation = self._split(queries)
        history = self._history(current.id)
        new_id = adapter_id or self.next_id(lang)
        folder = self.workdir / new_id
        step(SELECTING, f"{len(usage)} usage and {len(adaptation)} adaptation queries")
        selection = select(usage, self.pool, cfg.budget, train=history, target_lang=lang,
                           out=folder / "selection", runtime=self.runtime, **{"seed": cfg.seed, **cfg.select})
        # Replay the language's own earlier data: the new selection is mostly other
        # languages, and without target-language text the update drifts away from it.
        replay = [r for r in history if r.lang == lang] or history
        step(TRAINING, f"candidate {new_id} from {current.id}")
        prov = train(None, folder / "adapter", selected=folder / "selection", init_adapter=current.path,
                     replay=replay, config=cfg.train_config(), runtime=self.runtime, overwrite=True,
                     verify=self.verify)
        step(GATING, f"{current.id} and {new_id} on {len(adaptation)} adaptation and {len(preserve)} "
             "preservation records")
        scores = self._score(adaptation, preserve, [current.path, str(folder / "adapter")])
        ok, reason, numbers = gate(scores[current.path], scores[str(folder / "adapter")],
                                   delta=cfg.delta, epsilon=cfg.epsilon)
        numbers["tokens"] = prov["tokens"]
        atomic_write_text(folder / TRAINED, "".join(
            json.dumps(r.to_dict(), ensure_ascii=False) + "\n"
            for r in history + Selection.load_records(folder / "selection")))
        provenance = {**prov, "ecda": {"queries": len(queries), "usage": len(usage),
                                       "adaptation": len(adaptation), "preservation": len(preserve),
                                       "selection": str(folder / "selection"),
                                       "selection_sizes": selection.report["sizes"],
                                       "policy": asdict(cfg)}}
        self.registry.register(new_id, lang, folder / "adapter", parent=current.id,
                               provenance=provenance, metrics=numbers, verify=self.verify)
        if ok and promote:
            self.registry.promote(new_id, reason=reason, numbers=numbers, verify=self.verify)
        elif not ok:
            self.registry.reject(new_id, reason, numbers=numbers)
        return UpdateOutcome(new_id, current.id, ok and promote, reason, numbers, str(folder / "selection"),
                             prov["tokens"], awaiting=ok and not promote)

    def _split(self, queries: list[Record]) -> tuple[list[Record], list[Record]]:
        cut = int(round(self.config.holdout * 10_000))
        held = [stable_bucket(f"{q.id}\x00{q.text}", 10_000) < cut for q in queries]
        usage = [q for q, h in zip(queries, held) if not h]
        adaptation = [q for q, h in zip(queries, held) if h]
        if not usage or not adaptation:
            raise ConfigError(f"{len(queries)} queries are too few to split into usage and adaptation sets")
        return usage, adaptation

    def _history(self, adapter_id: str) -> list[Record]:
        saved = self.workdir / adapter_id / TRAINED
        if saved.is_file():
            return load(str(saved), name="trained data")
        if self.trained is None:
            raise ConfigError(f"what adapter {adapter_id!r} was trained on is unknown: pass `trained` "
                              "(its train data and selection) to the policy")
        return load(self.trained, name="trained data")

    def next_id(self, lang: str) -> str:
        """The next free candidate id of ``lang``: ``<lang>-u<n>``."""
        lang = normalize_lang(lang)
        taken = {v.id for v in self.registry.list()}
        n = len(self.registry.list(lang)) + 1
        while f"{lang}-u{n}" in taken:
            n += 1
        return f"{lang}-u{n}"

    def _score(self, adaptation: list[Record], preserve: list[Record],
               adapters: list[str]) -> dict[str, dict[str, float]]:
        """Per-token NLL of each adapter on both gate sets, in one pass over the model."""
        rows = [replace(r, id=f"{name}:{r.id}", meta={**r.meta, "gate": name})
                for name, recs in (("adaptation", adaptation), ("preservation", preserve)) for r in recs]
        res = evaluate(rows, adapters=adapters, include_base=False, group_by="gate", runtime=self.runtime,
                       bootstrap=0, verify=self.verify)
        return {a: {g: m["nll"] for g, m in res["models"][a]["by_group"].items()} for a in adapters}
