"""RFC 2347/2348/2349/7440 negotiation: the decision table of protocols/tftp/options.py."""

import pytest

from protocols.tftp import negotiate

SIZE = 123_456


@pytest.mark.parametrize(
    "requested, acknowledged, blksize, windowsize",
    [
        ({}, {}, 512, 1),
        ({"blksize": "1468"}, {"blksize": "1468"}, 1468, 1),
        ({"blksize": "8"}, {"blksize": "8"}, 8, 1),
        ({"blksize": "65464"}, {"blksize": "65464"}, 65464, 1),
        ({"blksize": "65465"}, {"blksize": "65464"}, 65464, 1),  # server may answer smaller
        ({"blksize": "7"}, {}, 512, 1),  # never an OACK below 8
        ({"blksize": "0"}, {}, 512, 1),
        ({"blksize": "abc"}, {}, 512, 1),
        ({"blksize": "-512"}, {}, 512, 1),
        ({"blksize": " 512"}, {}, 512, 1),
        ({"blksize": ""}, {}, 512, 1),
        ({"blksize": "1e3"}, {}, 512, 1),
        ({"blksize": "\u0661\u0662\u0663"}, {}, 512, 1),  # Arabic-Indic digits are not ASCII
        ({"blksize": "9" * 11}, {}, 512, 1),
        ({"windowsize": "16"}, {"windowsize": "16"}, 512, 16),
        ({"windowsize": "1"}, {"windowsize": "1"}, 512, 1),
        ({"windowsize": "0"}, {}, 512, 1),
        ({"windowsize": "65536"}, {}, 512, 1),
        ({"windowsize": "many"}, {}, 512, 1),
        ({"timeout": "0"}, {}, 512, 1),
        ({"timeout": "256"}, {}, 512, 1),
        ({"tsize": "abc"}, {}, 512, 1),
        ({"multicast": ""}, {}, 512, 1),
        ({"rollover": "0"}, {}, 512, 1),
        (
            {"blksize": "1468", "windowsize": "16", "tsize": "0"},
            {"blksize": "1468", "windowsize": "16", "tsize": str(SIZE)},
            1468,
            16,
        ),
    ],
)
def test_negotiation_table(requested, acknowledged, blksize, windowsize):
    result = negotiate(requested, size=SIZE)
    assert dict(result.acknowledged) == acknowledged
    assert (result.blksize, result.windowsize) == (blksize, windowsize)


def test_windowsize_accepts_full_rfc_range_when_server_allows_it():
    assert negotiate({"windowsize": "65535"}, size=SIZE).windowsize == 65535


def test_windowsize_is_capped_at_the_server_maximum():
    result = negotiate({"windowsize": "1000"}, size=SIZE, max_windowsize=64)
    assert (result.windowsize, dict(result.acknowledged)) == (64, {"windowsize": "64"})


def test_blksize_is_capped_at_the_server_maximum():
    result = negotiate({"blksize": "9000"}, size=SIZE, max_blksize=1468)
    assert (result.blksize, dict(result.acknowledged)) == (1468, {"blksize": "1468"})


@pytest.mark.parametrize("seconds", ["1", "5", "255"])
def test_timeout_in_range_is_echoed_and_used(seconds):
    result = negotiate({"timeout": seconds}, size=SIZE)
    assert (result.timeout, dict(result.acknowledged)) == (int(seconds), {"timeout": seconds})


def test_tsize_answers_the_real_size_whatever_the_client_sent():
    assert dict(negotiate({"tsize": "0"}, size=SIZE).acknowledged) == {"tsize": str(SIZE)}
    assert dict(negotiate({"tsize": "999"}, size=1).acknowledged) == {"tsize": "1"}


def test_tsize_is_not_acknowledged_for_an_empty_file():
    # curl rejects "tsize 0" in an OACK; without the OACK the empty DATA 1 tells the same.
    assert negotiate({"tsize": "0"}, size=0) == negotiate({}, size=0)


def test_tsize_is_ignored_when_the_size_is_unknown():
    assert dict(negotiate({"tsize": "0"}, size=None).acknowledged) == {}


def test_oack_keeps_the_clients_option_order():
    requested = {"tsize": "0", "windowsize": "4", "blksize": "1024", "timeout": "3"}
    assert list(negotiate(requested, size=1).acknowledged) == ["tsize", "windowsize", "blksize", "timeout"]


@pytest.mark.parametrize("seconds", ["6", "30", "255"])
def test_timeout_above_the_server_maximum_is_declined_not_changed(seconds):
    # RFC 2349: the server echoes the client's timeout or leaves the option out; it never answers another.
    result = negotiate({"timeout": seconds, "tsize": "0"}, size=100, max_timeout=5)
    assert result.timeout is None
    assert dict(result.acknowledged) == {"tsize": "100"}


def test_timeout_at_the_server_maximum_is_accepted():
    result = negotiate({"timeout": "5"}, size=100, max_timeout=5)
    assert result.timeout == 5 and dict(result.acknowledged) == {"timeout": "5"}
