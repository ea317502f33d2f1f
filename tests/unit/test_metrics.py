"""Prometheus exposition: our renderer against an independent strict checker, and the metric mapping
from a status document (counters read from the services' status(), never counted again)."""

from __future__ import annotations

import math

import pytest

from protocols.prometheus import Family, MetricError, render
from services.api_metrics import DURATION_BUCKETS, PoolUsage, collect
from state.installstats import InstallTally
from tests.expocheck import ExpositionError, parse


def test_rendered_families_pass_the_checker_with_escaped_labels_and_special_values() -> None:
    fams = [
        Family("x_total", "counter", "a \\ help\nwith newline").add(3, {"v": 'quote " back \\ nl \n'}),
        Family("g", "gauge", "gauge").add(math.inf, {"a": "1"}).add(-math.inf, {"a": "2"}).add(0.25, {"a": "3"}),
        Family("d_seconds", "histogram", "durations").histogram([1, 5, 5, 100], (1.0, 10.0)),
        Family("empty", "gauge", "no samples yet"),
    ]
    text = render(fams)
    expo = parse(text)
    assert expo.value("x_total", v='quote " back \\ nl \n') == 3
    assert expo.value("g", a="2") == -math.inf and expo.value("g", a="3") == 0.25
    assert [expo.value("d_seconds_bucket", le=le) for le in ("1", "10", "+Inf")] == [1, 3, 4]
    assert expo.value("d_seconds_sum") == 111 and expo.value("d_seconds_count") == 4
    assert expo.types == {"x_total": "counter", "g": "gauge", "d_seconds": "histogram", "empty": "gauge"}
    assert expo.helps["x_total"] == "a \\\\ help\\nwith newline"


@pytest.mark.parametrize("bad", [
    "# TYPE a counter\na -1\n",  # negative counter
    "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",  # duplicate series
    "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",  # family split
    "a{x=\"\\t\"} 1\n",  # bad escape
    "a{x=1} 1\n",  # unquoted label value
    "1a 1\n",  # bad name
    "a one\n",  # not a number
    "# TYPE a gauge\n# TYPE a gauge\na 1\n",  # second TYPE
    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",  # not cumulative
    "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",  # count differs
    "a 1",  # no final newline
])
def test_checker_rejects_broken_expositions(bad: str) -> None:
    with pytest.raises(ExpositionError):
        parse(bad)


def test_renderer_refuses_what_the_format_cannot_express() -> None:
    with pytest.raises(MetricError):
        Family("bad-name", "gauge", "x")
    with pytest.raises(MetricError):
        Family("a", "gauge", "x").add(1, {"bad-label": "x"})
    with pytest.raises(MetricError):
        render([Family("a", "gauge", "x"), Family("a", "gauge", "x")])


STATUS = {
    "version": "0.1.0", "uptime": 12.5,
    "services": {
        "dhcp": {"state": "running", "counters": {"received": 7, "in_discover": 3, "in_request": 3, "in_release": 1,
                                                  "out_offer": 3, "out_ack": 3, "malformed": 2, "ack_batches": 3}},
        "tftp": {"state": "running", "counters": {"bytes_sent": 1000, "transfers_started": 2,
                                                  "transfers_completed": 1, "transfers_aborted": 1}},
        "http": {"state": "running", "counters": {"requests": 9, "responses_2xx": 8, "responses_4xx": 1,
                                                  "bytes_out": 5000, "files": 2, "boot_scripts": 3,
                                                  "boot_install": 1, "boot_wait": 2}},
        "rsyncd": {"state": "failed", "counters": {"restarts": 4, "bytes_sent": 77, "connect": 2}},
    },
    "counts": {"leases": 3, "hosts": 2},
}


def test_status_counters_map_onto_metric_names_and_nothing_is_lost_or_doubled() -> None:
    events = [("a", 100.0, "script"), ("a", 130.0, "rsync"), ("a", 190.0, "done"),
              ("b", 50.0, "script"), ("b", 60.0, "failed"), ("b", 70.0, "reinstall"), ("b", 400.0, "installer"),
              ("b", 1000.0, "done")]
    expo = parse(render(collect(STATUS, installs=InstallTally().add_all(events), host_states={"installed": 2},
                                pools=[PoolUsage("10.0.0.0/24", 100, 3, 1)])))
    assert expo.value("imageserver_dhcp_received_total", type="discover") == 3
    assert expo.value("imageserver_dhcp_sent_total", type="ack") == 3
    assert expo.value("imageserver_dhcp_problems_total", outcome="malformed") == 2
    assert expo.value("imageserver_tftp_sent_bytes_total") == 1000
    assert expo.value("imageserver_tftp_transfers_finished_total", outcome="aborted") == 1
    assert expo.value("imageserver_http_sent_bytes_total") == 5000
    assert expo.value("imageserver_http_responses_total", code="4xx") == 1
    assert expo.value("imageserver_boot_scripts_total", decision="wait") == 2
    assert expo.value("imageserver_rsyncd_restarts_total") == 4
    assert expo.value("imageserver_service_up", service="rsyncd") == 0
    assert expo.value("imageserver_service_up", service="dhcp") == 1
    # Counters without a name of their own are still there, once.
    assert expo.value("imageserver_service_events_total", service="dhcp", event="received") == 7
    assert expo.value("imageserver_service_events_total", service="rsyncd", event="connect") == 2
    assert not any(dict(labels).get("event") in ("in_discover", "bytes_sent", "restarts", "boot_scripts")
                   for labels in expo.series("imageserver_service_events_total"))
    assert expo.value("imageserver_installs_total", outcome="done") == 2
    assert expo.value("imageserver_installs_total", outcome="failed") == 1
    assert expo.value("imageserver_install_duration_seconds_count") == 2
    assert expo.value("imageserver_install_duration_seconds_sum") == 90 + 600
    assert expo.value("imageserver_install_duration_seconds_bucket", le="120") == 1
    assert expo.value("imageserver_install_duration_seconds_bucket", le=str(int(DURATION_BUCKETS[-1]))) == 2
    assert expo.value("imageserver_hosts", state="installed") == 2
    assert expo.value("imageserver_hosts", state="failed") == 0
    assert expo.value("imageserver_dhcp_pool_size", subnet="10.0.0.0/24") == 100
    assert expo.value("imageserver_dhcp_pool_active_leases", subnet="10.0.0.0/24") == 3


def durations(events: list[tuple[str, float, str]]) -> tuple[int, float]:
    tally = InstallTally().add_all(events)
    return tally.observed, tally.total


def test_install_duration_runs_from_the_first_report_to_done() -> None:
    # A reinstall request is the operator's, not the machine's: the clock starts at the next report.
    assert durations([("h", 0.0, "reinstall"), ("h", 500.0, "script"), ("h", 560.0, "done")]) == (1, 60.0)
    # A failed attempt yields no duration, and the next attempt starts fresh.
    assert durations([("h", 0.0, "script"), ("h", 10.0, "failed"), ("h", 20.0, "installer"),
                      ("h", 50.0, "done")]) == (1, 30.0)
    # A done without a start (events pruned) is not a zero-second install.
    assert durations([("h", 5.0, "done")]) == (0, 0.0)


def test_install_tally_taken_in_slices_equals_one_pass() -> None:
    # The daemon reads only the events since the last scrape: an attempt split across two scrapes counts once.
    events = [("a", 0.0, "script"), ("b", 1.0, "script"), ("a", 70.0, "done"), ("b", 5.0, "failed"),
              ("b", 10.0, "installer"), ("b", 2000.0, "done")]
    whole = InstallTally().add_all(events)
    for cut in range(len(events) + 1):
        sliced = InstallTally().add_all(events[:cut]).add_all(events[cut:])
        assert (sliced.counts, sliced.total, sliced.outcomes) == (whole.counts, whole.total, whole.outcomes)
    assert whole.outcomes == {"done": 2, "failed": 1} and whole.total == 70.0 + 1990.0
    assert whole.counts[DURATION_BUCKETS.index(120.0)] == 1 and whole.counts[DURATION_BUCKETS.index(3600.0)] == 1
