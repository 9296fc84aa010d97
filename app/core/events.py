"""The events a run emits, in order (contract for the UI and the JSON output).

``TokenEvent`` for each token that becomes part of the answer, ``RejectionEvent`` for each
proposed token the target did not take, ``RoundEvent`` for each verification round, and
one ``RunResult`` at the end. ``NoteEvent`` (why adaptive drafting does not draft, ...) goes
to the live listener only; the result keeps its text in ``RunResult.notes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import app.core.drafting.registry as registry

Origin = Literal["target", "accepted"]
# The id of the draft source (``app.core.drafting`` registry) a token came from.
Source = str
StopReason = Literal["eos", "max_tokens", "cancelled", "context_full", "error"]


@dataclass(frozen=True, slots=True)
class TokenEvent:
    id: int
    text: str
    position: int
    origin: Origin
    source: Source | None
    round: int
    t: float
    kind: str = "token"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RejectionEvent:
    id: int
    text: str
    position: int
    source: Source
    round: int
    kind: str = "rejected"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RoundEvent:
    index: int
    proposed: int
    accepted: int
    generated: int
    source: Source | None
    draft_seconds: float
    verify_seconds: float
    t: float
    kind: str = "round"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NoteEvent:
    """Something the run wants the user to know, as it happens (also in ``RunResult.notes``,
    never in ``RunResult.events``)."""

    text: str
    position: int  # answer tokens so far
    t: float
    kind: str = "note"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Event = TokenEvent | RejectionEvent | RoundEvent | NoteEvent


@dataclass
class RunSettings:
    """What a run does. ``None`` means: the model's or the machine's own default."""

    track: str = "baseline"
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    # llama.cpp's repetition penalty over the last ``repeat_last_n`` tokens, prompt included
    # (-1: all); 1.0 = off. Every track applies it alike (``app.core.sampling.penalised``).
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    draft_max: int = 8
    draft_min: int = 0
    adaptive: bool = True
    experts: int | None = None
    threads: int | None = None
    ctx: int = 4096
    chat: bool = False
    system: str | None = None
    gpu_layers: int = 0
    draft_gpu_layers: int = 0
    # llama.cpp RPC workers ("host:port") that hold the target's offloaded layers
    # (``gpu_layers`` of them, -1 all), and each one's share of them (one number per worker;
    # empty: in proportion to their free memory). The draft model stays on this machine.
    rpc: list[str] = field(default_factory=list)
    rpc_split: list[float] = field(default_factory=list)
    # The draft sources' own settings by name (``registry.Setting``); absent: its default.
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One value, one form: a setting at its default is absent, so that settings read
        # back from JSON (where every setting is written) equal the ones that were saved.
        self.options = {k: v for k, v in self.options.items()
                        if (spec := registry.setting(k)) is None or v != spec.default}

    def option(self, name: str) -> Any:
        if name in self.options:
            return self.options[name]
        spec = registry.setting(name)
        if spec is None:
            raise KeyError(f"no draft source has a setting {name!r}")
        return spec.default

    def with_options(self, **values: Any) -> RunSettings:
        """A copy with these source settings changed."""
        return replace(self, options={**self.options, **values})

    def to_dict(self) -> dict[str, Any]:
        """Flat, as in the JSON contract: every source setting beside the others."""
        d = asdict(self)
        options = d.pop("options")
        d.update({s.name: s.default for s in registry.all_settings()})
        d.update(options)
        return d


@dataclass(frozen=True)
class RunRequest:
    """What to run: the models, the prompt and the settings (their ``track`` included).
    Runs, re-runs, comparisons and history records all describe their input with it."""

    target: str | Path
    draft: str | Path | None
    prompt: str
    settings: RunSettings


@dataclass
class RunResult:
    track: str
    text: str
    stop_reason: StopReason
    prompt_tokens: int
    n_generated: int
    n_drafted: int
    n_accepted: int
    n_rounds: int
    generation_seconds: float
    prefill_seconds: float
    draft_seconds: float
    verify_seconds: float
    settings: dict[str, Any]
    effective: dict[str, Any]
    token_ids: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    error: str | None = None
    # What the run wants the user to know, one line each (why adaptive drafting did not
    # draft, ...); JSON key ``notes``.
    notes: list[str] = field(default_factory=list)
    # Prompt tokens this run evaluated, and those it kept from the target's cache (a
    # conversation's earlier turns): prefill_tokens + reused_tokens = prompt_tokens.
    prefill_tokens: int = 0
    reused_tokens: int = 0

    @property
    def acceptance_rate(self) -> float | None:
        return self.n_accepted / self.n_drafted if self.n_drafted else None

    @property
    def tokens_per_second(self) -> float:
        return self.n_generated / self.generation_seconds if self.generation_seconds > 0 else 0.0

    @property
    def mean_accepted_length(self) -> float | None:
        # Tokens per verify round that drafted: accepted drafts + the target's own token
        # (labels.MEAN_ACCEPTED_LENGTH_HELP), so 1.0 means no draft was ever accepted.
        rounds = [e for e in self.events if isinstance(e, RoundEvent) and e.proposed > 0]
        return sum(e.accepted + 1 for e in rounds) / len(rounds) if rounds else None

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "track": self.track,
            "text": self.text,
            "stop_reason": self.stop_reason,
            "prompt_tokens": self.prompt_tokens,
            "prefill_tokens": self.prefill_tokens,
            "reused_tokens": self.reused_tokens,
            "n_generated": self.n_generated,
            "n_drafted": self.n_drafted,
            "n_accepted": self.n_accepted,
            "n_rounds": self.n_rounds,
            "acceptance_rate": self.acceptance_rate,
            "mean_accepted_length": self.mean_accepted_length,
            "tokens_per_second": self.tokens_per_second,
            "generation_seconds": self.generation_seconds,
            "prefill_seconds": self.prefill_seconds,
            "draft_seconds": self.draft_seconds,
            "verify_seconds": self.verify_seconds,
            "settings": self.settings,
            "effective": self.effective,
            "token_ids": self.token_ids,
            "error": self.error,
            "notes": self.notes,
        }
        if with_events:
            d["events"] = [e.to_dict() for e in self.events]
        return d
