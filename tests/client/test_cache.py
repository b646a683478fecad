"""The judgment cache: identical work is not sent twice; anything that changes the answer
is a new request; failures are never cached; the memory cache is bounded."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
import respx

from rank1_integrations import Judgment, JudgmentError, MemoryCache, Rank1Client, protocol
from rank1_integrations.cache import JudgmentCache
from rank1_integrations.client import DEFAULT_BASE_URL
from rank1_integrations.store import JudgmentStore

from .rank1_payloads import BASE_URL, http_client, vllm_completion

URL = f"{BASE_URL}/completions"
OK = httpx.Response(200, json=vllm_completion())


def make_client(base_url: str = BASE_URL, **kwargs) -> Rank1Client:
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(base_url, **kwargs)


@respx.mock
async def test_second_identical_call_makes_no_request(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=OK)
    client = make_client()  # cache on by default
    first = await client.ajudge("q", "p")
    second = await client.ajudge("q", "p")
    assert route.call_count == 1
    # the completion and the server probe (GET /models, unanswered here)
    assert (first.cached, first.requests) == (False, 2)
    # the hit sends nothing and says it came from the cache; the verdict is the same
    assert (second.cached, second.requests) == (True, 0)
    assert second.model_copy(update={"cached": False, "requests": 2}) == first


@respx.mock
async def test_rerank_uses_the_cache_and_keeps_each_index(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=OK)
    client = make_client()
    await client.arerank("q", ["a", "b"])
    judgments = await client.arerank("q", ["b", "c", "a"])
    assert route.call_count == 3  # only 'c' was new
    assert [j.index for j in judgments] == [0, 1, 2]


@respx.mock
def test_sync_calls_share_the_cache(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=OK)
    with make_client() as client:
        client.judge("q", "p")
        client.rerank("q", ["p", "p"])
    assert route.call_count <= 2  # the two identical ones in one batch may race
    with make_client(cache=None) as client:
        client.judge("q", "p")
        client.judge("q", "p")
    assert route.call_count <= 4


@respx.mock
async def test_anything_that_changes_the_answer_is_a_new_request(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(return_value=OK)
    other = respx_mock.post("http://other.test/v1/completions").mock(return_value=OK)
    shared = MemoryCache()
    await make_client(cache=shared).ajudge("q", "p")
    await make_client(cache=shared).ajudge("q", "p")
    assert route.call_count == 1
    await make_client(cache=shared, max_reasoning_tokens=512).ajudge("q", "p")
    assert route.call_count == 2
    await make_client(cache=shared, model="another-model").ajudge("q", "p")
    assert route.call_count == 3
    await make_client(cache=shared).ajudge("q", "p2")  # another prompt
    assert route.call_count == 4
    await make_client(cache=shared).ajudge("q2", "p")
    assert route.call_count == 5
    await make_client(cache=shared, instruction="Define relevance.").ajudge("q", "p")
    assert route.call_count == 6
    await make_client(cache=shared).ajudge("q", "p", title="T")
    assert route.call_count == 7
    await make_client("http://other.test/v1", cache=shared).ajudge("q", "p")
    assert (route.call_count, other.call_count) == (7, 1)
    # a client that accepts text-only verdicts keeps its own entries
    await make_client(cache=shared, allow_text_only=True).ajudge("q", "p")
    assert route.call_count == 8
    # and all of those are now cached
    await make_client(cache=shared, max_reasoning_tokens=512).ajudge("q", "p")
    await make_client(cache=shared).ajudge("q", "p", title="T")
    assert route.call_count == 8


@respx.mock
async def test_chat_and_completions_do_not_share_entries(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(return_value=OK)
    chat = respx_mock.post(f"{BASE_URL}/chat/completions").mock(return_value=httpx.Response(
        200, json={"choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                "message": {"role": "assistant", "content": "true",
                                            "reasoning": "ok"}}]}))
    shared = MemoryCache()
    await make_client(cache=shared).ajudge("q", "p")
    judgment = await make_client(cache=shared, mode="chat").ajudge("q", "p")
    assert chat.call_count == 1
    assert judgment.source == "text_only"


@respx.mock
async def test_failures_are_not_cached(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[httpx.Response(400, json={}), OK])
    client = make_client(max_retries=0)
    with pytest.raises(JudgmentError):
        await client.ajudge("q", "p")
    assert (await client.ajudge("q", "p")).ok
    assert (await client.ajudge("q", "p")).ok
    assert route.call_count == 2


@respx.mock
async def test_kept_failures_are_not_cached(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[httpx.Response(500, json={}), OK])
    client = make_client(max_retries=0, on_error="keep")
    assert not (await client.arerank("q", ["p"]))[0].ok
    assert (await client.arerank("q", ["p"]))[0].ok
    assert route.call_count == 2


@respx.mock
async def test_truncation_flag_survives_a_cache_hit(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(return_value=OK)
    client = make_client(max_passage_chars=100)
    huge = "word " * 1000
    first = await client.ajudge("q", huge)
    second = await client.ajudge("q", huge)
    assert first.truncated and second.truncated


def rerank_reply(request: httpx.Request) -> httpx.Response:
    """rank1-server's /rerank: every document judged relevant and cut by the server."""
    documents = json.loads(request.content)["documents"]
    results = [
        {"index": i, "relevance_score": 0.9, "relevant": True, "reasoning": "r",
         "source": "answer_logprobs", "truncated": True, "reasoning_tokens": 3}
        for i in range(len(documents))
    ]
    return httpx.Response(200, json={"results": results})


@respx.mock
async def test_server_cut_survives_a_cache_hit(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{BASE_URL}/rerank").mock(side_effect=rerank_reply)
    client = make_client(mode="rerank")
    first = await client.ajudge("q", "short")
    assert first.truncated  # the server's cut, not the client's
    assert (await client.ajudge("q", "short")).truncated
    assert [j.truncated for j in await client.arerank("q", ["other", "short"])] == [True, True]
    assert route.call_count == 2  # the second ajudge and 'short' in arerank were cached


@respx.mock
async def test_custom_cache_object(respx_mock: respx.MockRouter) -> None:
    class DictCache:
        def __init__(self) -> None:
            self.data: dict[str, Judgment] = {}
            self.gets = 0

        def get(self, key: str) -> Judgment | None:
            self.gets += 1
            return self.data.get(key)

        def put(self, key: str, judgment: Judgment) -> None:
            self.data[key] = judgment

    route = respx_mock.post(URL).mock(return_value=OK)
    cache = DictCache()
    assert isinstance(cache, JudgmentCache)
    client = make_client(cache=cache)
    await client.arerank("q", ["a", "b"])
    await client.arerank("q", ["a", "b"])
    assert route.call_count == 2 and len(cache.data) == 2 and cache.gets == 4
    assert all(len(key) == 64 for key in cache.data)  # sha256 hex


@pytest.mark.parametrize("off", [None, False])
@respx.mock
async def test_cache_off(respx_mock: respx.MockRouter, off: object) -> None:
    route = respx_mock.post(URL).mock(return_value=OK)
    client = make_client(cache=off)
    await client.ajudge("q", "p")
    await client.ajudge("q", "p")
    assert route.call_count == 2


def judgment(i: int) -> Judgment:
    return Judgment(index=i, relevant=True, score=0.9, source="answer_logprobs")


def test_memory_cache_is_bounded_lru() -> None:
    cache = MemoryCache(maxsize=2)
    cache.put("a", judgment(0))
    cache.put("b", judgment(1))
    assert cache.get("a") == judgment(0)  # 'a' is now the most recent
    cache.put("c", judgment(2))
    assert len(cache) == 2
    assert cache.get("b") is None  # least recently used went out
    assert cache.get("a") == judgment(0) and cache.get("c") == judgment(2)
    cache.put("a", judgment(5))  # overwrite does not grow it
    assert len(cache) == 2 and cache.get("a") == judgment(5)


def test_memory_cache_rejects_a_bad_size() -> None:
    with pytest.raises(ValueError):
        MemoryCache(maxsize=0)


@respx.mock
async def test_client_cache_stays_bounded(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=OK)
    cache = MemoryCache(maxsize=3)
    client = make_client(cache=cache)
    await client.arerank("q", [f"p{i}" for i in range(10)])
    assert len(cache) == 3
    await client.ajudge("q", "p0")  # evicted long ago: asked again
    assert route.call_count == 11


@respx.mock
async def test_injected_sdk_clients_key_on_their_own_endpoint(
    respx_mock: respx.MockRouter,
) -> None:
    """An injected SDK client's base_url is where requests go, so it is the key's endpoint:
    two servers never share an entry (both clients leave base_url= at its default)."""
    a = respx_mock.post("http://a.test/v1/completions").mock(return_value=OK)
    b = respx_mock.post("http://b.test/v1/completions").mock(return_value=OK)
    shared = MemoryCache()
    to_a = openai.AsyncOpenAI(base_url="http://a.test/v1", api_key="k", http_client=http_client())
    to_b = openai.OpenAI(base_url="http://b.test/v1", api_key="k", http_client=httpx.Client())
    await make_client(DEFAULT_BASE_URL, client=to_a, cache=shared).ajudge("q", "p")
    await make_client(DEFAULT_BASE_URL, client=to_b, cache=shared).ajudge("q", "p")
    assert (a.call_count, b.call_count) == (1, 1)
    # the same endpoint given as base_url= (over an httpx client) shares a's entry
    await make_client("http://a.test/v1/", cache=shared).ajudge("q", "p")
    assert (a.call_count, b.call_count) == (1, 1)


@respx.mock
async def test_a_new_protocol_version_never_reuses_a_stored_judgment(
    respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """The key carries protocol.PROTOCOL_VERSION: after a rule fix bumps it, a judgment
    stored on disk under the old rules is asked again, not reused."""
    route = respx_mock.post(URL).mock(return_value=OK)
    path = tmp_path / "judgments.sqlite"
    with JudgmentStore(path) as store:
        await make_client(cache=store).ajudge("q", "p")
        await make_client(cache=store).ajudge("q", "p")
    assert route.call_count == 1
    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", protocol.PROTOCOL_VERSION + 1)
    with JudgmentStore(path) as store:
        await make_client(cache=store).ajudge("q", "p")
        assert route.call_count == 2
        await make_client(cache=store).ajudge("q", "p")  # stored under the new version
        assert route.call_count == 2 and len(store) == 2


@pytest.mark.parametrize("cache", [True, None], ids=["cache", "no-cache"])
@pytest.mark.parametrize("mode", ["completions", "rerank"])
@respx.mock
async def test_a_lone_surrogate_fails_that_passage_only(
    respx_mock: respx.MockRouter, mode: str, cache: bool | None,
) -> None:
    """A lone surrogate (json.loads makes one of "\\ud800") cannot be hashed or sent as
    UTF-8: that passage fails, named, under every policy; the others are judged."""
    if mode == "rerank":
        route = respx_mock.post(f"{BASE_URL}/rerank").mock(side_effect=rerank_reply)
    else:
        route = respx_mock.post(URL).mock(return_value=OK)
    client = make_client(mode=mode, cache=cache, on_error="keep")
    passages = ["a", json.loads('"bad \\ud800 text"'), {"text": "c", "title": "\udfff"}]
    kept = await client.arerank("q", passages)
    assert [(j.index, j.ok) for j in kept] == [(0, True), (1, False), (2, False)]
    assert "passage 1" in kept[1].error
    assert "passage holds '\\ud800' at character 4" in kept[1].error
    assert "passage 2" in kept[2].error and "title holds '\\udfff'" in kept[2].error
    dropped = await client.arerank("q", passages, on_error="drop")
    assert [j.index for j in dropped] == [0]
    with pytest.raises(JudgmentError, match="passage 1 failed: .*surrogate") as caught:
        await client.arerank("q", passages, on_error="raise")
    assert caught.value.index == 1
    with pytest.raises(JudgmentError, match="passage 0 failed: .*surrogate"):
        await client.ajudge("q", passages[1])
    sent = [json.loads(call.request.content) for call in route.calls]
    assert sent, "the good passage was judged"
    for body in sent:  # only 'a' ever went out
        assert body.get("documents", ["a"]) == ["a"]
        assert body.get("prompt", "Passage: a\n").count("Passage: a\n") == 1


async def test_a_query_with_a_lone_surrogate_is_refused() -> None:
    client = make_client()
    with pytest.raises(ValueError, match="query holds '\\\\ud800'"):
        await client.arerank("q \ud800", ["a"], on_error="keep")
