"""Transports: one module per API shape. See :mod:`.base` for the contract."""

from .base import BatchTransport, JudgeCall, Transport
from .chat import ChatTransport
from .completions import CompletionsTransport

__all__ = ["BatchTransport", "ChatTransport", "CompletionsTransport", "JudgeCall", "Transport"]
