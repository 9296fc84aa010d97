"""DecodeLab: see what each decoding-acceleration track buys on your GGUF model."""

__version__ = "0.1.0"
