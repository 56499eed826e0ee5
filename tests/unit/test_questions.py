"""The offline checker of the real-text question sets (models/questions.py)."""

import pytest

from shardline.models import questions


def needle(answer="4821"):
    (item,) = questions.needle_in_prose(0, 1, 200)
    return questions.Item(item.prompt, answer, "needle", item.depth)


@pytest.mark.parametrize(
    "completion, right",
    [
        (" 4821", True),
        (" The secret code of the vault is 4821.", True),
        (" The answer is:\nThe secret code of the vault is 4821", True),
        (" 1234, not 4821", False),
        (" 48210", False),
        (" The answer is:", False),
    ],
)
def test_a_needle_is_right_when_its_first_code_is_the_answer(completion, right):
    assert questions.score(needle(), completion) is right


def test_the_needle_fact_stands_in_the_prompt_and_the_question_ends_it():
    (item,) = questions.needle_in_prose(3, 1, 400, depths=(0.5,))
    assert f"is {item.answer}." in item.prompt
    assert item.prompt.endswith("\nAnswer:")


@pytest.mark.parametrize(
    "completion, right",
    [(" Paris", True), (" paris.\nQuestion: ...", True), (" It is Paris", False), ("\nLyon", False)],
)
def test_a_short_answer_is_judged_on_its_first_line(completion, right):
    item = questions.Item("Question: What is the capital of France?\nAnswer:", "Paris", "capital")
    assert questions.score(item, completion) is right


def test_numbers_compare_as_numbers():
    item = questions.Item("Question: What is 3 plus 4?\nAnswer:", "7", "arithmetic")
    assert questions.score(item, " 7 apples")
    assert not questions.score(item, " 17")


def test_a_needle_within_a_token_count_fits_it_and_keeps_its_depth():
    def count(text):
        return int(len(text.split()) * 1.6)  # a tokenizer with more tokens per word than guessed

    item = questions.needle_within(7, 900, 0.9, count)
    assert 0.8 * 900 <= count(item.prompt) <= 900
    assert item.depth == 0.9 and f"is {item.answer}." in item.prompt


def test_prose_passages_are_seeded_consecutive_and_do_not_overlap():
    passages = questions.prose_passages(7, 4, 150)
    assert passages == questions.prose_passages(7, 4, 150)
    assert passages != questions.prose_passages(8, 4, 150)
    # Each is about 150 words (whole sentences: it may run over by the last one).
    assert all(150 <= len(p.split()) < 300 for p in passages)
    # Consecutive: cut from one run of text, so no sentence appears in two of them.
    whole = questions.prose_passages(7, 1, sum(len(p.split()) for p in passages))[0]
    assert whole == " ".join(passages)
