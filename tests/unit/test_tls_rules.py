"""Issue 24, TLS: the fingerprint's spellings, the self-signed certificate, the [https] and [satellite] keys,
and the workstation CLI's rules (token file mode, server URL, pin on first use, --server only where the
daemon is asked). The wire behaviour is tests/system/test_security_tls.py's."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from appliance import tls
from appliance.backup.restore import restore
from appliance.backup.take import take_backup
from appliance.cli import remote
from appliance.cli.apiclient import CertificateRefused, check_pin, read_pins
from appliance.cli.exitcodes import USAGE, CommandFailed
from appliance.config import ConfigError, load_config, parse_config
from protocols import fingerprint
from state.db import connect, db_path

GOOD = "25:BE:60:58:A5:0A:BD:BC:A7:09:38:E6:66:FF:0A:C5:36:9A:95:34:7B:88:71:A0:BE:2E:ED:32:C9:8D:5B:DC"


@pytest.mark.parametrize("spelling", [GOOD, GOOD.lower(), GOOD.replace(":", ""), f"sha256:{GOOD}",
                                      f"SHA256 Fingerprint={GOOD}", f"  {GOOD.lower().replace(':', '')}  "])
def test_a_fingerprint_is_read_in_any_usual_spelling_and_written_as_openssl_does(spelling: str) -> None:
    assert fingerprint.parse(spelling) == GOOD
    assert fingerprint.digest(spelling) == bytes.fromhex(GOOD.replace(":", ""))


@pytest.mark.parametrize("bad", ["", "AB:CD", GOOD + ":00", "zz" * 32, "md5:" + GOOD])
def test_what_is_no_sha256_fingerprint_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        fingerprint.parse(bad)


def test_fingerprint_of_der_is_its_sha256() -> None:
    assert fingerprint.fingerprint(b"cert") == fingerprint.spell(hashlib.sha256(b"cert").digest())


def test_the_self_signed_pair_is_made_once_key_0600_and_its_fingerprint_is_the_file_s(tmp_path: Path) -> None:
    cfg = parse_config({"appliance": {"state_dir": str(tmp_path / "state"), "address": "10.0.0.1"},
                        "https": {"enabled": True}})
    made = tls.ensure(cfg)
    assert made.made and made.cert == tmp_path / "state/tls/cert.pem"
    assert made.key.stat().st_mode & 0o777 == 0o600
    assert made.fingerprint == tls.file_fingerprint(made.cert)
    tls.server_context(made)  # loads
    again = tls.ensure(cfg)
    assert not again.made and again.fingerprint == made.fingerprint


def test_https_and_satellite_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"https\.cert"):
        tls.ensure(parse_config({"https": {"enabled": True, "cert": "/nonexistent/c.pem"}}))
    with pytest.raises(ConfigError, match=r"satellite\.primary_fingerprint"):
        parse_config({"satellite": {"primary": "http://10.0.0.1", "primary_fingerprint": GOOD}})
    with pytest.raises(ConfigError, match=r"satellite\.primary_fingerprint"):
        parse_config({"satellite": {"primary": "https://10.0.0.1", "primary_fingerprint": "AB:CD"}})
    with pytest.raises(ConfigError, match=r"https\.enabled"):
        parse_config({"http": {"enabled": False}, "https": {"enabled": True}})
    with pytest.raises(ConfigError, match=r"https\.port"):
        parse_config({"http": {"port": 8080}, "https": {"enabled": True, "port": 8080}})
    cfg = parse_config({"satellite": {"primary": "https://10.0.0.1", "primary_fingerprint": GOOD.lower()}})
    assert cfg.satellite.primary_fingerprint == GOOD
    assert parse_config({}).http.loopback_tokens is True and parse_config({}).https.enabled is False


def test_a_token_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    assert remote.file_token(path) is None
    path.write_text("ist-secret\n")
    path.chmod(0o640)
    with pytest.raises(CommandFailed, match="chmod 600") as e:
        remote.file_token(path)
    assert e.value.code == USAGE
    path.chmod(0o600)
    assert remote.file_token(path) == "ist-secret"


def test_server_urls() -> None:
    assert remote.server_url("imageserver.lab:8443/") == "https://imageserver.lab:8443"
    assert remote.server_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    for bad in ("ftp://x", "https://", "https://h:99999"):
        with pytest.raises(CommandFailed):
            remote.server_url(bad)


def test_the_first_connection_pins_and_a_changed_certificate_is_refused_naming_both(tmp_path: Path) -> None:
    known = tmp_path / "imageserver/known_servers"
    other = GOOD.replace("25", "26", 1)
    check_pin(known, "10.0.0.1:443", GOOD)
    assert read_pins(known) == {"10.0.0.1:443": GOOD} and known.stat().st_mode & 0o777 == 0o600
    check_pin(known, "10.0.0.1:443", GOOD)
    with pytest.raises(CertificateRefused) as e:
        check_pin(known, "10.0.0.1:443", other)
    assert GOOD in str(e.value) and other in str(e.value) and str(known) in str(e.value)
    check_pin(known, "10.0.0.2:443", other)  # another server, its own pin
    assert len(read_pins(known)) == 2


def test_server_goes_only_with_the_commands_that_ask_the_daemon(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("IMAGESERVER_URL", raising=False)
    monkeypatch.setenv("IMAGESERVER_TOKEN", "ist-x")
    with pytest.raises(CommandFailed, match="works on the appliance itself"):
        remote.select("https://10.0.0.1", None, "getimage")
    chosen = remote.select("https://10.0.0.1:8443", None, "hosts")
    assert chosen is not None and chosen.remote and chosen.token == "ist-x" and remote.selected() is chosen
    assert chosen.trust is not None and chosen.trust.known_servers == tmp_path / "imageserver/known_servers"
    monkeypatch.setenv("IMAGESERVER_URL", "https://10.0.0.1")
    assert remote.select(None, None, "serve") is None  # the variable is for the commands that ask the daemon
    assert remote.select(None, None, "status") is not None
    assert remote.select(None, None, None) is None  # no command: the help
    monkeypatch.delenv("IMAGESERVER_URL")
    assert remote.select(None, None, "status") is None and remote.selected() is None


def test_the_certificate_init_made_beside_the_config_is_backed_up_and_restored_with_it(tmp_path: Path) -> None:
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    connect(db_path(state)).close()
    config = etc / "imageserver.toml"
    config.write_text(f'[appliance]\nstate_dir = "{state}"\n[https]\nenabled = true\n'
                      f'cert = "{etc}/tls/cert.pem"\nkey = "{etc}/tls/key.pem"\n')
    made = tls.ensure(load_config(config), make=True)
    take_backup(load_config(config), tmp_path / "backup")
    os.rename(state, tmp_path / "gone")  # a new box: no config, no state
    shutil.rmtree(etc)
    restore(tmp_path / "backup", config)
    assert tls.ensure(load_config(config)).fingerprint == made.fingerprint  # the pins on workstations still hold
    assert (etc / "tls/key.pem").stat().st_mode & 0o777 == 0o600 and (etc / "tls").stat().st_mode & 0o777 == 0o700
