"""Listening sockets read from /proc: only LISTEN rows count, and only the process's own sockets."""

from __future__ import annotations

import os
import socket

from services.procnet import listening_sockets, listens

TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0369 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0
   2: 0100007F:A1B2 0100007F:0369 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0
"""


def test_listen_rows_give_their_ports_and_inodes_and_established_ones_do_not() -> None:
    assert listening_sockets(TABLE) == {0x369: {1001}, 0x1F90: {1002}}
    assert listening_sockets("header only\n") == {}


def test_a_process_listens_once_its_socket_is_in_listen() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not listens(os.getpid(), port)  # bound, not yet listening
        s.listen()
        assert listens(os.getpid(), port)
        assert not listens(1, port)  # another process's sockets are not ours
