"""`serverscope claims` confirms a share claim only when chance does not explain the
counts (a test against an even spread, judging.evenness), as its docstring promised and
the brief asks of every judgement. Before, a threshold alone decided: 3 sequential
connections going 2/1/0/0 under EPOLLEXCLUSIVE were "LIFO: nearly all to one", 5 accepts
2/1/1/1 on a shared socket Herbert's "as high as 3:1" (2:1), had the load mostly failed.
The experiments' counts are given here (no server runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from lab import claims


def given(monkeypatch: pytest.MonkeyPatch, *counts: list[int]) -> None:
    """Each setup the claim starts, in turn, counts these accepts (busiest first)."""
    left = list(counts)

    @contextlib.contextmanager
    def started(model: str, **knobs: object) -> Iterator[object]:
        yield object()

    def counted(sup: object, action: Callable[[], object]) -> list[int]:
        return left.pop(0)

    monkeypatch.setattr(claims, "Started", started)
    monkeypatch.setattr(claims, "counted", counted)


def test_few_connections_confirm_no_ordering(monkeypatch: pytest.MonkeyPatch) -> None:
    given(monkeypatch, [1, 1, 1, 0], [2, 1, 0, 0])
    out = claims.cloudflare_order()
    assert out.confirmed is False, out
    assert "against an even spread" in out.why, out


def test_many_connections_confirm_it_with_the_p_value_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given(monkeypatch, [25, 25, 25, 25], [97, 2, 1, 0])
    out = claims.cloudflare_order()
    assert out.confirmed is True, out
    assert "p < 1e-9" in out.why and "100 and 100 sequential connections" in out.why, out


def test_herbert_needs_more_than_a_ratio_of_small_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given(monkeypatch, [2, 1, 1, 1], [2, 2, 2, 2])
    out = claims.herbert()
    assert out.confirmed is False, out
    given(monkeypatch, [2122, 1300, 1100, 1000], [1358, 1333, 1332, 1289])
    out = claims.herbert()
    assert out.confirmed is True and "p < 1e-9" in out.why, out
