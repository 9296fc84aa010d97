"""The command line's remote workers: ``--rpc`` and ``--rpc-split`` for run, compare, chat
and gui, turned into the placement fields of ``RunSettings``.

With workers, ``--gpu-layers N`` says how many of the target's layers they hold (llama.cpp
counts the output layer as one); left out, they hold all of them. The draft model stays on
this machine.
"""

from __future__ import annotations

import argparse
from typing import Any

from app.core import rpc
from app.core.errors import RefusedError


def _endpoints(text: str) -> list[str]:
    try:
        return [str(ep) for ep in rpc.parse_endpoints(text)]
    except RefusedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_endpoints.__name__ = "rpc"  # argparse names the option's type in its messages


def _shares(text: str) -> list[float]:
    try:
        shares = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers like 3,1") from None
    if not shares or any(not 0 <= s < float("inf") for s in shares) or not sum(shares) > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: shares must be numbers >= 0, not all 0")
    return shares


_shares.__name__ = "rpc-split"


def add_rpc_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "remote workers", "the target's layers on llama.cpp RPC workers started with "
                          "`decodelab worker` (the draft model stays here)")
    group.add_argument("--rpc", type=_endpoints, metavar="HOST:PORT[,HOST:PORT…]",
                       help="workers that hold the target's layers: all of them, or as many "
                            "as --gpu-layers says (the rest stay on this machine); default: none, "
                            "everything runs here")
    group.add_argument("--rpc-split", type=_shares, metavar="W[,W…]",
                       help="each worker's share of those layers, in --rpc order, e.g. 3,1 "
                            "(default: in proportion to their free memory)")


def placement(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RunSettings`` fields ``rpc``, ``rpc_split`` and ``gpu_layers`` of parsed
    arguments. With workers, a ``--gpu-layers`` of 0 (its default) means all of them: 0
    layers on workers has no other meaning (the core refuses it)."""
    endpoints: list[str] = getattr(args, "rpc", None) or []
    split: list[float] = getattr(args, "rpc_split", None) or []
    layers = getattr(args, "gpu_layers", None) or 0
    if split and not endpoints:
        raise RefusedError("--rpc-split needs --rpc")
    if endpoints and split and len(split) != len(endpoints):
        raise RefusedError(f"--rpc-split gives {len(split)} shares for {len(endpoints)} "
                           "workers: one per worker, in --rpc order")
    return {"rpc": endpoints, "rpc_split": split,
            "gpu_layers": -1 if endpoints and layers == 0 else layers}
