"""Transports: one module per API shape. See :mod:`.base` for the contract."""

from .base import BatchTransport, JudgeCall, Transport
from .chat import ChatTransport
from .completions import CompletionsTransport
from .rerank import RerankTransport

__all__ = [
    "BatchTransport",
    "ChatTransport",
    "CompletionsTransport",
    "JudgeCall",
    "RerankTransport",
    "Transport",
]
