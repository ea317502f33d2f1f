"""What getimage asks rsync to do: the preserving flags, the transport, link-dest and the exclude file."""

from __future__ import annotations

from pathlib import Path

from appliance.images.getimage import Options, Source, pull_argv


def test_daemon_pull_preserves_everything_and_links_to_the_previous_version() -> None:
    opts = Options(name="web", source=Source("10.0.0.5", port=8873), bwlimit=500)
    argv = pull_argv(opts, Path("/s/images/.staging/web.1"), Path("/s/x.excludes"), Path("/s/images/web/v3"))
    assert argv[:5] == ["rsync", "-aHAXS", "--numeric-ids", "--devices", "--specials"]
    assert "--info=progress2" in argv and "--exclude-from=/s/x.excludes" in argv and "--contimeout=20" in argv
    assert "--link-dest=/s/images/web/v3" in argv and "--bwlimit=500" in argv
    assert argv[-2:] == ["rsync://10.0.0.5:8873/root/", "/s/images/.staging/web.1/"]


def test_ssh_pull_is_non_interactive_without_a_terminal() -> None:
    src = Source("master.example", ssh=True)
    assert src.url("/") == "root@master.example:/"
    assert src.url("/etc/systemimager/") == "root@master.example:/etc/systemimager/"
    assert src.transport_args(interactive=False) == ["-e", "ssh -o BatchMode=yes"]
    assert src.transport_args(interactive=True) == ["-e", "ssh"]
    assert src.describe() == "ssh://root@master.example"
    assert Source("fd00::5").url("/") == "rsync://[fd00::5]:873/root/"
