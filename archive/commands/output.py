"""What the commands print more than once."""

from __future__ import annotations

from collections.abc import Sequence


def print_top(rows: Sequence[dict], indent: str = "  ") -> None:
    """A prediction as a table: rank, probability, class."""
    print(f"{indent}{'rank':>4}  {'probability':>11}  class")
    for rank, row in enumerate(rows, start=1):
        print(f"{indent}{rank:>4}  {row['probability']:>11.6f}  {row['class']}")
