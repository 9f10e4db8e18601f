"""benchmarks/soak.py in its reduced form: 200 mixed requests from 16 clients
against a real gunicorn; every one gets its status, the worker survives."""

from __future__ import annotations

import pytest

from benchmarks.soak import main, report, request_mix, run_soak

pytestmark = pytest.mark.slow


def test_200_mixed_requests_from_16_clients_all_get_their_status():
    result = run_soak(requests_total=200, clients=16, max_seconds=120)
    assert len(result.outcomes) == 200
    assert result.failures == [], report(result)
    kinds = {outcome.kind for outcome in result.outcomes}
    assert {k.name for k in request_mix() if k.valid} <= kinds
    assert any(not outcome.valid for outcome in result.outcomes)
    [(pid, before)] = result.rss_before.items()
    assert before and result.rss_after[pid], "the worker's RSS was read before and after"
    table = report(result)
    assert "requests/s" in table and "0 valid requests failed" in table


def test_the_soak_script_refuses_other_hosts():
    with pytest.raises(ValueError, match="127.0.0.1"):
        main(["--url", "http://example.com:80", "--requests", "1"])
