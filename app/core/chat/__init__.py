"""Multi-turn chat: a conversation (``conversation``), its rendering with the model's chat
template into tokens that keep earlier answers' own token ids (``render``), the runner that
continues each turn from the KV caches of the last one (``runner``), and the conversation
store with JSON / Markdown export (``store``).

The package's modules are imported by name; this file imports nothing, so that reading a
stored conversation never loads the engine or llama.cpp.
"""
