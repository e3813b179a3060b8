'''Command-line flags from a dataclass of hyperparameters, as CleanRL's scripts have them.

Each field becomes ``--field-name`` with the field's type and default; its help is the
field's ``metadata["help"]`` or, CleanRL style, the string literal written under the field::

    @dataclass
    class Args:
        learning_rate: float = 3e-4
        """AdamW peak learning rate"""

    args = parse_dataclass(Args)  # python train.py --learning-rate 1e-4

Booleans get ``--flag / --no-flag``; a tuple default takes one or more values
(``--gen-lengths 48 96``). Fields with a ``default_factory`` (free-form dicts) are not flags.
A ``ValueError`` from the dataclass's own validation is reported as a usage error.
'''

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def field_docstrings(cls: type) -> dict[str, str]:
    """The string literal written under each field of ``cls`` (where its source is found)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()
) -> None:
    """One flag per field of the dataclass ``cls`` (but those in ``skip``)."""
    docs = field_docstrings(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata.get("help") or docs.get(f.name, "")
        if isinstance(f.default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=text
            )
        elif isinstance(f.default, tuple):
            kind = type(f.default[0]) if f.default else str
            parser.add_argument(
                flag, type=kind, nargs="+", default=list(f.default),
                help=f"{text} (default: {' '.join(map(str, f.default))})",
            )  # fmt: skip
        else:
            parser.add_argument(
                flag, type=type(f.default), default=f.default,
                help=f"{text} (default: {f.default})",
            )  # fmt: skip


def dataclass_from_namespace(cls: type[T], namespace: argparse.Namespace) -> T:
    """An instance of ``cls`` from the parsed flags (tuple fields given back as tuples)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if hasattr(namespace, f.name):
            value = getattr(namespace, f.name)
            values[f.name] = tuple(value) if isinstance(f.default, tuple) else value
    return cls(**values)


def parse_dataclass(
    cls: type[T], argv: Sequence[str] | None = None, description: str | None = None
) -> T:
    """Parse ``argv`` (default: the command line) into an instance of the dataclass ``cls``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_dataclass_arguments(parser, cls)
    namespace = parser.parse_args(argv)
    try:
        return dataclass_from_namespace(cls, namespace)
    except ValueError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits
