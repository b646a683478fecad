"""The one judging path of a :class:`~rank1_integrations.Rank1Client`: a unit of
passages (one, or all of a query's for a transport whose batch is one request) is
checked, looked up in the cache, fitted to the server by its transport, sent under one
slot of the concurrency bound with the retry policy, and what came back is cached.

The scheduler (:mod:`._scheduler`) decides which units run when; this module how one runs.

Usage (inside the client)::

    judging = Judging(settings, session, transport, cache)
    calls = judging.calls("what causes tides?", passages, instruction=None, budget=None)
    outcomes = await judging.unit(calls[:1], shared=False)  # [Judgment | JudgmentError]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import protocol
from ._inputs import surrogate
from ._session import HttpSession
from .cache import JudgmentCache, cache_key
from .errors import JudgmentError
from .judgment import Judgment
from .passage import Passage
from .protocol import build_prompt, fit_passage
from .settings import ClientSettings
from .transports import JudgeCall, Transport

__all__ = ["Judging", "Outcome"]

#: What judging one passage gives: its judgment or its failure (named).
Outcome = Judgment | JudgmentError


class Judging:
    """Judges units of :class:`~.transports.JudgeCall` through ``transport``, with
    ``cache`` (or none) and ``session``'s concurrency bound; ``settings`` are the
    client's, read at each call."""

    def __init__(
        self, settings: ClientSettings, session: HttpSession, transport: Transport,
        cache: JudgmentCache | None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.transport = transport
        self.cache = cache

    def calls(
        self, query: str, passages: Sequence[Passage], *, instruction: str | None,
        budget: int | None,
    ) -> list[JudgeCall]:
        """The calls of one query: each passage cut to ``max_passage_chars`` and its
        prompt built; ``instruction`` / ``budget`` ``None``: the client's."""
        settings = self.settings
        instruction = settings.instruction if instruction is None else instruction
        budget = settings.max_reasoning_tokens if budget is None else budget
        calls = []
        for index, passage in enumerate(passages):
            fitted, truncated = fit_passage(passage, max_chars=settings.max_passage_chars)
            calls.append(JudgeCall(
                index=index, query=query, passage=fitted.text, title=fitted.title,
                instruction=instruction,
                prompt=build_prompt(
                    query, fitted.text, title=fitted.title, instruction=instruction
                ),
                truncated=truncated, max_reasoning_tokens=budget,
            ))
        return calls

    def key(self, call: JudgeCall) -> str:
        """The cache key of ``call``: over the endpoint the requests really reach (an
        injected client's), the rules' version and everything else that sets the answer."""
        settings = self.settings
        return cache_key(
            protocol_version=protocol.PROTOCOL_VERSION,
            base_url=self.session.endpoint, mode=settings.mode, model=settings.model,
            prompt=call.prompt, max_reasoning_tokens=call.max_reasoning_tokens,
            answer_token_ids=settings.answer_token_ids,
            # a text-only verdict must never reach a client that did not opt in to them
            **({"allow_text_only": True} if settings.allow_text_only else {}),
        )

    def cached(self, call: JudgeCall, key: str) -> Judgment | None:
        """The judgment cached under ``key`` (``call``'s), given ``call``'s index.

        ``truncated`` is ``call``'s own cut or the one the cached judgment records (the
        same prompt reaches the server, so a cut the server made is made again).
        """
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            return None
        return hit.model_copy(update={  # a hit sends nothing: requests=0, cached=True
            "index": call.index, "truncated": call.truncated or hit.truncated,
            "requests": 0, "cached": True,
        })

    async def unit(
        self, calls: list[JudgeCall], *, shared: bool,
        on_outcomes: Callable[[list[Outcome]], None] | None = None, early: bool = False,
    ) -> list[Outcome]:
        """Judge ``calls``, the passages that go to the transport's batch call together:
        one passage, or all of a query's for a transport whose batch is one request
        (``shared``: a failure of that request fails each passage it had not judged yet,
        named).

        A passage that cannot be sent fails alone and a cached one is not sent; the rest
        hold one slot of the concurrency bound. Each HTTP step retries on its own (the
        transports' ``Sdk``); what still fails comes back as a :class:`JudgmentError`
        naming the passage, in place.

        ``on_outcomes`` is called with outcomes as soon as they are known: the cached ones
        and those that cannot be sent at once, the rest together when the batch call
        returns; with ``early``, each judgment the transport hands on as it lands (a
        verdict from ``/rerank``'s stream, which the transport asks for only then) on its
        own.
        """
        outcomes: list[Outcome | None] = [None] * len(calls)
        keys = [""] * len(calls)

        def report(found: list[tuple[int, Outcome]], *, put: bool = True) -> None:
            for i, outcome in found:
                if put and isinstance(outcome, Judgment) and self.cache is not None:
                    self.cache.put(keys[i], outcome)
                outcomes[i] = outcome
            if found and on_outcomes is not None:
                on_outcomes([outcome for _, outcome in found])

        todo: list[int] = []
        known: list[tuple[int, Outcome]] = []
        for i, call in enumerate(calls):
            if (bad := _unencodable(call)) is not None:
                known.append((i, bad))  # that passage fails; the others are still sent
                continue
            if self.cache is not None:
                keys[i] = self.key(call)
            hit = self.cached(call, keys[i])
            if hit is None:
                todo.append(i)
            else:
                known.append((i, hit))
        report(known, put=False)
        if todo:
            batch = [calls[i] for i in todo]
            where = {calls[i].index: i for i in todo}

            def landed(judgments: list[Judgment]) -> None:
                report([(where[j.index], j) for j in judgments
                        if outcomes[where[j.index]] is None])

            judged: Sequence[Outcome]
            async with self.session.semaphore():
                try:
                    judged = await self._judge(batch, landed if early else None)
                except JudgmentError as exc:
                    judged = (
                        [JudgmentError(c.index, str(exc.__cause__ or exc)) for c in batch]
                        if shared else [exc]
                    )
            # what did not land from a stream already
            report([(i, o) for i, o in zip(todo, judged, strict=True) if outcomes[i] is None])
        return [outcome for outcome in outcomes if outcome is not None]

    async def _judge(
        self, calls: list[JudgeCall],
        on_judgments: Callable[[list[Judgment]], None] | None = None,
    ) -> list[Judgment]:
        """One try: fit ``calls`` to the server, then judge them with one batch call
        (``on_judgments``: see :meth:`~.transports.Transport.judge_batch`); a failure
        becomes a :class:`JudgmentError` naming the first passage."""
        transport = self.transport
        try:
            fitted = [await transport.fit(call) for call in calls]
            if on_judgments is None or not transport.reports_early:
                return await transport.judge_batch(fitted)
            return await transport.judge_batch(fitted, on_judgments)
        except JudgmentError:
            raise
        except Exception as exc:
            raise JudgmentError(calls[0].index, f"{type(exc).__name__}: {exc}") from exc


def _unencodable(call: JudgeCall) -> JudgmentError | None:
    """The failure of a call whose text UTF-8 cannot encode: it can be neither hashed for
    the cache nor sent, and fails alone (the caller's ``on_error`` decides), named."""
    if surrogate(call.prompt) is None:
        return None
    fields: tuple[tuple[str, Any], ...] = (
        ("passage", call.passage), ("title", call.title),
        ("instruction", call.instruction), ("query", call.query),
    )
    for name, value in fields:
        if value is not None and (exc := surrogate(value)) is not None:
            char = exc.object[exc.start:exc.end]
            return JudgmentError(
                call.index,
                f"its {name} holds {char!a} at character {exc.start}, a lone surrogate "
                "that UTF-8 cannot encode, so it cannot be sent",
            )
    return JudgmentError(call.index, "its prompt holds a lone surrogate that UTF-8 cannot encode")
