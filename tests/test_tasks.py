import re

import numpy as np
import pytest

from dllm_gym.tasks import ArithTask, GSM8KTask, make_task
from dllm_gym.tasks.arith import Chain, render


def test_arith_is_reproducible_by_index():
    first, second = ArithTask(seed=3), ArithTask(seed=3)
    for split in ("train", "test"):
        for index in (0, 7, 999):
            assert first.problems(split)[index] == second.problems(split)[index]
    assert ArithTask(seed=4).problems("test")[0] != first.problems("test")[0]
    # Out-of-order access gives the same problem as in-order access.
    fresh = ArithTask(seed=3)
    assert fresh.problems("test")[999] == first.problems("test")[999]


def test_arith_splits_are_disjoint_in_their_numbers():
    task = ArithTask()
    test_chains = {task.chain("test", i)[0] for i in range(1000)}
    train_chains = {task.chain("train", i)[0] for i in range(5000)}
    validation_chains = {task.chain("validation", i)[0] for i in range(500)}
    assert not test_chains & train_chains
    assert not validation_chains & train_chains
    assert not test_chains & validation_chains
    assert len(test_chains) > 300  # many distinct chains, not a handful repeated


STEP = re.compile(r"(Box \d) has (\d) ([-+*]) (\d) = (\d)\.")
LINK = {
    "+": "Compared to {3}, {0} has {1} more {2}.",
    "-": "Compared to {3}, {0} has {1} fewer {2}.",
    "*": "Compared to {3}, {0} has {1} times the {2}.",
}


def test_arith_solution_is_a_correct_worked_chain():
    task = ArithTask()
    for index in range(200):
        problem = task.problems("train")[index]
        first, value = re.match(r"(Box \d) has (\d)\.", problem.solution).groups()
        item = re.search(r"How many (\w+) does", problem.question).group(1)
        assert f"{first} has {value} {item}." in problem.question  # the chain's start
        steps = STEP.findall(problem.solution)
        assert 2 <= len(steps) <= 4
        previous_name, previous = first, int(value)
        for name, left, operator, right, result in steps:
            left, right, result = int(left), int(right), int(result)
            expected = {"+": left + right, "-": left - right, "*": left * right}[operator]
            assert result == expected and 0 <= result <= 9
            assert left == previous  # each step uses the previous result...
            # ...and the sentence that links this person to the previous one.
            assert LINK[operator].format(name, right, item, previous_name) in problem.question
            previous_name, previous = name, result
        assert f"How many {item} does {previous_name} have?" in problem.question
        assert problem.solution.endswith(f"\n#### {previous}")
        assert problem.reference == str(previous)
        assert task.is_correct(problem.solution, problem.reference)


def test_arith_sentences_come_in_a_shuffled_order():
    task = ArithTask()
    first_sentence_is_the_start = 0
    for index in range(200):
        problem = task.problems("test")[index]
        start = re.match(r"(Box \d has \d)\.", problem.solution).group(1)
        first_sentence_is_the_start += problem.question.startswith(start)
    # With 3 to 5 sentences the start comes first in about a quarter of the problems.
    assert 20 < first_sentence_is_the_start < 90


def test_arith_render_and_token_counts(word_tokenizer):
    chain = Chain(4, (("+", 3), ("-", 5), ("*", 2)))
    problem = render(chain, [5, 0, 9, 3], "pens", order=[2, 0, 3, 1])
    assert problem.question == (
        "Compared to Box 0, Box 9 has 5 fewer pens. Box 5 has 4 pens. Compared to Box 9, Box 3 "
        "has 2 times the pens. Compared to Box 5, Box 0 has 3 more pens. How many pens does "
        "Box 3 have?"
    )
    assert problem.solution == (
        "Box 5 has 4. Box 0 has 4 + 3 = 7. Box 9 has 7 - 5 = 2. Box 3 has 2 * 2 = 4.\n#### 4"
    )
    assert chain.values() == [4, 7, 2, 4]
    assert render(chain, [5, 0, 9, 3], "pens").question.startswith(
        "Box 5 has 4 pens. Compared to Box 5, Box 0 has 3 more pens."
    )
    with pytest.raises(ValueError, match="order"):
        render(chain, [5, 0, 9, 3], "pens", order=[0, 1, 2, 2])
    with pytest.raises(ValueError, match="labels"):
        render(chain, [5, 0, 9, 9], "pens")

    def count(text: str) -> int:
        return len(word_tokenizer(text, add_special_tokens=False)["input_ids"])

    links = [s + "." for s in problem.question.split(". ")[:4] if s.startswith("Compared")]
    assert [count(s) for s in links] == [12, 13, 12]  # "times the pens" has one word more
    steps = [s + "." for s in problem.solution.split("\n")[0].rstrip(".").split(". ")]
    assert [count(s) for s in steps] == [5, 9, 9, 9]
    decoded = word_tokenizer.decode(word_tokenizer(problem.solution)["input_ids"])
    assert decoded == problem.solution.replace("\n", " ")


def test_arith_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split='dev'"):
        ArithTask().problems("dev")
    with pytest.raises(ValueError, match="min_steps"):
        ArithTask(min_steps=3, max_steps=2)
    with pytest.raises(IndexError):
        ArithTask(sizes={"test": 10}).problems("test")[10]


def test_prompt_uses_the_chat_template(word_tokenizer):
    ids = ArithTask().format_prompt("Box 1 has 3 pens.", word_tokenizer)
    tokens = word_tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:2] == ["<|startoftext|>", "<|user|>"]
    assert tokens[2:8] == ["Box", "1", "has", "3", "pens", "."]
    assert tokens[8:] == ["<|eot_id|>", "<|assistant|>"]


def test_gsm8k_from_local_files(gsm8k_dir, gsm8k_records):
    task = GSM8KTask(data_files=gsm8k_dir)
    test = task.problems("test")
    assert len(test) == 3 and len(task.problems("train")) == 2
    assert [p.reference for p in test] == ["7", "2500", "3.75"]
    assert test[0].question == gsm8k_records[0]["question"]
    assert task.is_correct("so 2 tickets cost $2,500.", "2500")
    assert task.is_correct("#### 3.750", "3.75")
    assert not task.is_correct("#### 2499", "2500")
    # A mapping and a single file work too.
    single = GSM8KTask(data_files=gsm8k_dir / "test.jsonl")
    assert single.problems("train")[2].reference == "3.75"
    mapped = make_task("gsm8k", data_files={"test": gsm8k_dir / "test.jsonl"})
    assert len(mapped.problems("test")) == 3


def test_gsm8k_missing_or_bad_files(tmp_path, gsm8k_dir):
    with pytest.raises(FileNotFoundError, match="data_files"):
        GSM8KTask(data_files=tmp_path / "nowhere.jsonl")
    with pytest.raises(FileNotFoundError, match="data_files"):
        GSM8KTask(data_files=tmp_path / "empty_dir_that_does_not_exist")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no answer line"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1"):
        GSM8KTask(data_files=bad).problems("test")
    with pytest.raises(ValueError, match="unknown split"):
        GSM8KTask(data_files={"dev": gsm8k_dir / "test.jsonl"})
    with pytest.raises(ValueError, match="task='gsm9k'"):
        make_task("gsm9k")


def test_gsm8k_from_the_hub_needs_the_datasets_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"dllm-gym\[datasets\].*data_files"):
        GSM8KTask().problems("test")


def test_arith_v1_stops_at_the_first_count_of_0_3_6_or_9():
    import re

    from dllm_gym.tasks.arith_v1 import LINKS, STOPS, ArithV1Task

    task = ArithV1Task()
    depths, forms = [], {False: 0, True: 0}
    for index in range(300):
        problem = task.problem("test", index)
        # Every prompt tells LINKS comparisons and one known count, and asks the same question.
        assert problem.question.count("Compared to") == LINKS
        (root,) = re.findall(r"Box (\d) has (\d) (\w+)\.", problem.question)
        assert problem.question.startswith(f"Box {root[0]} has")  # told in chain order
        item = root[2]
        assert problem.question.endswith(
            f"How many {item} does the first Box with 0, 3, 6 or 9 {item} have?"
        )
        links = {a: (b, op, int(x)) for a, b, x, op in _told_links(problem.question)}
        # The answer follows the told chain from the known box, one link a step, and stops at
        # the first count of 0, 3, 6 or 9.
        steps = re.findall(
            r"(?:Compared to Box (\d), )?Box (\d) has (\d) ([-+*]) (\d) = (\d)\.", problem.solution
        )
        box, value = root[0], int(root[1])
        assert value not in STOPS
        for k, (opening, name, left, op, right, result) in enumerate(steps):
            assert opening in ("", box)  # a long form names the box the step builds on
            forms[bool(opening)] += 1
            assert links[box][0] == name and links[box][1] == op
            assert sorted((int(left), int(right))) == sorted((value, links[box][2]))
            value = {"+": value + links[box][2], "-": value - links[box][2]}.get(
                op, value * links[box][2]
            )
            assert int(result) == value
            assert (value in STOPS) == (k == len(steps) - 1)
            box = name
        assert problem.reference == str(value)
        assert problem.solution.endswith(f"\n#### {value}")
        depths.append(len(steps))
    # The number of worked steps is uniform in 1..6: the answer's length is not the prompt's.
    counts = np.bincount(depths, minlength=LINKS + 1)[1:]
    chi_square = ((counts - counts.mean()) ** 2 / counts.mean()).sum()
    assert chi_square < 16.3, counts  # the 0.1% tail with 3 degrees of freedom
    # Both forms of a step are written, about equally often: the length is not the prompt's.
    assert 0.4 < forms[True] / sum(forms.values()) < 0.6, forms


def _told_links(question: str) -> list[tuple[str, str, str, str]]:
    """(from box, to box, operand, operator) of every comparison the question tells."""
    import re

    operators = {"more": "+", "fewer": "-", "times": "*"}
    told = re.findall(r"Compared to Box (\d), Box (\d) has (\d) (more|fewer|times)", question)
    return [(a, b, x, operators[word]) for a, b, x, word in told]


def test_arith_v1_renders_its_docstring_example():
    from dllm_gym.tasks import arith_v1
    from dllm_gym.tasks.arith import Chain

    chain = Chain(4, (("+", 1), ("+", 2), ("-", 1), ("+", 3)))
    problem = arith_v1.render_v1(
        chain, [2, 6, 1, 0, 5], "eggs", swapped=[True, False, False], long_form=[False, True, False]
    )
    example = arith_v1.__doc__.split("::")[1].split("\n\n")[1:3]
    question, solution = (" ".join(part.split()) for part in example)
    assert problem.question == question
    assert " ".join(problem.solution.split()) == solution
    assert problem.reference == "6"


def test_arith_v1_checks_its_arguments():
    from dllm_gym.tasks.arith import Chain
    from dllm_gym.tasks.arith_v1 import ArithV1Task, render_v1

    with pytest.raises(ValueError, match="links=3: expected at least max_steps=4"):
        ArithV1Task(max_steps=4, links=3)
    # The draft the v1 model was first trained on: six links, every step short.
    draft = ArithV1Task(links=6, long_forms=False)
    assert draft.max_steps == 6
    solutions = [draft.problem("test", i).solution for i in range(50)]
    assert not any("Compared" in solution for solution in solutions)
    assert max(solution.count("=") for solution in solutions) == 6
    with pytest.raises(ValueError, match=r"links=10: .* at most 9"):
        ArithV1Task(max_steps=4, links=10)
    with pytest.raises(ValueError, match=r"chain: expected a start not in .* \[4, 5, 7\]"):
        render_v1(Chain(4, (("+", 1), ("+", 2))), [1, 2, 3], "pens")
    with pytest.raises(ValueError, match=r"chain: expected a start not in"):
        render_v1(Chain(6, (("-", 1),)), [1, 2], "pens")
    with pytest.raises(ValueError, match="swapped: expected 1 flags"):
        render_v1(Chain(4, (("-", 1), ("+", 1))), [1, 2, 3], "pens", swapped=[False, True])
    with pytest.raises(ValueError, match="swapped: a '-' step"):
        render_v1(Chain(4, (("-", 1),)), [1, 2], "pens", swapped=[True])
    with pytest.raises(ValueError, match=r"long_form: expected 2 flags .* got \[True\]"):
        render_v1(Chain(4, (("+", 1), ("+", 1))), [1, 2, 3], "pens", long_form=[True])


def test_arith_v1_swaps_commutative_operands_at_random():
    import re

    from dllm_gym.tasks.arith import Chain
    from dllm_gym.tasks.arith_v1 import ArithV1Task, render_v1

    chain = Chain(1, (("+", 3), ("*", 2), ("-", 2)))
    plain = render_v1(chain, [1, 2, 3, 4], "pens")
    swapped = render_v1(chain, [1, 2, 3, 4], "pens", swapped=[True, True, False])
    assert plain.solution == (
        "Box 1 has 1. Box 2 has 1 + 3 = 4. Box 3 has 4 * 2 = 8. Box 4 has 8 - 2 = 6.\n#### 6"
    )
    assert "Box 2 has 3 + 1 = 4. Box 3 has 2 * 4 = 8. Box 4 has 8 - 2 = 6." in swapped.solution
    assert plain.reference == swapped.reference == "6"
    task = ArithV1Task()
    forms = {"value first": 0, "operand first": 0}
    for index in range(200):
        solution = task.problem("test", index).solution
        value = solution.split()[3].rstrip(".")  # the known count
        for left, op, right, result in re.findall(r"has (\d) ([-+*]) (\d) = (\d)", solution):
            if op in {"+", "*"} and left != right:
                forms["value first" if left == value else "operand first"] += 1
            value = result
    share = forms["operand first"] / sum(forms.values())
    assert 0.35 < share < 0.65, forms


def test_arith_v1_vocabulary_extends_v0s_and_covers_every_problem():
    from dllm_gym.models.tokenizer import build_word_tokenizer
    from dllm_gym.tasks import arith, arith_v1

    v0, v1 = build_word_tokenizer(arith.vocabulary()), build_word_tokenizer(arith_v1.vocabulary())
    assert len(v1) == len(v0) + len(arith_v1.QUESTION_WORDS)
    assert all(v1.get_vocab()[word] == i for word, i in v0.get_vocab().items())
    task = arith_v1.ArithV1Task()
    for index in range(50):
        problem = task.problem("train", index)
        ids = v1(problem.question + " " + problem.solution)["input_ids"]
        assert v1.unk_token_id not in ids


def test_arith_v1_splits_are_disjoint_in_their_numbers():
    from dllm_gym.tasks.arith_v1 import ArithV1Task

    task = ArithV1Task()
    chains = {split: {task.chain(split, i)[0] for i in range(300)} for split in ("train", "test")}
    assert not chains["train"] & chains["test"]
