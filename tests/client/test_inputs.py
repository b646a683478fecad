"""Bad input gets a clear error naming the culprit; the error policy keeps order and never
invents a score; a huge passage is truncated before it is sent."""

from __future__ import annotations

import copy
import logging

import httpx
import pytest
import respx

from rank1_integrations import JudgmentError, Rank1Client

from .rank1_payloads import BASE_URL, body_of, http_client, sigmoid_of, vllm_completion

URL = f"{BASE_URL}/completions"


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, **kwargs)


def failing_on(*bad: str):
    """A server that answers 500 for the named passages and a verdict for the rest."""

    def answer(request: httpx.Request) -> httpx.Response:
        passage = body_of(request)["prompt"].split("\nPassage: ")[1].removesuffix("\n<think>")
        if passage in bad:
            return httpx.Response(500, json={"error": f"cannot judge {passage}"})
        return httpx.Response(200, json=vllm_completion())

    return answer


@respx.mock
async def test_empty_passage_list_sends_nothing(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=vllm_completion()))
    client = make_client()
    assert await client.arerank("q", []) == []
    assert await client.arerank("q", ()) == []
    assert route.call_count == 0


@respx.mock
def test_sync_empty_passage_list_sends_nothing(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=vllm_completion()))
    with make_client() as client:
        assert client.rerank("q", []) == []
    assert route.call_count == 0


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
@respx.mock
async def test_empty_query_is_a_value_error(respx_mock: respx.MockRouter, query: str) -> None:
    route = respx_mock.post(URL)
    client = make_client()
    with pytest.raises(ValueError, match="query"):
        await client.arerank(query, ["p"])
    with pytest.raises(ValueError, match="query"):
        await client.ajudge(query, "p")
    assert route.call_count == 0


@pytest.mark.parametrize("query", [None, 42, b"bytes"])
async def test_non_string_query_is_a_type_error(query: object) -> None:
    with pytest.raises(TypeError, match="query"):
        await make_client().arerank(query, ["p"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "word"),
    [(None, "NoneType"), (42, "int"), (3.5, "float"), (b"raw", "bytes"), (["x"], "list")],
)
@respx.mock
async def test_bad_passage_names_its_index(
    respx_mock: respx.MockRouter, bad: object, word: str
) -> None:
    route = respx_mock.post(URL)
    with pytest.raises(TypeError, match=rf"passage 2\b.*{word}"):
        await make_client().arerank("q", ["ok", {"text": "ok"}, bad, "ok"])  # type: ignore[list-item]
    assert route.call_count == 0  # checked before anything is sent


def test_sync_bad_passage_names_its_index() -> None:
    with make_client() as client, pytest.raises(TypeError, match="passage 1"):
        client.rerank("q", ["ok", None])  # type: ignore[list-item]


@pytest.mark.parametrize("passages", ["a bare string", b"bytes", {"text": "a mapping"}, 7])
async def test_passages_must_be_a_sequence(passages: object) -> None:
    with pytest.raises(TypeError, match="passages"):
        await make_client().arerank("q", passages)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "message"),
    [({"title": "T"}, "passage 1: 'text'"), ({"text": None}, "passage 1: 'text'"),
     ({"text": 5}, "passage 1: 'text'"), ({"text": "x", "title": 3}, "passage 1: 'title'")],
)
async def test_mapping_without_usable_text_is_a_type_error(bad: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        await make_client().arerank("q", ["fine", bad])


@respx.mock
async def test_mapping_passages_and_titles(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=vllm_completion()))
    passages = [{"text": "body", "title": "Title"}, {"text": "no title"},
                {"text": "empty", "title": ""}, "plain"]
    before = copy.deepcopy(passages)
    await make_client(concurrency=1).arerank("q", passages)
    sent = [body_of(c.request)["prompt"].split("\nPassage: ")[1] for c in route.calls]
    assert sent == ["Title body\n<think>", "no title\n<think>", " empty\n<think>",
                    "plain\n<think>"]
    assert passages == before  # inputs never mutated


@respx.mock
async def test_passage_objects_are_passages_too(respx_mock: respx.MockRouter) -> None:
    """A :class:`Passage` (or an evaluation Document, which is one) is sent as the mapping
    with the same text and title is."""
    from rank1_integrations import Passage
    from rank1_integrations.evaluation.io import Document

    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=vllm_completion()))
    passages = [Passage("body", title="Title"), Passage("no title"), Document("doc", "")]
    judgments = await make_client(concurrency=1).arerank("q", passages)
    sent = [body_of(c.request)["prompt"].split("\nPassage: ")[1] for c in route.calls]
    assert sent == ["Title body\n<think>", "no title\n<think>", " doc\n<think>"]
    assert [j.index for j in judgments] == [0, 1, 2]
    with pytest.raises(TypeError, match="passage 0: 'title'"):
        await make_client().arerank("q", [Passage("x", title=3)])  # type: ignore[arg-type]


@respx.mock
async def test_judge_with_title(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=vllm_completion()))
    await make_client().ajudge("q", "body", title="Head")
    assert body_of(route.calls[0].request)["prompt"].endswith("\nPassage: Head body\n<think>")


@respx.mock
async def test_huge_passage_is_truncated_before_it_is_sent(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=vllm_completion()))
    huge = "tides " * 200_000  # 1.2 MB
    client = make_client(max_passage_chars=3000)
    judgments = await client.arerank("q", [huge, "short passage"])
    assert [j.truncated for j in judgments] == [True, False]
    prompts = sorted((body_of(c.request)["prompt"] for c in route.calls), key=len)
    assert prompts[0].endswith("\nPassage: short passage\n<think>")
    assert len(prompts[1]) <= 3000 + 200
    assert prompts[1].endswith("tides\n<think>")  # the tail survives, no split word


@respx.mock
async def test_huge_passage_default_budget(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=vllm_completion()))
    judgment = await make_client().ajudge("q", "x" * 1_000_000)
    assert judgment.truncated is True
    assert len(body_of(route.calls[0].request)["prompt"]) < 6000 + 200


@respx.mock
async def test_on_error_raise_is_the_default(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(side_effect=failing_on("b"))
    with pytest.raises(JudgmentError) as info:
        await make_client(max_retries=0).arerank("q", ["a", "b", "c"])
    assert info.value.index == 1


@respx.mock
async def test_on_error_keep(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(side_effect=failing_on("b", "d"))
    client = make_client(max_retries=1)
    judgments = await client.ajudge_all("q", ["a", "b", "c", "d"], on_error="keep")
    assert [j.index for j in judgments] == [0, 1, 2, 3]
    assert [j.ok for j in judgments] == [True, False, True, False]
    for failed in (judgments[1], judgments[3]):
        assert failed.score is None and failed.relevant is None and failed.source is None
        assert f"passage {failed.index}" in failed.error
        assert "500" in failed.error or "InternalServerError" in failed.error
    expected = sigmoid_of(-0.1, -2.4)
    assert [judgments[0].score, judgments[2].score] == [pytest.approx(expected)] * 2


@respx.mock
async def test_on_error_drop_keeps_order_and_logs(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    respx_mock.post(URL).mock(side_effect=failing_on("b", "d"))
    client = make_client(max_retries=0, on_error="drop")
    with caplog.at_level(logging.WARNING, logger="rank1_integrations"):
        judgments = await client.arerank("q", ["a", "b", "c", "d", "e"])
    assert [j.index for j in judgments] == [0, 2, 4]
    assert all(j.ok for j in judgments)
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1
    assert "[1, 3]" in dropped[0].getMessage()


@respx.mock
async def test_per_call_on_error_overrides_the_client(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(side_effect=failing_on("b"))
    client = make_client(max_retries=0, on_error="raise")
    judgments = await client.arerank("q", ["a", "b"], on_error="keep")
    assert [j.ok for j in judgments] == [True, False]


async def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="on_error"):
        Rank1Client(BASE_URL, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        Rank1Client(BASE_URL, mode="embeddings")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency"):
        Rank1Client(BASE_URL, concurrency=0)
    with pytest.raises(ValueError, match="max_retries"):
        Rank1Client(BASE_URL, max_retries=-1)
    with pytest.raises(ValueError, match="on_error"):
        await make_client().arerank("q", ["p"], on_error="skip")  # type: ignore[arg-type]


@respx.mock
async def test_huge_title_is_within_the_budget_too(respx_mock: respx.MockRouter) -> None:
    """The model sees f"{title} {text}": a huge title must not slip past the budget."""
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=vllm_completion()))
    client = make_client(max_passage_chars=1000)
    judgments = await client.arerank("q", [
        {"title": "T" * 500_000, "text": "body"},
        {"title": "Short title", "text": "word " * 10_000},
        {"title": "Short title", "text": "fits"},
    ])
    assert [j.truncated for j in judgments] == [True, True, False]
    for call in route.calls:
        passage = body_of(call.request)["prompt"].split("\nPassage: ")[1]
        assert len(passage) <= 1000 + len("\n<think>")
    prompts = {body_of(c.request)["prompt"] for c in route.calls}
    assert any(p.endswith("\nPassage: Short title fits\n<think>") for p in prompts)
    assert any("\nPassage: Short title word word" in p for p in prompts)


def test_judgment_error_survives_pickling():
    import pickle

    from rank1_integrations.errors import JudgmentError

    error = pickle.loads(pickle.dumps(JudgmentError(3, "boom")))
    assert error.index == 3 and str(error) == "judgment of passage 3 failed: boom"
