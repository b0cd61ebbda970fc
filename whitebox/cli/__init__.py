"""The ``whitebox`` command line: one subcommand per task, registered in :data:`COMMANDS`.

==============  =============================================================================
``common``      the registry, :class:`UsageError` / :class:`CommandError`, argument types
``train``       ``train``, ``eval``, ``reconstruct``, ``sample`` (:mod:`whitebox.train`)
``inside``      ``measure``, ``attention``, ``experiment`` (:mod:`whitebox.analysis`)
``weights``     ``convert`` (:mod:`whitebox.weights`), and the model options of ``eval --weights``
``segment``     ``segment``: MaskCut and cls-attention masks of a checkpoint, scored by mIoU
==============  =============================================================================

One error path: every expected failure (a bad argument, a missing or corrupt checkpoint, data
that fails its checksum, a folder that cannot be written, a device that does not exist ...)
prints one line, ``whitebox: error: ...``, naming what is wrong and what to do, and exits with a
non-zero status (2 for usage, 1 otherwise, 130 after Ctrl-C). Anything else is a bug: its
traceback is printed with a request to report it. This package is the only importer of argparse.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from ..backend import DeviceUnavailableError, resolve_device
from ..data import DatasetNotFoundError
from ..data.checksums import ChecksumError
from ..data.text import TextNotFoundError
from ..distributed import DistributedError
from ..train import CheckpointError, ConfigError, NoCheckpointError, RunExistsError, RunFolderError
from . import train  # noqa: F401  (registers train, eval, reconstruct, sample)
from . import inside  # noqa: F401,I001  (then measure, attention, experiment)
from . import weights  # noqa: F401,I001  (convert)
from . import segment  # noqa: F401,I001  (segment)
from .common import COMMANDS, PROG, CommandError, UsageError, command
from .train import INTERRUPTED

BUG = 70  # EX_SOFTWARE: an internal error
# the failures a user can fix, reported as one line (their messages name the file, argument or device)
EXPECTED = (CommandError, ConfigError, CheckpointError, NoCheckpointError, RunExistsError, RunFolderError,
            DeviceUnavailableError, DatasetNotFoundError, TextNotFoundError, ChecksumError, DistributedError, OSError)


class Parser(argparse.ArgumentParser):
    """argparse, reporting an argument error as one line (``whitebox: error: ...``) with status 2."""

    def error(self, message: str):
        command = self.prog[len(PROG):].strip()
        hint = f" (see: {PROG} {command + ' ' if command else ''}--help)"
        self.exit(2, f"{PROG}: error: {message}{hint}\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The top-level parser and its subparsers by name."""
    parser = Parser(prog=PROG, description="White-box transformers (CRATE, CRATE-alpha) in NumPy/CuPy.",
                    epilog=f"run '{PROG} COMMAND --help' for the options of a command")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    subparsers = {}
    for name, cmd in COMMANDS.items():
        sub = commands.add_parser(name, help=cmd.help, description=cmd.description,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(sub)
        subparsers[name] = sub
    return parser, subparsers


def error(message: str, status: int = 1) -> int:
    """Print ``whitebox: error: message`` as one line on standard error; return ``status``."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit status."""
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    try:
        resolve_device(getattr(args, "device", None))  # a bad $WHITEBOX_DEVICE, before any work
    except ValueError as e:
        return error(e, 2)
    try:
        return COMMANDS[args.command].run(args)
    except UsageError as e:
        return error(e, 2)
    except EXPECTED as e:
        return error(e)
    except KeyboardInterrupt:
        return error("interrupted", INTERRUPTED)
    except Exception:
        traceback.print_exc()
        return error(f"this is a bug in whitebox, not in your input: please report it with the traceback above "
                     f"and the command line ({PROG} {' '.join(sys.argv[1:] if argv is None else argv)})", BUG)


__all__ = ["COMMANDS", "EXPECTED", "CommandError", "UsageError", "build_parser", "command", "error", "main"]
