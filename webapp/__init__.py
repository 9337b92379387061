"""SORNMemory: long-term memory for LLM chat, learned by a per-user spiking network.

Layers (imports point down only): web -> chat -> engine -> llm -> memory -> sorn.
`webapp.sorn` and `webapp.memory` are usable as a library without the server.
"""

__version__ = "0.1.0"
