"""Answer extraction and scoring shared by GSM8K-shaped tasks.

Extraction follows the usual GSM8K evaluation: the number after ``####``, else the number in
the last ``\\boxed{...}``, else the last number in the text. Thousands separators (``,``),
dollar signs and a trailing period are ignored; answers are compared as numbers, so ``3.50``
matches ``3.5`` and ``18.0`` matches ``18``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext

_NUMBER = r"[-+]?\$?\s?\d[\d,]*(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_HASHES_RE = re.compile(r"####\s*(" + _NUMBER + r")")
_BOXED_RE = re.compile(r"\\boxed\{\s*(?:\\\$)?\s*(" + _NUMBER + r")\s*\}")


def normalize_number(text: str) -> str | None:
    """Return ``text`` as a canonical number string (``"1,234.50$"`` -> ``"1234.5"``), or None."""
    cleaned = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    if cleaned.startswith("+"):
        cleaned = cleaned[1:]
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    with localcontext() as context:  # every digit kept, however long the number
        context.prec = max(28, len(cleaned) + 2)
        value = value.normalize()
        if value == value.to_integral_value():
            value = value.quantize(Decimal(1))
    return format(value, "f")


def extract_answer(text: str) -> str | None:
    """Extract the final numeric answer from generated text, or None when there is none."""
    for pattern in (_HASHES_RE, _BOXED_RE):
        matches = pattern.findall(text)
        if matches:
            number = normalize_number(matches[-1] if pattern is _BOXED_RE else matches[0])
            if number is not None:
                return number
    numbers = _NUMBER_RE.findall(text)
    for candidate in reversed(numbers):
        number = normalize_number(candidate)
        if number is not None:
            return number
    return None


def answers_match(predicted: str | None, reference: str) -> bool:
    """Numeric comparison of an extracted answer with the reference answer."""
    if predicted is None:
        return False
    left, right = normalize_number(predicted), normalize_number(reference)
    return left is not None and left == right
