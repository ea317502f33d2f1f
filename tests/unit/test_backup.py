"""Backup and restore on real trees: the manifest built while copying, its check (truncated, tampered,
missing, unlisted file, a lost hard link), and a restore that keeps hard links and changes nothing when the
backup is bad."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path

import pytest

from appliance.backup import manifest as bm
from appliance.backup.progress import Progress
from appliance.backup.restore import Refused, check, restore
from appliance.backup.take import take_backup
from appliance.config import load_config
from appliance.images.catalog import Catalog
from appliance.images.versions import verify
from state.backup import CURRENT_SCHEMA
from state.db import connect, db_path
from state.statelock import acquire


def write_config(path: Path, state_dir: Path) -> Path:
    path.write_text(f'[appliance]\nstate_dir = "{state_dir}"\n')
    return path


def make_state(root: Path) -> tuple[Path, Path]:
    """A state dir with a host, a token, and image `web` in two versions sharing unchanged files."""
    state_dir = root / "state"
    conn = connect(db_path(state_dir))
    conn.execute("INSERT INTO reservations (mac, ip, hostname, created) "
                 "VALUES ('52:54:00:00:00:01', 167772170, 'a', 1.0)")
    conn.close()
    (state_dir / "admin.token").write_text("secret\n")
    os.chmod(state_dir / "admin.token", 0o600)
    (state_dir / "scripts").mkdir()
    (state_dir / "scripts/web.master").write_text("#!/bin/sh\n")
    catalog = Catalog(state_dir)
    staged = catalog.new_staging("web")
    (staged / "etc").mkdir()
    (staged / "etc/motd").write_text("one\n")
    (staged / "bin").mkdir()
    (staged / "bin/tool").write_bytes(b"\x7fELF" + bytes(5000))
    os.symlink("../etc/motd", staged / "bin/motd")
    os.mkfifo(staged / "fifo")
    with open(staged / "disk.img", "wb") as f:  # sparse: 8 MiB with 1 byte of data
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"x")
    (staged / os.fsdecode(b"caf\xe9")).write_text("not utf-8 name")
    os.setxattr(staged / "etc/motd", "user.tag", b"x")
    os.chown(staged / "bin/tool", 1234, 5678)
    v1 = catalog.register("web", staged, source="test", layout_json=None)
    staged = catalog.new_staging("web")
    os.system(f"cp -a --link {v1.path}/. {staged}/")  # v2 shares every file with v1 ...
    os.unlink(staged / "etc/motd")
    (staged / "etc/motd").write_text("two\n")  # ... but this one
    catalog.register("web", staged, source="test", layout_json=None, previous=v1)
    # Work in flight that a backup leaves out.
    (state_dir / "images/.work/web-edit").mkdir(parents=True)
    catalog.close()
    config = write_config(root / "imageserver.toml", state_dir)
    return state_dir, config


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[Path, Path, Path]:
    state_dir, config = make_state(tmp_path / "old")
    take_backup(load_config(config), tmp_path / "backup")
    return state_dir, config, tmp_path / "backup"


def test_backup_lists_every_file_with_links_and_leaves_work_in_flight_out(backed_up: tuple[Path, Path, Path]) -> None:
    _, _, backup = backed_up
    assert sorted(os.listdir(backup)) == ["config", "manifest.json", "state"]
    m = bm.load(backup)
    paths = {e.path for e in m.files}
    assert {"state/imageserver.db", "state/admin.token", "state/scripts/web.master", "config/imageserver.toml",
            "state/images/web/v1/bin/tool", "state/images/web/v2/bin/tool",
            "state/images/web/v1.manifest.gz"} <= paths
    assert not any(".work" in p or "imageserver.lock" in p for p in paths)
    assert m.schema_version == CURRENT_SCHEMA
    assert [(i.name, i.version) for i in m.images] == [("web", 1), ("web", 2)]
    assert ["state/images/web/v1/bin/tool", "state/images/web/v2/bin/tool"] in m.links
    assert not any("etc/motd" in p for group in m.links for p in group)  # v2 changed it: no longer shared
    token = next(e for e in m.files if e.path == "state/admin.token")
    assert token.mode == 0o600 and token.sha256 is not None
    st1 = os.stat(backup / "state/images/web/v1/bin/tool")
    assert st1.st_ino == os.stat(backup / "state/images/web/v2/bin/tool").st_ino
    assert (st1.st_uid, st1.st_gid) == (1234, 5678)
    check(backup)  # whole as written


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: os.truncate(b / "state/images/web/v1/etc/motd", 1), "state/images/web/v1/etc/motd: 1 bytes"),
    (lambda b: (b / "state/admin.token").write_text("forged\n"), "state/admin.token: content differs"),
    (lambda b: os.unlink(b / "state/scripts/web.master"), "state/scripts/web.master: missing"),
    (lambda b: (b / "state/scripts/extra").write_text("x"), "state/scripts/extra: not in the manifest"),
    (lambda b: os.chmod(b / "state/admin.token", 0o644), "state/admin.token: mode 0644"),
    (lambda b: os.unlink(b / "manifest.json"), "no manifest.json"),
])
def test_a_damaged_backup_is_refused_naming_the_first_bad_file(backed_up: tuple[Path, Path, Path], damage, message,
                                                                tmp_path: Path) -> None:
    _, _, backup = backed_up
    damage(backup)
    with pytest.raises(bm.BackupError, match=message):
        check(backup)
    # And restore changes nothing: the target stays absent, no config is written.
    config = write_config(tmp_path / "new.toml", tmp_path / "new-state")
    with pytest.raises(bm.BackupError, match=message):
        restore(backup, config)
    assert not (tmp_path / "new-state").exists()
    assert [p.name for p in tmp_path.iterdir() if "new-state" in p.name] == []


def test_a_lost_hard_link_is_refused(backed_up: tuple[Path, Path, Path]) -> None:
    _, _, backup = backed_up
    copy = backup / "state/images/web/v2/bin/tool"
    data = copy.read_bytes()
    st = os.stat(copy)
    copy.unlink()
    copy.write_bytes(data)  # same content, size and mode: only the link is gone
    os.chmod(copy, st.st_mode & 0o7777)
    with pytest.raises(bm.BackupError, match="v2/bin/tool: no longer a hard link of state/images/web/v1/bin/tool"):
        check(backup)


def test_a_newer_schema_is_refused(backed_up: tuple[Path, Path, Path]) -> None:
    _, _, backup = backed_up
    doc = json.loads((backup / "manifest.json").read_text())
    doc["schema_version"] = CURRENT_SCHEMA + 1
    (backup / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(bm.BackupError, match="newer than this imageserver knows"):
        check(backup)


def test_restore_into_another_state_dir_keeps_links_owners_modes_and_rehomes_images(
        backed_up: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old_state, _, backup = backed_up
    new_state = tmp_path / "box2" / "state"
    config = write_config(tmp_path / "box2.toml", new_state)
    summary = restore(backup, config)
    assert summary.versions == 2 and summary.images == 1 and summary.config == f"kept {config}"
    a, b = new_state / "images/web/v1/bin/tool", new_state / "images/web/v2/bin/tool"
    assert os.stat(a).st_ino == os.stat(b).st_ino and os.stat(a).st_nlink == 2
    # cp --link (like rsync -H) shares the FIFO too: still one inode.
    assert os.lstat(new_state / "images/web/v1/fifo").st_ino == os.lstat(new_state / "images/web/v2/fifo").st_ino
    assert (os.stat(a).st_uid, os.stat(a).st_gid) == (1234, 5678)
    assert oct(os.stat(new_state / "admin.token").st_mode & 0o7777) == "0o600"
    assert oct(os.stat(new_state).st_mode & 0o7777) == "0o700"
    assert os.readlink(new_state / "images/web/v1/bin/motd") == "../etc/motd"
    assert os.getxattr(new_state / "images/web/v1/etc/motd", "user.tag") == b"x"
    assert (new_state / "images/web/v2/etc/motd").read_text() == "two\n"
    sparse = os.stat(new_state / "images/web/v1/disk.img")
    assert sparse.st_size == 8 << 20 and sparse.st_blocks * 512 <= 2 << 20  # holes kept (one 1 MiB chunk written)
    with sqlite3.connect(new_state / "imageserver.db") as conn:
        paths = [r[0] for r in conn.execute("SELECT path FROM images ORDER BY version")]
        assert conn.execute("SELECT hostname FROM reservations").fetchall() == [("a",)]
    assert paths == [str(new_state / "images/web/v1"), str(new_state / "images/web/v2")]
    # The restored versions still match the manifests they were registered with.
    catalog = Catalog(new_state)
    assert verify(catalog, "web", 1) == [] and verify(catalog, "web", 2) == []
    catalog.close()
    assert old_state.exists()


def test_restore_writes_the_backed_up_config_only_where_there_is_none(backed_up: tuple[Path, Path, Path],
                                                                       tmp_path: Path) -> None:
    old_state, config, backup = backed_up
    os.rename(old_state, tmp_path / "elsewhere")  # the old box is gone
    config.unlink()
    summary = restore(backup, config)
    assert summary.config == f"written {config}" and summary.state_dir == str(old_state)
    assert load_config(config).state_dir == old_state and (old_state / "imageserver.db").exists()


def test_restore_refuses_a_state_dir_in_use_or_not_empty_and_force_moves_it_aside(
        backed_up: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old_state, config, backup = backed_up
    with acquire(old_state, "serve"), pytest.raises(Refused, match=r"in use by pid=\d+ role=serve"):
        restore(backup, config, force=True)
    with pytest.raises(Refused, match="not empty"):
        restore(backup, config)
    (old_state / "marker").write_text("old")
    summary = restore(backup, config, force=True)
    assert summary.moved_aside is not None
    assert (Path(summary.moved_aside) / "marker").read_text() == "old"
    assert not (old_state / "marker").exists() and (old_state / "imageserver.db").exists()


def test_backup_refuses_a_non_empty_directory_and_replaces_a_stale_partial(tmp_path: Path) -> None:
    _, config = make_state(tmp_path / "old")
    cfg = load_config(config)
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("x")
    with pytest.raises(bm.BackupError, match="is not empty"):
        take_backup(cfg, tmp_path / "full")
    (tmp_path / "b/.partial/state").mkdir(parents=True)  # a backup that was killed
    summary = take_backup(cfg, tmp_path / "b")
    assert not (tmp_path / "b/.partial").exists() and summary.versions == 2
    check(tmp_path / "b")


def test_progress_is_one_line_rewritten_on_a_terminal_and_silent_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    p = Progress(stream=out)
    p.start("restore", 2048)
    p.bytes(2048)
    p.end()
    assert out.getvalue().startswith("\rrestore:   0%") and "100%  2.0 KiB of 2.0 KiB" in out.getvalue()
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1
    quiet = io.StringIO()
    p = Progress(stream=quiet)
    p.start("backup")
    p.bytes(10)
    p.end()
    assert quiet.getvalue() == ""
