"""What every command of the command line shares: the registry, the two errors, the argument types.

A subcommand is a pair of small functions, one adding its arguments to a parser and one running
it with the parsed arguments and returning the exit status, registered with :func:`command`.
A run function raises :class:`UsageError` for a bad combination of arguments (exit status 2) and
:class:`CommandError` for a failure the user can fix (exit status 1); both are reported as one
line, ``whitebox: error: ...``, without a traceback.
"""

from __future__ import annotations

import argparse
import ast
import math
from dataclasses import dataclass
from typing import Callable

PROG = "whitebox"
DEVICES = ("cpu", "gpu")


class UsageError(Exception):
    """Arguments that do not make sense together; reported as a usage error (exit status 2)."""


class CommandError(Exception):
    """A failure the user can fix (missing data, no GPU, an existing run ...): one line, exit status 1."""


@dataclass(frozen=True)
class Command:
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated ``run(args) -> int`` as subcommand ``name``."""
    def register(run):
        COMMANDS[name] = Command(help, description, add_arguments, run)
        return run

    return register


def _number(kind, minimum, *, strict: bool, below: float | None = None):
    condition = f"{'>' if strict else '>='} {minimum}" + (f" and < {below}" if below is not None else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} "
                                             f"{condition}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number {condition}, got {text}")
        if not ((value > minimum if strict else value >= minimum) and (below is None or value < below)):
            raise argparse.ArgumentTypeError(f"must be {condition}, got {text}")
        return value

    return parse


positive_int = _number(int, 0, strict=True)
nonnegative_int = _number(int, 0, strict=False)
positive_float = _number(float, 0, strict=True)
nonnegative_float = _number(float, 0, strict=False)
fraction = _number(float, 0, strict=False, below=1)


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a Python literal when it is one (``dim=128``, ``pool=mean``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def add_device_argument(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--device", choices=DEVICES, help=f"cpu (NumPy) or gpu (CuPy); default: {default}")


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
