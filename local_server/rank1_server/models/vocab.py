"""Byte-level BPE vocabularies for the generated test models (Qwen2-style, built offline).

The vocabulary is trained with ``tokenizers`` on generated text, pre-tokenised with the
Qwen2 split regex, so llama.cpp's ``qwen2`` pre-tokeniser splits text the same way. It
always has:

* the 256 byte symbols (any text can be encoded);
* whole-word tokens for a word list (``" word"``; optional capitalised and bare forms);
* ``" true"`` and ``" false"`` as single tokens, like Qwen2.5 (ids 830 / 895 there);
* special tokens after the ordinary ones, typed CONTROL in GGUF like rank1's converted
  models: ``<|endoftext|>`` (BOS/EOS), ``<|im_start|>``, ``<|im_end|>``, ``<think>`` and,
  unless ``think_end_special=False``, ``</think>``. Without it ``</think>`` is ordinary
  text that splits into ``"</"``, ``"think"``, ``">"``, as in plain Qwen2.5.

Usage::

    >>> from rank1_server.models.vocab import build_vocabulary
    >>> vocab = build_vocabulary(["honey", "bees"])
    >>> vocab.token_id(" true") is not None and vocab.token_id("</think>") is not None
    True
    >>> [vocab.tokens[i] for i in vocab.encode(" honey bees")]
    ['Ġhoney', 'Ġbees']

Training is deterministic: the same inputs give the same tokens, ids and merges.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources

from rank1_integrations.protocol import ANSWER_FALSE, ANSWER_TRUE, THINK_END, THINK_START

__all__ = [
    "QWEN2_SPLIT_REGEX",
    "SPECIAL_TOKENS",
    "Vocabulary",
    "build_vocabulary",
    "common_words",
    "pad_vocabulary",
    "token_bytes",
]

#: The Qwen2 pre-tokeniser regex (llama.cpp ``LLAMA_VOCAB_PRE_TYPE_QWEN2``).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
#: Special tokens, in id order after the ordinary vocabulary.
SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, THINK_START, THINK_END)

# GGUF token types (gguf.TokenType values; repeated here so this module needs no gguf).
TOKEN_NORMAL = 1
TOKEN_CONTROL = 3
TOKEN_UNUSED = 5

# Text every vocabulary is trained on besides the word list: the rank1 prompt frame and
# answers, so the prompt's fixed parts are few, whole tokens.
_FRAME_TEXT = (
    "Determine if the following passage is relevant to the query. "
    "Answer only with 'true' or 'false'.\nQuery: q\nPassage: p\n",
    ANSWER_TRUE,
    ANSWER_FALSE,
    THINK_END,
    ".\n",
    ".\n\n",
    "\n\n",
    ", ",
    "? ",
    "! ",
    "'s",
)


def common_words() -> list[str]:
    """The bundled list of about a thousand common English words (lowercase)."""
    text = (
        resources.files("rank1_server.models")
        .joinpath("data/common_words.txt")
        .read_text(encoding="utf-8")
    )
    words: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        words.extend(line.split())
    return words


@dataclass(frozen=True)
class Vocabulary:
    """A trained byte-level BPE vocabulary, ready to write into a GGUF file.

    ``tokens`` are in GPT-2 byte-level form (``"Ġtrue"`` is ``" true"``); ``merges`` are
    ``"left right"`` strings in rank order; ``token_types`` are GGUF token types.
    """

    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    merges: tuple[str, ...]
    tokenizer_json: str = field(repr=False)
    think_end_special: bool = True

    @property
    def size(self) -> int:
        return len(self.tokens)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {tok: i for i, tok in enumerate(self.tokens)}

    @cached_property
    def tokenizer(self):  # -> tokenizers.Tokenizer (imported lazily)
        """The ``tokenizers.Tokenizer`` for this vocabulary (splits special tokens)."""
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.tokenizer_json)

    def token_id(self, text: str) -> int | None:
        """The id of the single token spelling ``text`` (plain text, not byte-level form)."""
        special = self._index.get(text)
        if special is not None and self.token_types[special] == TOKEN_CONTROL:
            return special
        return self._index.get(_to_byte_level(text))

    def token_text(self, token_id: int) -> str:
        """The plain text of one token (special tokens as written, e.g. ``"<think>"``)."""
        tok = self.tokens[token_id]
        if self.token_types[token_id] == TOKEN_CONTROL:
            return tok
        return _from_byte_level(tok)

    def encode(self, text: str) -> list[int]:
        """Token ids for ``text`` (special tokens in the text are parsed as specials)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @property
    def special_ids(self) -> dict[str, int]:
        """Ids of the special (CONTROL) tokens by text."""
        return {tok: i for i, tok in enumerate(self.tokens) if self.token_types[i] == TOKEN_CONTROL}

    @property
    def eos_id(self) -> int:
        return self._index[ENDOFTEXT]


def build_vocabulary(
    words: Iterable[str] = (),
    *,
    capitalised: Iterable[str] = (),
    include_common_words: bool = True,
    extra_text: Sequence[str] = (),
    think_end_special: bool = True,
) -> Vocabulary:
    """Train a byte-level BPE vocabulary in which every given word is one token.

    ``words`` (and, unless ``include_common_words=False``, :func:`common_words`) become
    whole tokens with a leading space (``" honey"``) and bare (``"honey"``, as after a
    newline). ``capitalised`` words also get ``" Honey"`` / ``"Honey"``. ``extra_text``
    pieces are trained on as they are (each of their pre-tokens becomes one token).
    Intermediate BPE pieces of these words are tokens too, as in any BPE vocabulary.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    lexicon = sorted(set(common_words() if include_common_words else []) | set(words))
    caps = sorted({w[:1].upper() + w[1:] for w in capitalised})
    lines: list[str] = list(_FRAME_TEXT) + list(extra_text)
    for w in lexicon:
        lines.extend((" " + w, "\n" + w))
    for w in caps:
        lines.extend((" " + w, "\n" + w))

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1_000_000,  # never reached: training ends when every word is one token
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)

    specials = [t for t in SPECIAL_TOKENS if think_end_special or t != THINK_END]
    from tokenizers import AddedToken

    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])

    state = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = state["model"]["vocab"]
    ordinary = sorted(vocab.items(), key=lambda kv: kv[1])
    tokens = [tok for tok, _ in ordinary]
    if [i for _, i in ordinary] != list(range(len(tokens))):
        raise RuntimeError("BPE training produced non-contiguous token ids")
    types = [TOKEN_NORMAL] * len(tokens)
    for added in state["added_tokens"]:
        if added["id"] != len(tokens):
            raise RuntimeError(f"special token {added['content']!r} got id {added['id']}")
        tokens.append(added["content"])
        types.append(TOKEN_CONTROL)
    merges = tuple(m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"])

    result = Vocabulary(
        tokens=tuple(tokens),
        token_types=tuple(types),
        merges=merges,
        tokenizer_json=tokenizer.to_str(),
        think_end_special=think_end_special,
    )
    for must in (ANSWER_TRUE, ANSWER_FALSE):
        if result.token_id(must) is None:
            raise RuntimeError(f"vocabulary lacks the single token {must!r}")
    return result


# --------------------------------------------------------------------------- byte-level form

_BYTE_TO_CHAR: dict[int, str] = {}


def _byte_table() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table."""
    if not _BYTE_TO_CHAR:
        printable = (
            list(range(ord("!"), ord("~") + 1))
            + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1))
        )
        chars = list(printable)
        extra = 0
        for b in range(256):
            if b not in printable:
                printable.append(b)
                chars.append(256 + extra)
                extra += 1
        _BYTE_TO_CHAR.update({b: chr(c) for b, c in zip(printable, chars, strict=True)})
    return _BYTE_TO_CHAR


def _to_byte_level(text: str) -> str:
    table = _byte_table()
    return "".join(table[b] for b in text.encode("utf-8"))


def _from_byte_level(token: str) -> str:
    reverse = {c: b for b, c in _byte_table().items()}
    return bytes(reverse[c] for c in token).decode("utf-8", errors="replace")


def token_bytes(token: str, token_type: int) -> bytes:
    """The bytes a token renders to (special tokens: their text)."""
    if token_type == TOKEN_CONTROL:
        return token.encode("utf-8")
    reverse = {c: b for b, c in _byte_table().items()}
    return bytes(reverse[c] for c in token)


def pad_vocabulary(vocab: Vocabulary, size: int) -> Vocabulary:
    """The vocabulary grown to ``size`` tokens with ``[PAD<i>]`` UNUSED tokens, as
    llama.cpp's converter pads Qwen2's 151,665 tokens to 151,936 (a realistic logits width
    for benchmarks). Text never encodes to a padding token."""
    if size < vocab.size:
        raise ValueError(f"cannot pad a {vocab.size}-token vocabulary down to {size}")
    extra = size - vocab.size
    return Vocabulary(
        tokens=vocab.tokens + tuple(f"[PAD{vocab.size + i}]" for i in range(extra)),
        token_types=vocab.token_types + (TOKEN_UNUSED,) * extra,
        merges=vocab.merges,
        tokenizer_json=vocab.tokenizer_json,
        think_end_special=vocab.think_end_special,
    )
