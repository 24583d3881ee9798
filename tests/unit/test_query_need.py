"""The planner's budget by need: which queries get evidence, which get the user's profile, and what that packs."""

from __future__ import annotations

import pytest

from personalize.agent import Candidate, Source, pack
from personalize.agent.packing import RECALL_PACKING, PackingConfig
from personalize.agent.planner import query_need
from personalize.tokens import default_token_counter

COUNTER = default_token_counter()


@pytest.mark.parametrize("query", [
    "When did Caroline go to the LGBTQ support group?",
    "What did Melanie paint recently?",
    "How many times has John injured his ankle?",
    "What book did Caroline recommend to Melanie?",  # a recommendation someone made: still an event
    "What advice does Gina give to Jon about running a business?",
    "Which editor do I use?",
    "Did Melanie make the black and white bowl in the photo?",
])
def test_questions_about_what_happened_need_recall(query: str) -> None:
    assert query_need(query) == "recall"


@pytest.mark.parametrize("query", [
    "recommend a movie for tonight",
    "write a subject line for this email: the quarterly numbers are in",
    "Can you suggest some must-try local street food in Thailand for me?",
    "What are some good pet choices for apartment living?",
    "What should I eat before my race?",
    "How can I track my fitness progress effectively?",
    "dinner ideas",
])
def test_requests_that_depend_on_the_user_need_the_profile(query: str) -> None:
    assert query_need(query) == "profile"


def test_a_task_given_or_detected_needs_the_profile() -> None:
    assert query_need("When did the meeting happen?", "given") == "profile"
    assert query_need("When did the meeting happen?", "embedding") == "profile"
    assert query_need("When did the meeting happen?", "default") == "recall"
    assert query_need("Notes from the trip") == "mixed"


def _candidates(fact_score: float) -> list[Candidate]:
    summary = Candidate("summary", "summary", "The user is vegetarian, runs half marathons and likes sci-fi. " * 4,
                        0.5, tuple(Source(300 + j) for j in range(3)), {"task": "chat"})
    facts = [Candidate("persona", "fact", f"Likes film genre number {i}", fact_score - 0.01 * i, (Source(200 + i),),
                       {"category": "preference"}) for i in range(6)]
    turns = [Candidate("retrieved", "message", f"Melanie: I ran a charity race for mental health, part {i}. "
                       "It was a rewarding day with the whole family.", 0.66 - 0.01 * i, (Source(100 + i, 1, f"D2:{i}"),),
                       {"speaker": "Melanie", "role": "user", "timestamp": f"2023-05-{20 + i}T10:00:00"})
             for i in range(8)]
    return [summary, *facts, *turns]


def _packed(config: PackingConfig, budget: int, fact_score: float = 0.62) -> dict[str, list[int]]:
    ctx = pack(_candidates(fact_score), user_id="u", query="q", task="chat", budget_tokens=budget, counter=COUNTER,
               config=config)
    return {s.name: [i.sources[0].chunk_id for i in s.items] for s in ctx.sections}


def test_recall_gives_the_budget_to_the_evidence_in_relevance_order() -> None:
    small = _packed(RECALL_PACKING, 200)
    # Only retrieved turns, the best ones: nothing else is packed while evidence still fits.
    assert set(small) == {"retrieved"}
    n = len(small["retrieved"])
    assert n >= 4 and sorted(small["retrieved"]) == list(range(100, 100 + n))
    large = _packed(RECALL_PACKING, 2048)
    # With room to spare, the facts and the summary follow the evidence.
    assert len(large["retrieved"]) == 8 and "persona" in large and "summary" in large


def test_the_profile_mix_gives_facts_a_share_of_the_same_budget() -> None:
    # Facts that match the request as well as the turns do.
    profile = _packed(PackingConfig(), 200, fact_score=0.72)
    recall = _packed(RECALL_PACKING, 200, fact_score=0.72)
    assert profile.get("persona"), "facts that bear on the request are packed"
    assert len(profile["retrieved"]) < len(recall["retrieved"])
