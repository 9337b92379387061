"""Relay prompts to NVIDIA NIM or any OpenAI-compatible server, or answer offline.

    client = make_client(os.environ)
    for piece in client.stream(prompt, cancel=threading.Event()):
        ...

Failures raise LLMError(code, message); see docs/LLM.md for what each code means.
"""

from webapp.llm.config import make_client
from webapp.llm.errors import LLMError
from webapp.llm.nim import NIMClient
from webapp.llm.offline import OfflineResponder
from webapp.llm.prompt import Prompt
from webapp.llm.retry import RetryPolicy

__all__ = ["LLMError", "NIMClient", "OfflineResponder", "Prompt", "RetryPolicy", "make_client"]
