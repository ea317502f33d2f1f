"""Files of the installed system that hold a secret are root's alone: updateclient.conf (the host's
update token) is 0600 even when the image already had one readable by all. (A umask set inside
"( ... ) >FILE" came too late: the shell had opened FILE, so the token was world-readable.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.installer_sh import prelude


def test_updateclient_conf_with_the_token_is_0600_also_over_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "etc/systemimager").mkdir(parents=True)
    conf = target / "etc/systemimager/updateclient.conf"
    conf.write_text("IMAGESERVER=http://192.0.2.1\n")  # the master's, readable by all
    os.chmod(conf, 0o644)
    script = prelude("common", "report", "system") + "setup_updateclient\n"
    # Port 9 on loopback: nothing answers, so fetching updateclient fails (best effort) at once.
    run = subprocess.run(["sh", "-euc", script], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "TARGET": str(target), "IMAGESERVER_URL": "http://127.0.0.1:9",
                              "HOSTNAME": "node1", "UPDATE_TOKEN": "s3cret-token"})
    assert run.returncode == 0, run.stderr
    assert "TOKEN=s3cret-token" in conf.read_text()
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    assert not list(conf.parent.glob("*.new"))
