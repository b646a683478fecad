"""The hand-wired "rank1-format" demo model: known behaviour through the real llama.cpp engine.

**A development stand-in for offline pipelines, not a relevance model.** It speaks
rank1's format, so every part of a pipeline (prompt, reasoning budget, ``</think>``,
answer logprobs, score) can be exercised offline, and its score means something simple
enough to check by hand: **word overlap**.

Given the official rank1 prompt (:func:`rank1_integrations.protocol.build_prompt`, which
ends with ``<think>``), greedy decoding writes::

    \\nThe passage shares words with the query.\\nThis settles it.</think> true
    \\nThe passage does not mention those terms.\\nThis settles it.</think> false

and at the answer position (right after ``</think>``) the two answer tokens have::

    P(true) = sigmoid(ALPHA * (f / (1 + f) - R0))

where ``f`` = :func:`overlap_fraction` = the fraction of the query's distinct content
words that also occur in the passage (see :func:`content_words`: whole words of the
model's vocabulary, case-insensitive, stop words excluded; words outside the vocabulary
split into BPE pieces and are ignored). ``f = 0`` gives P(true) ~ 0.03, ``f = 1`` ~ 0.96;
the first sentence is the "shares" one exactly when P(true) > 0.5 (``f`` above ~0.35).
:func:`expected_p_true` and :func:`expected_completion` give the predicted outputs.

How it works (3 layers, width 384, two heads; every weight is set by hand here):

* residual stream: a constant "bias" channel (RMSNorm weights compensate for it, so norms
  are near-identity), a random unit "content" vector per content word shared by its case
  and space variants, flags, and one-hot "slot" channels for the reasoning-chain tokens;
* layer 1: a head attends to the segment markers ``Query`` / ``Passage`` / ``<think>``
  (which segment is this token in?); the FFN turns that into 0/1 flags;
* layer 2: a head matches each passage word against identical query words (content
  match; RoPE's base is 1e30, so the content dimensions do not rotate), another counts
  earlier copies of the same word in the same segment (first occurrences only); the FFN
  flags "first occurrence of a query word" and "first occurrence of a passage word that
  is in the query";
* layer 3: a head averages over both flag sets: ``A / (N + A) = f / (1 + f)``;
* output head: bigram rows write the fixed chain; the branch after ``The passage`` and
  the ``true``/``false`` logits read that average.

Limits, by construction: no stemming (``bee`` does not match ``bees``), no synonyms, no
word order; all-caps and unknown words count for nothing. The segments are found by the
prompt's ``Query`` / ``Passage`` line markers and ``<think>``: a passage holding a line
that starts with ``Query`` or ``Passage``, or the text ``<think>``, confuses it.

``write_demo_model(path, think_end_special=False)`` builds the same model on a
vocabulary where ``</think>`` is ordinary text (three pieces, as in plain Qwen2.5). The
build is deterministic (content vectors come from SHA-256 of the word): the same code
and library versions give the same bytes; ``scripts/build_demo_model.py`` rebuilds the
shipped file.

Usage::

    from rank1_integrations.protocol import build_prompt
    from rank1_server.models.demo_model import DEMO_MODEL_PATH, expected_p_true

    llm = llama_cpp.Llama(str(DEMO_MODEL_PATH), n_ctx=2048)
    expected_p_true("why do volcanoes erupt", "Volcanoes erupt when magma rises.")  # 0.96
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rank1_integrations.data import (
    DEMO_CORPUS_PATH,
    DEMO_QUERIES_PATH,
    demo_corpus,
    demo_queries,
)
from rank1_integrations.protocol import (
    ANSWER_FALSE,
    ANSWER_TRUE,
    THINK_END,
    THINK_START,
    build_prompt,
)

from .gguf_writer import LayerWeights, Qwen2Config, Qwen2Weights, write_qwen2_gguf
from .vocab import TOKEN_CONTROL, Vocabulary, build_vocabulary, common_words

__all__ = [
    "ALPHA",
    "DEMO_CORPUS_PATH",
    "DEMO_DIR",
    "DEMO_MODEL_PATH",
    "DEMO_QUERIES_PATH",
    "R0",
    "content_words",
    "demo_corpus",
    "demo_queries",
    "demo_vocabulary",
    "expected_completion",
    "expected_p_true",
    "overlap_fraction",
    "write_demo_model",
]

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEMO_MODEL_PATH = DEMO_DIR / "rank1-demo.gguf"
# The corpus and queries (DEMO_CORPUS_PATH, DEMO_QUERIES_PATH, demo_corpus, demo_queries)
# are the client package's data (rank1_integrations.data): the client reads them without
# this package; the model's vocabulary is built from them here.

NAME = "rank1-demo (word-overlap stand-in)"
DESCRIPTION = (
    "A development stand-in for offline pipelines, not a relevance model. Hand-wired "
    "qwen2 weights that write a fixed rank1-style reasoning chain, </think>, then ' true' "
    "or ' false' with P(true) = sigmoid(14 * (f / (1 + f) - 0.26)), f = fraction of the "
    "query's content words found in the passage. Built by rank1-integrations "
    "(rank1_server.models.demo_model)."
)

#: Slope and threshold of the answer: ``P(true) = sigmoid(ALPHA * (f / (1 + f) - R0))``.
ALPHA = 14.0
R0 = 0.26

#: Words that never count as content (function words; the model gives them no content).
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up upon very was we were what when where which while who whom whose why
    will with would you your yours yourself yourselves many much one every""".split()
)

# The reasoning chain. Each token names its successor; " passage" branches on the overlap.
_SHARED_HEAD = [THINK_START, "\n", "The", " passage"]
_BRANCH_YES = [" shares", " words", " with", " the", " query", ".\n"]
_BRANCH_NO = [" does", " not", " mention", " those", " terms", ".\n"]
_TAIL = ["This", " settles", " it", "."]
#: ``</think>`` as one special token, or as the pieces plain Qwen2.5 splits it into.
_THINK_END_TOKENS = {True: [THINK_END], False: ["</", "think", ">"]}
_MARKERS = ("Query", "Passage", THINK_START)

# Scales (see the module docstring). Scores are in logits of attention / output units.
_B = 1000.0  # bias channel value in the embeddings
_GAMMA = 40.0  # content-match score
_BETA = 15.0  # segment / flag score
_BETA_ANSWER = 30.0  # answer head: flagged tokens vs the rest
_LOGIT = 30.0  # the chain's next-token logit
_STEP_A = 256.0  # FFN step sharpness
_STEP_D = 0.0625  # FFN step half-width

_WORD = re.compile(r"[A-Za-z]+")


# --------------------------------------------------------------------------- corpus and words


def _demo_words() -> tuple[list[str], list[str]]:
    words: set[str] = set()
    for doc in demo_corpus():
        words.update(w.lower() for w in _WORD.findall(doc["title"] + " " + doc["text"]))
    for query in demo_queries():
        words.update(w.lower() for w in _WORD.findall(query["text"]))
    chain_words = "the passage shares words with query does not mention those terms this settles it"
    words.update(chain_words.split())
    lexicon = sorted(words)
    return lexicon, lexicon  # every demo word also gets its capitalised forms


@lru_cache(maxsize=2)
def demo_vocabulary(think_end_special: bool = True) -> Vocabulary:
    """The demo model's vocabulary: common English plus every word of the demo corpus."""
    lexicon, caps = _demo_words()
    return build_vocabulary(
        lexicon, capitalised=caps, include_common_words=True, think_end_special=think_end_special
    )


@lru_cache(maxsize=2)
def _content_keys(think_end_special: bool = True) -> dict[int, str]:
    """token id -> content word, for the tokens that carry a content vector."""
    vocab = demo_vocabulary(think_end_special)
    known = set(common_words()) | set(_demo_words()[0])
    keys: dict[int, str] = {}
    for i in range(vocab.size):
        if vocab.token_types[i] == TOKEN_CONTROL:
            continue
        text = vocab.token_text(i)
        if text in _MARKERS:
            continue
        word = text[1:] if text.startswith(" ") else text
        low = word.lower()
        if word.isalpha() and word.isascii() and low in known and low not in STOPWORDS:
            keys[i] = low
    return keys


@dataclass(frozen=True)
class _Segments:
    query: list[str]
    passage: list[str]


def _segments(query: str, passage: str, *, title: str | None, instruction: str | None) -> _Segments:
    """The content words of the query and passage segments, split the way the model does."""
    vocab = demo_vocabulary()
    keys = _content_keys()
    q_id, p_id, t_id = (vocab.token_id(m) for m in _MARKERS)
    ids = vocab.encode(build_prompt(query, passage, title=title, instruction=instruction))
    seen: set[int] = set()
    out = _Segments([], [])
    for tok in ids:
        if tok in (q_id, p_id, t_id):
            seen.add(tok)
            continue
        if tok not in keys:
            continue
        if t_id in seen:
            continue
        if p_id in seen:
            out.passage.append(keys[tok])
        elif q_id in seen:
            out.query.append(keys[tok])
    return out


def content_words(text: str) -> list[str]:
    """The content words the model sees in ``text`` (as a query), in order, lowercased.

    >>> content_words("Why do Volcanoes erupt so often?")
    ['volcanoes', 'erupt', 'often']
    """
    return _segments(text, "", title=None, instruction=None).query


def overlap_fraction(
    query: str, passage: str, *, title: str | None = None, instruction: str | None = None
) -> float:
    """The fraction of the query's distinct content words that occur in the passage.

    0.0 when the query has no content word. Exactly the quantity the demo model computes.

    >>> overlap_fraction("why do volcanoes erupt", "Volcanoes erupt when magma rises.")
    1.0
    >>> overlap_fraction("why do volcanoes erupt", "Bees make honey.")
    0.0
    """
    seg = _segments(query, passage, title=title, instruction=instruction)
    q = set(seg.query)
    if not q:
        return 0.0
    return len(q & set(seg.passage)) / len(q)


def expected_p_true(
    query: str, passage: str, *, title: str | None = None, instruction: str | None = None
) -> float:
    """P(true) the demo model is built to give: ``sigmoid(ALPHA * (f / (1 + f) - R0))``."""
    f = overlap_fraction(query, passage, title=title, instruction=instruction)
    return 1.0 / (1.0 + math.exp(-ALPHA * (f / (1.0 + f) - R0)))


def expected_completion(
    query: str, passage: str, *, title: str | None = None, instruction: str | None = None
) -> str:
    """The text greedy decoding writes after the prompt, up to and including the answer."""
    relevant = expected_p_true(query, passage, title=title, instruction=instruction) > 0.5
    branch = _BRANCH_YES if relevant else _BRANCH_NO
    answer = ANSWER_TRUE if relevant else ANSWER_FALSE
    return "".join(_SHARED_HEAD[1:] + branch + _TAIL) + THINK_END + answer


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class _Layout:
    """Channel indices in the residual stream and in each head's q/k space."""

    d_model: int = 384
    n_head: int = 2
    n_content: int = 128

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    # residual channels
    bias: int = 0
    content0: int = 1

    def flag(self, name: str) -> int:
        return self.content0 + self.n_content + 1 + _FLAGS.index(name)

    def slot(self, k: int) -> int:
        return self.flag(_FLAGS[-1]) + 2 + k

    def head_slow_dims(self) -> list[int]:
        """Head dimensions RoPE barely rotates (pair index >= 1/4 of the head, base 1e30)."""
        half = self.head_dim // 2
        start = half // 4
        return [i for i in range(start, half)] + [i + half for i in range(start, half)]


_FLAGS = (
    "ISCONT", "MQ", "MP", "MT",  # from the embedding
    "SQ", "SP", "ST",  # layer-1 attention: share of Query / Passage / <think> markers seen
    "INQ", "INP", "QC", "PC",  # layer-1 FFN: in query, in passage, content there
    "M", "U",  # layer-2 attention: matched in the query; 1 / (1 + copies so far)
    "QF", "FL",  # layer-2 FFN: first query content word; first matched passage word
    "R",  # layer-3 attention: A / (N + A)
)  # fmt: skip


def _chain(think_end_special: bool) -> tuple[list[str], dict[str, str]]:
    """Chain tokens (slot order) and the fixed successor of each (branch/answer excluded).
    The last chain token (``</think>`` or its last piece ``>``) is the answer position."""
    tail = _TAIL + _THINK_END_TOKENS[think_end_special]
    order: list[str] = []
    for tok in _SHARED_HEAD + _BRANCH_YES + _BRANCH_NO + tail + [ANSWER_TRUE, ANSWER_FALSE]:
        if tok not in order:
            order.append(tok)
    nxt: dict[str, str] = {}
    for seq in (_SHARED_HEAD, _BRANCH_YES + tail, _BRANCH_NO + tail):
        for a, b in zip(seq, seq[1:], strict=False):
            nxt[a] = b
    assert " passage" not in nxt and tail[-1] not in nxt  # decided by the overlap
    return order, nxt


def _word_vector(word: str, dim: int) -> np.ndarray:
    """A pseudo-random unit sign vector for ``word``, from SHA-256 (stable everywhere)."""
    bits = b""
    counter = 0
    while len(bits) * 8 < dim:
        bits += hashlib.sha256(f"rank1-demo:{word}:{counter}".encode()).digest()
        counter += 1
    signs = np.unpackbits(np.frombuffer(bits, dtype=np.uint8))[:dim].astype(np.float64)
    return (2.0 * signs - 1.0) / math.sqrt(dim)


def _demo_weights(vocab: Vocabulary, lay: _Layout) -> tuple[Qwen2Weights, Qwen2Config]:
    E, H, V = lay.d_model, lay.head_dim, vocab.size
    F = 16
    cfg = Qwen2Config(
        n_vocab=V, n_embd=E, n_layer=3, n_head=lay.n_head, n_head_kv=lay.n_head, n_ff=F,
        n_ctx=8192, rope_freq_base=1e30, rms_eps=1e-6,
    )  # fmt: skip
    f = lay.flag
    chain, nxt = _chain(vocab.think_end_special)
    answer_position = _THINK_END_TOKENS[vocab.think_end_special][-1]
    if lay.slot(len(chain)) > E:
        raise RuntimeError("residual stream too narrow for the layout")

    # ---- embeddings
    keys = _content_keys(vocab.think_end_special)
    word_vec = {w: _word_vector(w, lay.n_content) for w in sorted(set(keys.values()))}
    emb = np.zeros((V, E), np.float64)
    emb[:, lay.bias] = _B
    for token_id, word in keys.items():
        emb[token_id, lay.content0 : lay.content0 + lay.n_content] = word_vec[word]
        emb[token_id, f("ISCONT")] = 1.0
    for name, marker in zip(("MQ", "MP", "MT"), _MARKERS, strict=True):
        emb[_tid(vocab, marker), f(name)] = 1.0
    for k, tok in enumerate(chain):
        emb[_tid(vocab, tok), lay.slot(k)] = 1.0

    # RMSNorm: rms(x) ~ B / sqrt(E); bias channel -> 1, every other channel -> its value.
    rms = _B / math.sqrt(E)
    norm = np.full(E, rms, np.float64)
    norm[lay.bias] = rms / _B

    slow = lay.head_slow_dims()
    content_dims = slow[: lay.n_content]
    fdims = slow[lay.n_content :]  # spare slow dims for flag scores
    sq = math.sqrt(H)
    cont = range(lay.content0, lay.content0 + lay.n_content)

    def blank() -> dict[str, np.ndarray]:
        return {
            "q": np.zeros((E, E)), "k": np.zeros((E, E)), "v": np.zeros((E, E)),
            "o": np.zeros((E, E)), "gate": np.zeros((F, E)), "up": np.zeros((F, E)),
            "down": np.zeros((E, F)),
        }  # fmt: skip

    def step(w: dict, unit: int, terms: dict[str, float], theta: float, out: str) -> None:
        """FFN units ``unit``, ``unit+1``: ``out += 1 if sum(terms) > theta else 0``."""
        for j, shift in ((unit, -theta + _STEP_D), (unit + 1, -theta - _STEP_D)):
            for name, coef in terms.items():
                w["gate"][j, f(name)] = _STEP_A * coef
            w["gate"][j, lay.bias] = _STEP_A * shift
            w["up"][j, lay.bias] = 1.0
        w["down"][f(out), unit] = 1.0 / (2 * _STEP_A * _STEP_D)
        w["down"][f(out), unit + 1] = -1.0 / (2 * _STEP_A * _STEP_D)

    # ---- layer 1: which segment is each token in?
    l1 = blank()
    l1["q"][fdims[0], lay.bias] = sq * _BETA_ANSWER
    for name in ("MQ", "MP", "MT"):
        l1["k"][fdims[0], f(name)] = 1.0
    for j, (src, dst) in enumerate((("MQ", "SQ"), ("MP", "SP"), ("MT", "ST"))):
        l1["v"][j, f(src)] = 1.0
        l1["o"][f(dst), j] = 1.0
    step(l1, 0, {"SQ": 1.0}, 0.75, "INQ")
    step(l1, 2, {"SP": 1.0, "ST": -1.0}, 0.25, "INP")
    step(l1, 4, {"SQ": 1.0, "ISCONT": 1.0}, 1.75, "QC")
    step(l1, 6, {"SP": 1.0, "ST": -1.0, "ISCONT": 1.0}, 1.25, "PC")

    # ---- layer 2: head 0 = matched in the query, head 1 = first occurrence in its segment
    l2 = blank()
    for c, d in zip(cont, content_dims, strict=True):
        l2["q"][d, c] = sq * _GAMMA
        l2["k"][d, c] = 1.0
        l2["q"][H + d, c] = sq * _GAMMA
        l2["k"][H + d, c] = 1.0
    l2["q"][fdims[0], lay.bias] = sq * _BETA
    l2["k"][fdims[0], f("QC")] = 1.0
    l2["v"][0, f("QC")] = 1.0
    l2["o"][f("M"), 0] = 1.0
    l2["q"][H + fdims[0], f("INQ")] = sq * _BETA
    l2["k"][H + fdims[0], f("INQ")] = 1.0
    l2["q"][H + fdims[1], f("INP")] = sq * _BETA
    l2["k"][H + fdims[1], f("INP")] = 1.0
    l2["q"][H + fdims[2], lay.bias] = sq * _GAMMA
    l2["k"][H + fdims[2], f("MQ")] = 1.0
    l2["k"][H + fdims[2], f("MP")] = 1.0
    l2["v"][H, f("MQ")] = 1.0
    l2["v"][H, f("MP")] = 1.0
    l2["o"][f("U"), H] = 1.0
    # first query content word: QC=1 and U=1/2; first matched passage word: PC=1, M=1, U=1/2
    step(l2, 0, {"QC": 2.0, "U": 2.0}, 2.83, "QF")
    step(l2, 2, {"PC": 2.0, "M": 1.0, "U": 2.0}, 3.83, "FL")

    # ---- layer 3: R = (# FL) / (# QF + # FL)
    l3 = blank()
    l3["q"][fdims[0], lay.bias] = sq * _BETA_ANSWER
    l3["k"][fdims[0], f("QF")] = 1.0
    l3["k"][fdims[0], f("FL")] = 1.0
    l3["v"][0, f("FL")] = 1.0
    l3["o"][f("R"), 0] = 1.0

    # ---- output head
    out = np.zeros((V, E), np.float64)
    for k, tok in enumerate(chain):
        if tok in nxt:
            out[_tid(vocab, nxt[tok]), lay.slot(k)] = _LOGIT
    passage_slot = lay.slot(chain.index(" passage"))
    think_end_slot = lay.slot(chain.index(answer_position))
    branches = ((" shares", " does", passage_slot), (ANSWER_TRUE, ANSWER_FALSE, think_end_slot))
    for yes, no, slot in branches:
        for tok, sign in ((yes, 1.0), (no, -1.0)):
            t = _tid(vocab, tok)
            out[t, slot] = _LOGIT
            out[t, f("R")] = sign * ALPHA / 2
            out[t, lay.bias] = -sign * ALPHA * R0 / 2
    for tok in (ANSWER_TRUE, ANSWER_FALSE):
        out[vocab.eos_id, lay.slot(chain.index(tok))] = _LOGIT

    layers = [
        LayerWeights(
            attn_norm=norm.astype(np.float32),
            q=w["q"].astype(np.float32),
            k=w["k"].astype(np.float32),
            v=w["v"].astype(np.float32),
            q_bias=np.zeros(E, np.float32),
            k_bias=np.zeros(E, np.float32),
            v_bias=np.zeros(E, np.float32),
            o=w["o"].astype(np.float32),
            ffn_norm=norm.astype(np.float32),
            gate=w["gate"].astype(np.float32),
            up=w["up"].astype(np.float32),
            down=w["down"].astype(np.float32),
        )  # fmt: skip
        for w in (l1, l2, l3)
    ]
    weights = Qwen2Weights(
        token_embd=emb.astype(np.float32),
        output_norm=norm.astype(np.float32),
        layers=layers,
        output=out.astype(np.float32),
    )
    return weights, cfg


def _tid(vocab: Vocabulary, text: str) -> int:
    tid = vocab.token_id(text)
    if tid is None:
        raise RuntimeError(f"demo vocabulary lacks the single token {text!r}")
    return tid


def write_demo_model(path: str | Path = DEMO_MODEL_PATH, *, think_end_special: bool = True) -> Path:
    """Write the demo model (deterministic: same bytes every time) and return its path.

    ``think_end_special=False`` builds the same model on a vocabulary where ``</think>`` is
    ordinary text (``"</"``, ``"think"``, ``">"``, like plain Qwen2.5): the chain writes
    the three pieces and the answer position is right after ``">"``. The shipped file is
    the default (one CONTROL token, like rank1's converted models).
    """
    vocab = demo_vocabulary(think_end_special)
    weights, cfg = _demo_weights(vocab, _Layout())
    return write_qwen2_gguf(
        path,
        vocab,
        weights,
        cfg,
        name=NAME,
        description=DESCRIPTION,
        dtype="f32",
        embedding_dtype="f16",
        extra_metadata={"rank1.demo.score_rule": "sigmoid(14 * (f / (1 + f) - 0.26))"},
    )
