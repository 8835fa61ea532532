"""`poolgate bench scrape`: which endpoints are busy, and that a busy endpoint's pages differ from one to the next."""

from itertools import pairwise

from poolgate.bench.scrape import BUSY_TURNS, busy_indices, endpoint_values


def test_busy_shares_are_spread_evenly():
    assert busy_indices(256, 0.0) == set() and busy_indices(256, 1.0) == set(range(256))
    quarter = sorted(busy_indices(256, 0.25))
    assert len(quarter) == 64 and {b - a for a, b in pairwise(quarter)} == {4}


def test_a_busy_endpoint_shows_other_values_on_each_page():
    for index in (0, 36, 99, 255):
        pages = [endpoint_values(index, turn) for turn in range(BUSY_TURNS)]
        for page, following in zip(pages, pages[1:] + pages[:1]):
            assert (page["waiting"], page["running"], page["kv_usage"]) != (
                following["waiting"],
                following["running"],
                following["kv_usage"],
            )
            assert 0.0 <= page["kv_usage"] <= 1.0
