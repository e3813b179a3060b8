import pytest

from dllm_gym.tasks.answers import answers_match, extract_answer, normalize_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 3 + 4 = 7 apples.\n#### 7", "7"),
        ("#### 1,234", "1234"),
        ("so the total is $18.\n#### $18.", "18"),
        ("#### -5", "-5"),
        ("#### 3.50", "3.5"),
        ("#### 12 and then 40 more", "12"),  # the number right after ####, not the last one
        ("first #### 4 then #### 9", "4"),  # the first answer line, as GSM8K evaluation does
        ("The answer is \\boxed{42}.", "42"),
        ("\\boxed{1} was wrong; the answer is \\boxed{2,000}", "2000"),  # last box
        ("\\boxed{\\$5}", "5"),
        ("#### \\boxed{7}", "7"),  # #### without a number falls back to the box
        ("#### none, but 3 then 8.", "8"),  # nor a box: the last number
        ("It costs $1,000,000.", "1000000"),
        ("We get 2.5 then 10.", "10"),
        ("12 apples plus 0.75", "0.75"),
        ("no number here", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,234", "1234"),
        ("$18.", "18"),
        ("18.0", "18"),
        ("+7", "7"),
        ("-0.50", "-0.5"),
        ("abc", None),
        # Longer than decimal's default 28 digits (a model's run of digits): every digit kept.
        ("1" * 40, "1" * 40),
        ("1" * 35 + "0" * 5 + ".000", "1" * 35 + "0" * 5),
        ("12345678901234567890123456789.25", "12345678901234567890123456789.25"),
    ],
)
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def test_answers_match_is_numeric():
    assert answers_match("18.0", "18")
    assert answers_match("1,000", "1000")
    assert answers_match("3.50", "3.5")
    assert not answers_match("17", "18")
    assert not answers_match(None, "18")
    assert not answers_match("18", "eighteen")
