"""The shipped demo model: built reproducibly, labelled honestly, and - through the real
llama.cpp engine with greedy decoding on the official rank1 prompt - writing reasoning,
``</think>``, an answer token, with P(true) following word overlap as designed."""

from __future__ import annotations

import hashlib
import math

import pytest
from rank1_server.models.demo_model import (
    DEMO_MODEL_PATH,
    content_words,
    demo_corpus,
    demo_queries,
    demo_vocabulary,
    expected_completion,
    expected_p_true,
    overlap_fraction,
    write_demo_model,
)

from rank1_integrations.protocol import (
    THINK_END,
    build_prompt,
    clean_reasoning,
    extract_reasoning,
    forced_answer_prompt,
    verdict_from_text,
)

QUERY = "volcanoes erupt magma lava"
# Passages sharing 0, 1, 2, 3 and 4 of the query's 4 content words.
LEVELS = [
    "Bees make honey from flower nectar.",
    "Volcanoes are found on every continent.",
    "Volcanoes erupt in many places.",
    "Volcanoes erupt when magma rises.",
    "Volcanoes erupt when magma rises and lava flows out.",
]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- builder


def test_rebuilding_gives_the_shipped_file(tmp_path):
    fresh = write_demo_model(tmp_path / "rank1-demo.gguf")
    assert _sha256(fresh) == _sha256(DEMO_MODEL_PATH), (
        "the shipped demo model is stale: run scripts/build_demo_model.py and commit it"
    )
    assert DEMO_MODEL_PATH.stat().st_size <= 20_000_000


def test_metadata_says_it_is_a_stand_in():
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(DEMO_MODEL_PATH))

    def text(key: str) -> str:
        return reader.get_field(key).contents()

    assert reader.get_field("general.architecture").contents() == "qwen2"
    assert "stand-in" in text("general.name")
    assert "not a relevance model" in text("general.description")


def test_vocabulary_has_the_rank1_tokens():
    vocab = demo_vocabulary()
    for single in (" true", " false", "<think>", "</think>", "Query", "Passage", " volcanoes"):
        assert vocab.token_id(single) is not None, single
    assert set(vocab.special_ids) >= {"<think>", "</think>", "<|endoftext|>"}


def test_overlap_fraction_counts_distinct_content_words_case_insensitively():
    assert content_words("Why do Volcanoes erupt so often?") == ["volcanoes", "erupt", "often"]
    assert [overlap_fraction(QUERY, p) for p in LEVELS] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert overlap_fraction("lava lava magma", "Lava everywhere") == 0.5
    assert overlap_fraction("lava", "LAVA") == 0.0  # all-caps words are not in the vocabulary
    assert overlap_fraction("why is it so", "why is it so") == 0.0  # only stop words
    assert overlap_fraction("magma", "rock", title="Magma") == 1.0  # the title is passage text


# --------------------------------------------------------------------------- behaviour


def test_writes_reasoning_then_think_end_then_answer(greedy):
    vocab = demo_vocabulary()
    for passage, verdict in ((LEVELS[4], " true"), (LEVELS[0], " false")):
        prompt = build_prompt(QUERY, passage)
        run = greedy(prompt)
        end, answer = vocab.token_id(THINK_END), vocab.token_id(verdict)
        assert end in run.token_ids, run.text
        i = run.token_ids.index(end)
        assert run.token_ids[i + 1 :] == [answer]  # then EOS, which stopped the run
        reasoning = extract_reasoning(run.text)
        assert reasoning.endswith(".") and len(reasoning.split(".")) >= 3
        assert run.text == expected_completion(QUERY, passage)
        assert verdict_from_text(run.text) is (verdict == " true")


def test_first_sentence_branches_on_overlap(greedy):
    shares = greedy(build_prompt(QUERY, LEVELS[4])).text
    lacks = greedy(build_prompt(QUERY, LEVELS[0])).text
    assert extract_reasoning(shares).startswith("The passage shares words with the query.")
    assert extract_reasoning(lacks).startswith("The passage does not mention those terms.")


def test_p_true_rises_with_overlap_as_designed(greedy):
    scores = [greedy(build_prompt(QUERY, p)).p_true for p in LEVELS]
    assert scores[0] < 0.1 and scores[-1] > 0.9
    assert all(a < b for a, b in zip(scores, scores[1:], strict=False)), scores
    for passage, score in zip(LEVELS, scores, strict=True):
        assert score == pytest.approx(expected_p_true(QUERY, passage), abs=0.005)


def test_overlapping_passage_beats_unrelated_one_for_any_phrasing(greedy):
    cases = [
        ("how do bees make honey", "Worker bees make honey in the hive.", "Lava cools into rock."),
        ("Chess openings", "Good chess openings move pawns.", "Sourdough bread is sour."),
    ]
    for query, related, unrelated in cases:
        high = greedy(build_prompt(query, related)).p_true
        low = greedy(build_prompt(query, unrelated)).p_true
        assert high > 0.5 > low


def test_repeated_and_capitalised_words_count_once(greedy):
    once = greedy(build_prompt(QUERY, "Volcanoes erupt.")).p_true
    again = greedy(build_prompt(QUERY, "Volcanoes volcanoes Volcanoes erupt erupt.")).p_true
    assert once == pytest.approx(again, abs=0.005)


def test_forced_answer_prompt_gets_the_same_verdict(greedy):
    prompt = build_prompt(QUERY, LEVELS[3])
    full = greedy(prompt)
    forced = greedy(forced_answer_prompt(prompt, clean_reasoning(extract_reasoning(full.text))))
    assert forced.p_true == pytest.approx(full.p_true, abs=0.005)


def test_long_passage_keeps_the_rule(greedy):
    filler = " ".join(["The river valley has green fields and old stone houses."] * 60)
    passage = filler + " Magma rises." + filler
    run = greedy(build_prompt(QUERY, passage))
    assert run.p_true == pytest.approx(expected_p_true(QUERY, passage), abs=0.005)


# --------------------------------------------------------------------------- demo corpus


def _ndcg_at_3(ranked: list[str], relevance: dict[str, int]) -> float:
    def dcg(grades: list[int]) -> float:
        return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(grades[:3]))

    ideal = dcg(sorted(relevance.values(), reverse=True))
    return dcg([relevance.get(doc, 0) for doc in ranked]) / ideal


def test_ranking_the_demo_corpus_by_p_true_gives_ndcg_at_3_above_0_9(greedy):
    docs = demo_corpus()
    per_query = []
    for query in demo_queries():
        scores = {}
        for doc in docs:
            run = greedy(build_prompt(query["text"], doc["text"], title=doc["title"]))
            assert run.p_true is not None, (query["id"], doc["id"], run.text)
            scores[doc["id"]] = run.p_true
        # Ties are broken against the model: less relevant passages first.
        ranked = sorted(scores, key=lambda d: (-round(scores[d], 6), query["relevance"].get(d, 0)))
        per_query.append(_ndcg_at_3(ranked, query["relevance"]))
    assert sum(per_query) / len(per_query) >= 0.9, per_query


def test_pieces_vocabulary_variant_writes_think_end_as_text(tmp_path):
    """``think_end_special=False``: ``</think>`` is three ordinary tokens (like plain
    Qwen2.5), the text is the same and the answer follows the last piece."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from rank1_integrations.protocol import read_answer

    path = write_demo_model(tmp_path / "pieces.gguf", think_end_special=False)
    llm = llama_cpp.Llama(
        str(path), n_ctx=512, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False
    )
    assert llm.tokenize(b"</think>", add_bos=False, special=True) == llm.tokenize(
        b"</think>", add_bos=False, special=False
    )
    for passage in (LEVELS[1], LEVELS[3]):
        out = llm.create_completion(
            build_prompt(QUERY, passage), max_tokens=30, temperature=0.0, logprobs=5
        )
        choice = out["choices"][0]
        assert choice["text"] == expected_completion(QUERY, passage)  # "</think>" in plain text
        tokens = choice["logprobs"]["tokens"]
        assert tokens[-4:-1] == ["</", "think", ">"]
        reading = read_answer(choice["logprobs"]["top_logprobs"][-1])
        assert reading is not None and not reading.estimated
        assert reading.score == pytest.approx(expected_p_true(QUERY, passage), abs=0.005)
    llm.close()
