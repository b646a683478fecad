"""rank1-integrations: the rank1 reasoning reranker as a drop-in part of retrieval pipelines.

>>> from rank1_integrations import Rank1Client, Judgment, build_prompt

The LangChain and LlamaIndex adapters live in ``rank1_integrations.langchain`` and
``rank1_integrations.llama_index`` and are imported only when asked for.
"""

from .cache import JudgmentCache, MemoryCache
from .client import Rank1Client
from .errors import DeadlineExceeded, JudgmentError, NoVerdictError, Rank1Error
from .judgment import Judgment, JudgmentState
from .passage import Passage
from .protocol import VerdictSource, build_prompt
from .settings import ClientSettings

__all__ = [
    "ClientSettings",
    "DeadlineExceeded",
    "Judgment",
    "JudgmentCache",
    "JudgmentError",
    "JudgmentState",
    "MemoryCache",
    "NoVerdictError",
    "Passage",
    "Rank1Client",
    "Rank1Error",
    "VerdictSource",
    "build_prompt",
]

__version__ = "0.1.0"
