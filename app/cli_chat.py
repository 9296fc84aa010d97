"""`decodelab chat`: a conversation in the terminal, or a scripted one.

Interactive: the answer streams, accepted draft tokens coloured per draft source on a
terminal (the registry's colours), one quiet figures line per turn on standard error, and
commands: /track T, /regen, /new, /system [TEXT], /trim (after "context full"),
/save [FILE.md|FILE.json], /help, /quit. Ctrl+C stops the answer (the part written stays,
marked); at the prompt it quits. A line holding only three double quotes starts and ends a
message of several lines.

Scripted: ``--script FILE`` answers the user turns of FILE (separated by lines holding only
``---``) one after another; with ``--json`` each turn is one JSON object on one line: the
run fields of ``decodelab run --json`` plus ``turn``, ``conversation``, ``prefill_tokens``
and ``reused_tokens``.

Every conversation is saved as it goes (``app.core.chat.store``) unless ``--no-save``;
``--continue ID`` (or ``last``) reopens one. Exit codes as for ``run``: 2 refused (a bad
track, a full context in a script without ``--trim-when-full``), 1 failed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import app.core.drafting.registry as registry
from app.core.errors import DecodeLabError, RefusedError
from app.core.events import Event, RunResult, TokenEvent

if TYPE_CHECKING:  # without loading the engine when the parser is built
    from app.core.chat.conversation import Conversation
    from app.core.chat.store import ConversationStore
    from app.core.session import Session

COMMANDS = ("/track T  change the track for the next turns\n"
            "/regen    answer the last message again\n"
            "/new      start a new conversation (this one stays saved)\n"
            "/system [TEXT]  show or set the system message (next turns)\n"
            "/trim     after \"context full\": continue from the first turn that fits\n"
            "/save [FILE.md|FILE.json]  save (or export) the conversation\n"
            "/quit     end (Ctrl+D too)")


def add_chat_parser(sub: Any) -> None:
    from app.cli_run import add_run_options, tracks_help

    p = sub.add_parser(
        "chat", help="a multi-turn conversation (interactive, or --script FILE)",
        description="A conversation with the model in its chat template: each turn keeps the "
        "KV cache of the last one (only the new tokens are evaluated) and can use another "
        "track. Interactive on a terminal; --script FILE answers FILE's user turns.",
        epilog=tracks_help() + "\n\ncommands in the chat:\n" + COMMANDS)
    p.add_argument("--track", default="baseline",
                   help="the track of the first turn: an id, a number or a name (see below)")
    add_run_options(p)
    p.set_defaults(chat=True)
    chat = p.add_argument_group("conversation")
    chat.add_argument("--script", metavar="FILE",
                      help="answer the user turns in FILE (separated by lines holding only "
                           "---), then end")
    chat.add_argument("--json", action="store_true",
                      help="with --script: one JSON object per turn, one line each")
    chat.add_argument("--no-events", action="store_true",
                      help="leave per-token events out of JSON")
    chat.add_argument("--continue", dest="resume", metavar="ID",
                      help="continue a saved conversation: its id, the start of it, or 'last'")
    chat.add_argument("--trim-when-full", action="store_true",
                      help="when the context is full, go on from the first turn that fits "
                           "(said on standard error) instead of stopping")
    chat.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                      help="colour accepted draft tokens by source (default: on a terminal)")
    chat.add_argument("--no-save", action="store_true",
                      help="do not keep the conversation (default: saved as it goes)")
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    from app.cli_common import resolve_model
    from app.core.chat.conversation import Conversation
    from app.core.chat.store import ConversationStore
    from app.core.cost_memory import default_memory
    from app.core.session import Session

    if args.json and not args.script:
        raise RefusedError("--json goes with --script FILE (one JSON object per turn)")
    turns: list[str] | None = None
    if args.script:
        turns = _read_script(args.script)
    track = _track(args.track, args.draft)
    target = resolve_model(args.model)
    draft = resolve_model(args.draft) if args.draft else None
    store = None if args.no_save else ConversationStore()
    if args.resume:
        if store is None:
            store = ConversationStore()
        conv = store.load(store.resolve(args.resume))
        if args.system is not None:
            conv.system = args.system
    else:
        conv = Conversation(system=args.system)
    session = Session(default_memory())
    chat = TerminalChat(args, session, store, conv, target, draft, track)
    try:
        if turns is not None:
            return chat.scripted(turns)
        return chat.interactive()
    finally:
        session.close()
        if store is not None and chat.conv.messages:
            print(f"decodelab: conversation {chat.conv.id} kept "
                  f"(decodelab chat --continue {chat.conv.id})", file=sys.stderr)


def _read_script(path: str) -> list[str]:
    from app.core.chat.conversation import script_turns

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RefusedError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DecodeLabError(f"cannot read {path}: {exc.strerror or exc}") from None
    turns = script_turns(text)
    if not turns:
        raise RefusedError(f"{path} holds no user turn (turns are separated by lines "
                           "holding only ---)")
    return turns


def _track(text: str, draft: str | None) -> str:
    from app.core.labels import track_label
    from app.core.tracks import resolve_track

    track = resolve_track(text)
    if track.needs_draft_model and not draft:
        raise RefusedError(f"no draft model chosen for {track_label(track.id)}: add "
                           "--draft MODEL")
    return track.id


# -- output ----------------------------------------------------------------------------------


def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


class AnswerStream:
    """Prints an answer's tokens as they come; accepted draft tokens in their source's
    colour (the registry's plot colour, 24-bit) when ``colour``."""

    def __init__(self, out: TextIO, colour: bool) -> None:
        self.out, self.colour = out, colour
        self.error: Exception | None = None

    def __call__(self, event: Event) -> None:
        if self.error is not None or not isinstance(event, TokenEvent):
            return
        text = event.text
        src = registry.get_source(event.source) if event.source else None
        if self.colour and src is not None and text:
            r, g, b = _rgb(src.plot_colour)
            text = f"\x1b[38;2;{r};{g};{b}m{text}\x1b[0m"
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, DecodeLabError) as exc:
            self.error = exc


def legend() -> str:
    """Which colour is which source, coloured itself."""
    parts = []
    for src in registry.sources():
        r, g, b = _rgb(src.plot_colour)
        parts.append(f"\x1b[38;2;{r};{g};{b}m{src.label}\x1b[0m")
    return "accepted drafts: " + ", ".join(parts)


class TerminalChat:
    """One conversation at a time, on one session (its caches kept from turn to turn)."""

    def __init__(self, args: argparse.Namespace, session: Session,
                 store: ConversationStore | None, conv: Conversation, target: str,
                 draft: str | None, track: str) -> None:
        self.args, self.session, self.store, self.conv = args, session, store, conv
        self.target, self.draft, self.track = target, draft, track
        tty = sys.stdout.isatty()
        self.colour = args.color == "always" or (args.color == "auto" and tty)
        self.code = 0
        self._save_failed = False
        self._full: Any = None  # the last "context full" (ConversationFull), for /trim

    # -- pieces ---------------------------------------------------------------------------
    def settings(self) -> Any:
        from app.cli_run import settings_from

        return settings_from(self.args, self.track)

    def save(self) -> None:
        if self.store is None:
            return
        try:
            self.store.save(self.conv)
        except (OSError, DecodeLabError) as exc:
            if not self._save_failed:
                print(f"decodelab: error: conversation not saved: {exc}", file=sys.stderr)
            self._save_failed = True
            self.code = 1

    def answer(self, stream: Callable[[Event], None] | None) -> RunResult:
        """Run the waiting turn (Ctrl+C stops it, keeping what was written)."""
        from app.core.chat.runner import ConversationFull, continue_trimmed, run_turn

        cancel = threading.Event()
        old = signal.signal(signal.SIGINT, lambda *_: cancel.set())
        try:
            try:
                result = run_turn(self.session, self.conv, self.target, self.draft,
                                  self.settings(), stream, cancel)
            except ConversationFull as full:
                if not (self.args.trim_when_full and full.fits_from is not None):
                    raise
                continue_trimmed(self.conv, full)
                print(f"decodelab: {self.conv.notes[-1]}", file=sys.stderr)
                result = run_turn(self.session, self.conv, self.target, self.draft,
                                  self.settings(), stream, cancel)
        finally:
            signal.signal(signal.SIGINT, old)
        self.save()
        return result

    def stats(self, index: int | None = None) -> str:
        from app.core.chat.conversation import stats_line, turn_stats
        from app.core.labels import track_label

        i = len(self.conv.messages) - 1 if index is None else index
        st = turn_stats(self.conv, i)
        return f"[turn {st.turn}] {stats_line(st, track_label(st.track))}"

    def turn_json(self, result: RunResult) -> str:
        d = result.to_dict(with_events=not self.args.no_events)
        d.update(turn=self.conv.turns, conversation=self.conv.id)
        return json.dumps(d, ensure_ascii=False)

    # -- scripted -------------------------------------------------------------------------
    def scripted(self, turns: list[str]) -> int:
        # A reopened conversation whose last message has no answer: that one first.
        todo: list[str | None] = [None] if self.conv.waiting else []
        for text in [*todo, *turns]:
            if text is not None:
                self.conv.add_user(text)
                self.save()
            stream = None if self.args.json else AnswerStream(sys.stdout, self.colour)
            if stream is not None:
                print(f"you> {self.conv.messages[-1].text}\n", flush=True)
            result = self.answer(stream)
            if self.args.json:
                print(self.turn_json(result), flush=True)
            else:
                print("\n", flush=True)
                if stream is not None and stream.error is not None:
                    raise stream.error
            print(self.stats(), file=sys.stderr, flush=True)
            if result.stop_reason == "cancelled":
                print("decodelab: stopped (the part written is kept)", file=sys.stderr)
                break
        return self.code

    # -- interactive ----------------------------------------------------------------------
    def interactive(self) -> int:
        from app.core.chat.render import system_note
        from app.core.gguf_info import inspect_cached
        from app.core.labels import track_label

        info = inspect_cached(self.target)
        print(f"decodelab chat · {info.file_name} · {track_label(self.track)} · "
              f"{system_note(info, self.conv.system)}", file=sys.stderr)
        if self.colour:
            print(legend(), file=sys.stderr)
        print("/help for commands, Ctrl+C stops an answer, Ctrl+D ends", file=sys.stderr)
        if self.conv.messages:
            self.replay()
        if self.conv.waiting and self.respond():
            return self.code
        while True:
            text = self.read()
            if text is None:
                return self.code
            if text.startswith("/"):
                if self.command(text):
                    return self.code
                continue
            if text.strip():
                self.conv.add_user(text)
                self.save()
                if self.respond():
                    return self.code

    def replay(self) -> None:
        """Show a reopened conversation."""
        for i, m in enumerate(self.conv.messages):
            if m.role == "user":
                print(f"you> {m.text}")
            else:
                print(m.text + ("  [stopped]" if m.partial else ""))
                if m.run is not None:
                    print(self.stats(i), file=sys.stderr)
        if self.conv.waiting:
            print("(the last message has no answer yet: answering it now)", file=sys.stderr)

    def read(self) -> str | None:
        try:
            line = input("you> ")
            if line.strip() != '"""':
                return line
            lines = []
            while (more := input("... ")).strip() != '"""':
                lines.append(more)
            return "\n".join(lines)
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return None

    def respond(self) -> bool:
        """Answer the waiting message; True when the user chose to end meanwhile."""
        from app.core.chat.runner import ConversationFull

        stream = AnswerStream(sys.stdout, self.colour)
        try:
            result = self.answer(stream)
        except ConversationFull as full:
            way = f"/trim to go on from turn {full.fits_turn}, " if full.fits_turn else ""
            print(f"decodelab: {full}\n  {way}/new for a new chat", file=sys.stderr)
            self._full = full
            return self.wait_for_choice()
        except RefusedError as exc:
            print(f"decodelab: refused: {exc}", file=sys.stderr)
            self.conv.cut(len(self.conv.messages) - 1)  # the message was not answered
            self.save()
            return False
        if stream.error is not None:
            raise stream.error
        print("  [stopped]" if result.stop_reason == "cancelled" else "")
        print(self.stats(), file=sys.stderr)
        return False

    def wait_for_choice(self) -> bool:
        """After "context full" only commands help (/trim, /new, /save, /quit); True to
        end."""
        while self.conv.waiting:
            text = self.read()
            if text is None or (text.startswith("/") and self.command(text)):
                return True
            if not text.startswith("/"):
                print("decodelab: the context is full: /trim or /new first", file=sys.stderr)
        return False

    def command(self, line: str) -> bool:
        """Do a /command; True to end."""
        from app.core.chat.conversation import Conversation
        from app.core.chat.render import system_note
        from app.core.chat.store import export_json, export_markdown
        from app.core.gguf_info import inspect_cached
        from app.core.labels import track_label

        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        try:
            if name in ("/quit", "/exit", "/q"):
                return True
            if name == "/help":
                print(COMMANDS, file=sys.stderr)
            elif name == "/track":
                if not rest:
                    print(f"track: {track_label(self.track)}", file=sys.stderr)
                else:
                    self.track = _track(rest, self.draft)
                    print(f"track: {track_label(self.track)} from the next turn",
                          file=sys.stderr)
            elif name == "/regen":
                self.conv.regenerate()
                self.save()
                return self.respond()
            elif name == "/new":
                self.conv = Conversation(system=self.conv.system)
                print("a new conversation", file=sys.stderr)
            elif name == "/system":
                if rest:
                    self.conv.system = rest
                print(system_note(inspect_cached(self.target), self.conv.system),
                      file=sys.stderr)
            elif name == "/trim":
                full = self._full
                if full is None or not self.conv.waiting:
                    print("nothing to trim: the context is not full", file=sys.stderr)
                else:
                    from app.core.chat.runner import continue_trimmed

                    continue_trimmed(self.conv, full)
                    print(f"decodelab: {self.conv.notes[-1]}", file=sys.stderr)
                    self._full = None
                    return self.respond()
            elif name == "/save":
                if not rest:
                    self.save()
                    where = (self.store.path(self.conv.id) if self.store is not None
                             else "nowhere (--no-save)")
                    print(f"saved: {where}", file=sys.stderr)
                else:
                    text = export_markdown(self.conv) if rest.endswith(".md") \
                        else export_json(self.conv)
                    Path(rest).write_text(text, encoding="utf-8")
                    print(f"written: {rest}", file=sys.stderr)
            else:
                print(f"unknown command {name}; /help lists them", file=sys.stderr)
        except (RefusedError, ValueError, OSError) as exc:
            print(f"decodelab: {exc}", file=sys.stderr)
        return False
