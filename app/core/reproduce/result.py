"""What a reproduction of a deprecated track found, and its JSON form.

A ``Reproduction`` is one experiment on one model and prompt: the baseline run, then per
depth a ``DepthRun`` (layer skipping), or the two ``SsmRun`` modes (SSM speculation), or
the ``HeadsCheck`` (EAGLE, Medusa); the figures the study and the papers reported come from
``plan.REPORTED`` and are never mixed with ours. ``Reproduction.from_dict(r.to_dict())``
equals ``r``; a document of the wrong shape raises ``FormatError`` saying where. Run data:
nothing here loads llama.cpp or the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.events import RoundEvent, RunResult
from app.core.reproduce.plan import KINDS, REPORTED, Kind, Reported
from app.core.serialization import result_from_dict
from app.core.validate import FormatError

FORMAT = "decodelab-reproduction"
VERSION = 1
SsmMode = Literal["naive", "snapshot"]


@dataclass(frozen=True)
class Step:
    """Progress of an experiment: ``done`` of ``total`` steps, and what it does now."""

    done: int
    total: int
    text: str


StepSink = Callable[[Step], None]


def by_position(result: RunResult) -> tuple[list[int], list[int]]:
    """(proposed, accepted) per draft position (0 = first drafted) over the run's rounds."""
    from app.core.metrics import acceptance_by_position

    return acceptance_by_position(e for e in result.events if isinstance(e, RoundEvent))


@dataclass
class DepthRun:
    """The target's self-draft of ``blocks`` (indices of its ``of_blocks`` blocks) run as
    a Track 1 draft against the full target."""

    blocks: tuple[int, ...]
    of_blocks: int
    draft: str  # the derived file
    draft_size: int
    derive_seconds: float  # what deriving it took (when it was made)
    reused: bool  # taken from the cache this time
    tied_embeddings: bool
    result: RunResult
    speedup: float | None
    first_difference: int | None  # first answer token unlike the baseline's; None: same
    # The baseline's top-2 logit margin there: a near-tie (below ``verdict.NEAR_TIE``) is
    # batched and one-token evaluation disagreeing, not a fault of the draft.
    margin_at_difference: float | None = None
    # The baseline run just before this one, which ``speedup`` is against.
    baseline_tokens_per_second: float | None = None

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def acceptance(self) -> float | None:
        return self.result.acceptance_rate

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        proposed, accepted = by_position(self.result)
        return {"n_blocks": self.n_blocks, "blocks": list(self.blocks),
                "of_blocks": self.of_blocks, "draft": self.draft, "draft_size": self.draft_size,
                "derive_seconds": self.derive_seconds, "reused": self.reused,
                "tied_embeddings": self.tied_embeddings, "acceptance": self.acceptance,
                "proposed_by_position": proposed, "accepted_by_position": accepted,
                "tokens_per_second": self.result.tokens_per_second, "speedup": self.speedup,
                "first_difference": self.first_difference,
                "margin_at_difference": self.margin_at_difference,
                "baseline_tokens_per_second": self.baseline_tokens_per_second,
                "run": self.result.to_dict(with_events)}

    @classmethod
    def from_dict(cls, d: Any) -> DepthRun:
        m = _mapping(d, "depth")
        return cls(tuple(_ints(m, "blocks")), _int(m, "of_blocks"), _str(m, "draft"),
                   _int(m, "draft_size"), _num(m, "derive_seconds"), _bool(m, "reused"),
                   _bool(m, "tied_embeddings"), result_from_dict(m.get("run")),
                   _opt_num(m, "speedup"), _opt_int(m, "first_difference"),
                   _opt_num(m, "margin_at_difference"),
                   _opt_num(m, "baseline_tokens_per_second"))


@dataclass
class SsmRun:
    """One speculating run on a recurrent/hybrid target. ``naive``: rejected drafts are
    removed as from a KV cache (``llama_memory_seq_rm``), and when llama.cpp refuses the run
    goes on as a careless caller would; ``snapshot``: the sequence state is saved before
    each round that drafts and restored after a rejection, the accepted tokens replayed."""

    mode: SsmMode
    result: RunResult
    speedup: float | None
    first_difference: int | None  # against the baseline's answer; None: the same
    refusals: int = 0  # rollbacks llama.cpp refused (naive)
    first_refusal: int | None = None  # answer position at the first refused rollback
    failure: str | None = None  # what stopped the run early, if anything
    snapshot_bytes: int = 0  # one sequence state
    snapshots: int = 0
    restores: int = 0
    replayed_tokens: int = 0
    snapshot_seconds: float = 0.0
    restore_seconds: float = 0.0
    replay_seconds: float = 0.0
    margin_at_difference: float | None = None  # as in DepthRun

    @property
    def same_as_baseline(self) -> bool:
        return self.first_difference is None and self.failure is None

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in _SSM_NUMBERS}
        d.update(mode=self.mode, speedup=self.speedup, first_difference=self.first_difference,
                 margin_at_difference=self.margin_at_difference,
                 first_refusal=self.first_refusal, failure=self.failure,
                 same_as_baseline=self.same_as_baseline,
                 acceptance=self.result.acceptance_rate,
                 tokens_per_second=self.result.tokens_per_second,
                 run=self.result.to_dict(with_events))
        return d

    @classmethod
    def from_dict(cls, d: Any) -> SsmRun:
        m = _mapping(d, "ssm run")
        mode = m.get("mode")
        if mode not in ("naive", "snapshot"):
            raise FormatError(f"ssm run: unknown mode {mode!r}")
        failure = m.get("failure")
        if failure is not None and not isinstance(failure, str):
            raise FormatError("ssm run: 'failure' is not text")
        return cls(mode, result_from_dict(m.get("run")), _opt_num(m, "speedup"),
                   _opt_int(m, "first_difference"), _int(m, "refusals"),
                   _opt_int(m, "first_refusal"), failure, _int(m, "snapshot_bytes"),
                   _int(m, "snapshots"), _int(m, "restores"), _int(m, "replayed_tokens"),
                   _num(m, "snapshot_seconds"), _num(m, "restore_seconds"),
                   _num(m, "replay_seconds"), _opt_num(m, "margin_at_difference"))


_SSM_NUMBERS = ("refusals", "snapshot_bytes", "snapshots", "restores", "replayed_tokens",
                "snapshot_seconds", "restore_seconds", "replay_seconds")


@dataclass
class HeadsCheck:
    """What the file holds that could be a trained draft head (EAGLE, Medusa, MTP)."""

    n_tensors: int
    found: list[str] = field(default_factory=list)  # tensor names that look like heads
    keys: list[str] = field(default_factory=list)  # metadata keys that look like heads

    def to_dict(self) -> dict[str, Any]:
        return {"n_tensors": self.n_tensors, "found": self.found, "keys": self.keys}

    @classmethod
    def from_dict(cls, d: Any) -> HeadsCheck:
        m = _mapping(d, "heads")
        return cls(_int(m, "n_tensors"), _strs(m, "found"), _strs(m, "keys"))


@dataclass
class Reproduction:
    """One reproduction (see the module docstring). ``reproducible`` False: ``reason``
    says why nothing ran (EAGLE/Medusa)."""

    id: str
    track: str
    target: str
    target_name: str
    prompt: str
    settings: dict[str, Any]
    created: float  # Unix time
    reproducible: bool = True
    reason: str = ""
    draft: str | None = None  # the SSM experiment's draft model, if any
    baseline: RunResult | None = None
    depths: list[DepthRun] = field(default_factory=list)
    ssm: list[SsmRun] = field(default_factory=list)
    heads: HeadsCheck | None = None
    notes: list[str] = field(default_factory=list)
    verdict: str = ""

    @property
    def kind(self) -> Kind:
        return KINDS[self.track]

    @property
    def reported(self) -> tuple[Reported, ...]:
        return REPORTED[self.kind]

    @property
    def best_depth(self) -> DepthRun | None:
        """The depth whose drafts the target took most often (then the faster)."""
        runs = [d for d in self.depths if d.result.n_drafted]
        if not runs:
            return self.depths[-1] if self.depths else None
        return max(runs, key=lambda d: (d.acceptance or 0.0, d.speedup or 0.0))

    def mode(self, mode: SsmMode) -> SsmRun | None:
        return next((r for r in self.ssm if r.mode == mode), None)

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "id": self.id, "track": self.track,
            "kind": self.kind, "target": self.target, "target_name": self.target_name,
            "draft": self.draft, "prompt": self.prompt, "settings": self.settings,
            "created": self.created, "reproducible": self.reproducible, "reason": self.reason,
            "reported": [{"what": r.what, "low": r.low, "high": r.high, "source": r.source,
                          "text": r.text()} for r in self.reported],
            "baseline": self.baseline.to_dict(with_events) if self.baseline else None,
            "depths": [d.to_dict(with_events) for d in self.depths],
            "ssm": [r.to_dict(with_events) for r in self.ssm],
            "heads": self.heads.to_dict() if self.heads else None,
            "notes": self.notes, "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Reproduction:
        m = _mapping(d, "reproduction")
        if m.get("format") != FORMAT:
            raise FormatError(f"not a reproduction (format {str(m.get('format'))[:40]!r})")
        version = m.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise FormatError(f"reproduction version {version!r} is newer than this DecodeLab")
        track = _str(m, "track")
        if track not in KINDS:
            raise FormatError(f"reproduction: unknown track {track[:40]!r}")
        settings = m.get("settings")
        if not isinstance(settings, dict):
            raise FormatError("reproduction: 'settings' is not an object")
        draft = m.get("draft")
        if draft is not None and not isinstance(draft, str):
            raise FormatError("reproduction: 'draft' is not text")
        baseline = m.get("baseline")
        return cls(
            _str(m, "id"), track, _str(m, "target"), _str(m, "target_name"), _str(m, "prompt"),
            settings, _num(m, "created"), _bool(m, "reproducible"), _str(m, "reason"), draft,
            result_from_dict(baseline) if baseline is not None else None,
            [DepthRun.from_dict(x) for x in _list(m, "depths")],
            [SsmRun.from_dict(x) for x in _list(m, "ssm")],
            HeadsCheck.from_dict(m["heads"]) if m.get("heads") is not None else None,
            _strs(m, "notes"), _str(m, "verdict"))


# -- checked reading -----------------------------------------------------------------------------


def _mapping(d: Any, what: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise FormatError(f"{what}: expected an object, got {type(d).__name__}")
    return d


def _get(m: dict[str, Any], key: str, kinds: type | tuple[type, ...], what: str) -> Any:
    value = m.get(key)
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise FormatError(f"{key!r} is not {what}")
    if not isinstance(value, kinds):
        raise FormatError(f"{key!r} is not {what}")
    return value


def _str(m: dict[str, Any], key: str) -> str:
    return str(_get(m, key, str, "text"))


def _bool(m: dict[str, Any], key: str) -> bool:
    return bool(_get(m, key, bool, "true or false"))


def _int(m: dict[str, Any], key: str) -> int:
    value = int(_get(m, key, int, "a whole number"))
    if value < 0:
        raise FormatError(f"{key!r} is negative")
    return value


def _num(m: dict[str, Any], key: str) -> float:
    value = float(_get(m, key, (int, float), "a number"))
    if not 0.0 <= value < 1e300:
        raise FormatError(f"{key!r} is out of range")
    return value


def _opt_int(m: dict[str, Any], key: str) -> int | None:
    return None if m.get(key) is None else _int(m, key)


def _opt_num(m: dict[str, Any], key: str) -> float | None:
    return None if m.get(key) is None else _num(m, key)


def _list(m: dict[str, Any], key: str) -> list[Any]:
    return list(_get(m, key, list, "a list"))


def _ints(m: dict[str, Any], key: str) -> list[int]:
    values = _list(m, key)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise FormatError(f"{key!r} is not a list of whole numbers")
    return values


def _strs(m: dict[str, Any], key: str) -> list[str]:
    values = _list(m, key)
    if not all(isinstance(v, str) for v in values):
        raise FormatError(f"{key!r} is not a list of texts")
    return values
