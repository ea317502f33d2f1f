"""The longest-first order of the test files (tests/scheduling.py) that `make test`'s xdist workers get."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.scheduling import FILE_SECONDS, longest_first, order_of_files

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Item:
    nodeid: str


def test_every_hint_names_a_test_file_of_the_suite() -> None:
    """A renamed or removed file would otherwise lose its place silently."""
    missing = [name for name in FILE_SECONDS if not (REPO / name).is_file()]
    assert missing == []


def test_listed_files_go_first_longest_first_and_the_rest_keep_their_order() -> None:
    by_seconds = sorted(FILE_SECONDS, key=FILE_SECONDS.__getitem__)
    short, long, longest = by_seconds[0], by_seconds[-2], by_seconds[-1]
    items = [Item("tests/unit/test_a.py::t1"), Item(f"{short}::s1"), Item("tests/unit/test_a.py::t2"),
             Item(f"{longest}::x1"), Item("tests/system/test_b.py::t1"), Item(f"{long}::l1"), Item(f"{longest}::x2")]
    longest_first(items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == [
        f"{longest}::x1", f"{longest}::x2", f"{long}::l1", f"{short}::s1",
        "tests/unit/test_a.py::t1", "tests/unit/test_a.py::t2", "tests/system/test_b.py::t1"]
    assert order_of_files(items) == [longest, long, short, "tests/unit/test_a.py", "tests/system/test_b.py"]
