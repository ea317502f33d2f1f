"""rsync --info=progress2 lines, split on carriage returns."""

from __future__ import annotations

from appliance.images.progress import LineSplitter, parse_progress


def test_progress2_lines() -> None:
    p = parse_progress("      1,238,099 100%  146.38MB/s    0:00:00 (xfr#5, to-chk=0/7)")
    assert p is not None
    assert (p.bytes, p.percent, p.rate, p.transferred, p.checked, p.total, p.final_total) == \
        (1238099, 100, "146.38MB/s", 5, 7, 7, True)
    p = parse_progress("         32,768   0%    0.00kB/s    0:00:00 (xfr#0, ir-chk=1000/1012)")
    assert p is not None and p.checked == 12 and p.total == 1012 and not p.final_total
    assert "files 12/1,012+" in p.render()
    p = parse_progress("  2,000   3%  1.00MB/s    0:01:40")
    assert p is not None and p.total is None
    assert parse_progress("receiving incremental file list") is None


def test_splitter_handles_carriage_returns_and_partial_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b"  1 0%  1kB/s 0:00:01\r  2 5") == ["  1 0%  1kB/s 0:00:01"]
    assert s.feed(b"0%  1kB/s 0:00:01\r\n") == ["  2 50%  1kB/s 0:00:01"]
    assert s.feed(b"tail") == []
    assert s.flush() == ["tail"]
