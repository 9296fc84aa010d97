"""The one entry point the CLI and the GUI worker use to run tracks.

A ``Session`` owns the loaded target and draft (reused across runs while their load
options stay the same), applies every guard before decoding (settings out of their ranges,
an empty prompt, deprecated track, SSM model, incompatible draft, expert count out of
range), builds the draft sources for the track and runs the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.adaptive import CostModel
from app.core.chat.render import prompt_tokens
from app.core.compat import Compatibility, check_draft
from app.core.cost_memory import CostMemory
from app.core.cost_memory import target_key as memory_key
from app.core.drafting.base import Drafter, held_tokens
from app.core.drafting.registry import BuildContext
from app.core.engine import EventSink, Generation
from app.core.errors import RefusedError
from app.core.events import RunResult, RunSettings
from app.core.gguf_info import ModelInfo, inspect_cached
from app.core.hosted_model import open_model
from app.core.llama_backend import LoadedModel, LoadOptions, validate_expert_count
from app.core.rpc import check_placement
from app.core.settings_check import check_prompt, check_settings
from app.core.tracks import get_track, require_available


@dataclass
class PreparedPair:
    target: ModelInfo
    draft: ModelInfo | None
    compatibility: Compatibility | None


def render_prompt(model: LoadedModel, text: str, chat: bool, system: str | None) -> list[int]:
    """Token ids of ``text``, wrapped in the model's chat template when ``chat`` (as the
    first turn of a conversation: the same rendering, system message included)."""
    return prompt_tokens(model, text, chat, system)


class Session:
    """Loaded models plus the guards; not thread-safe (the GUI calls it from one worker)."""

    def __init__(self, cost_memory: CostMemory | None = None) -> None:
        """``cost_memory``: where batch costs measured here are kept for later sessions
        (the app's own runs pass one; tests and benchmarks start from the prior unless they
        ask for it)."""
        self.cost_memory = cost_memory
        self.target: LoadedModel | None = None
        self.draft: LoadedModel | None = None
        self._target_key: tuple[object, ...] | None = None
        self._draft_key: tuple[object, ...] | None = None
        self.costs: dict[tuple[object, ...], CostModel] = {}
        # Each draft source's own store across runs (what it learned about a model pair,
        # earlier answers, ...), by source id.
        self.memory: dict[str, dict[Any, Any]] = {}

    # -- guards ---------------------------------------------------------------------------
    @staticmethod
    def check(
        target_path: str | Path, draft_path: str | Path | None, s: RunSettings
    ) -> PreparedPair:
        """Every refusal that can be decided before loading anything."""
        check_settings(s)
        track = get_track(s.track)
        target = inspect_cached(target_path)
        draft = inspect_cached(draft_path) if draft_path and track.needs_draft_model else None
        compat = check_draft(target, draft) if draft is not None else None
        require_available(track, target, draft, compat)
        if track.moe and s.experts is not None:
            validate_expert_count(target, s.experts)
        check_placement(s.rpc, s.rpc_split, s.gpu_layers)
        return PreparedPair(target, draft, compat)

    # -- loading --------------------------------------------------------------------------
    def load_target(
        self, path: str | Path, s: RunSettings, info: ModelInfo | None = None
    ) -> LoadedModel:
        track = get_track(s.track)
        experts = s.experts if track.moe else None
        key = (str(path), experts, s.threads, s.ctx, s.gpu_layers, tuple(s.rpc), tuple(s.rpc_split))
        # A target that lost a worker cannot decode any more: load it again.
        if self.target is None or self._target_key != key or self.target.lost:
            self.close_target()
            opts = LoadOptions(
                n_ctx=s.ctx, threads=s.threads, expert_used_count=experts, gpu_layers=s.gpu_layers,
                devices=tuple(s.rpc), split=tuple(s.rpc_split),
            )
            self.target = open_model(path, opts, info)
            self._target_key = key
        return self.target

    def load_draft(
        self, path: str | Path, s: RunSettings, info: ModelInfo | None = None
    ) -> LoadedModel:
        key = (str(path), s.threads, s.ctx, s.draft_gpu_layers)
        if self.draft is None or self._draft_key != key:
            self.close_draft()
            opts = LoadOptions(n_ctx=s.ctx, threads=s.threads, gpu_layers=s.draft_gpu_layers)
            self.draft = LoadedModel(path, opts, info)
            self._draft_key = key
        return self.draft

    def close_target(self) -> None:
        if self.target is not None:
            self.target.close()
        self.target, self._target_key = None, None

    def close_draft(self) -> None:
        if self.draft is not None:
            self.draft.close()
        self.draft, self._draft_key = None, None

    def close(self) -> None:
        self.close_target()
        self.close_draft()

    def learned_costs(self) -> CostModel | None:
        """What adaptive drafting has measured for the loaded target, if anything."""
        return self.costs.get(self._target_key) if self._target_key else None

    @staticmethod
    def _memory_key(target: LoadedModel, s: RunSettings) -> str:
        # Fewer experts (Track 2) or layers elsewhere give a batch another shape.
        load = (f"experts={target.expert_used_count}", s.gpu_layers, *s.rpc, *s.rpc_split)
        return memory_key(target.path, target.threads, load)

    def _costs(self, target: LoadedModel, s: RunSettings) -> CostModel:
        """The loaded target's cost model; a new one starts from the remembered shapes."""
        key = self._target_key or ()
        costs = self.costs.get(key)
        if costs is None:
            costs = self.costs[key] = CostModel()
            if self.cost_memory is not None:
                costs.remember(self.cost_memory.load(self._memory_key(target, s)))
        return costs

    # -- running --------------------------------------------------------------------------
    def run(
        self,
        target_path: str | Path,
        draft_path: str | Path | None,
        prompt: str,
        s: RunSettings,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        check_prompt(prompt)
        return self.generate(target_path, draft_path,
                             lambda model: render_prompt(model, prompt, s.chat, s.system),
                             s, on_event, cancel)

    def generate(
        self,
        target_path: str | Path,
        draft_path: str | Path | None,
        tokens: Callable[[LoadedModel], list[int]],
        s: RunSettings,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
        reuse: bool = False,
    ) -> RunResult:
        """Run the prompt ``tokens(target)`` gives; with ``reuse`` keep what the target's
        (and the draft's) cache holds of it (a conversation's next turn)."""
        pair = self.check(target_path, draft_path, s)
        track = get_track(s.track)
        target = self.load_target(target_path, s, pair.target)
        draft = self.load_draft(draft_path, s, pair.draft) if pair.draft and draft_path else None
        ids = tokens(target)
        if not ids:
            raise RefusedError("the prompt has no tokens")
        costs = self._costs(target, s)
        drafters: list[Drafter] = [
            src.build(BuildContext(s, target, draft, costs, self.memory.setdefault(src.id, {})))
            for src in track.draft_sources  # in priority order: the first with a draft wins
            if draft is not None or not src.needs_draft_model
        ]
        kept = held_tokens(target) if reuse else None
        gen = Generation(target, drafters, ids, s, on_event, cancel, costs, kept)
        try:
            result = gen.run()
        finally:
            if self.cost_memory is not None:
                self.cost_memory.save(self._memory_key(target, s), costs.shapes())
        result.effective = {
            "track": track.id,
            "expert_used_count": target.expert_used_count if pair.target.is_moe else None,
            "expert_count": pair.target.expert_count or None,
            "threads": target.threads,
            "threads_batch": target.threads_batch,
            "n_ctx": target.n_ctx,
            "draft_max": s.draft_max if track.speculates else 0,
            "adaptive": s.adaptive if track.speculates else False,
            "chat_template_applied": bool(s.chat and pair.target.chat_template),
            "target": str(target_path),
            "draft": str(draft_path) if draft is not None else None,
            # Where the target's layers ran, when workers held some (rpc.DevicePlacement).
            "devices": [d.to_dict() for d in target.placement],
        }
        return result
