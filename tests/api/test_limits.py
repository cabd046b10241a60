"""Per-user rate limits (api.limits): token buckets, 429 with Retry-After and the one error body."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from api.limits import RateLimiter
from tests.api.conftest import AUDITOR, OPERATOR, SUPERVISOR, Stack


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_empties_refills_and_is_per_user() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"general": 3, "expensive": 1}, clock=clock)
    assert [limiter.take("a", ["general"]) for _ in range(3)] == [None, None, None]
    assert limiter.take("a", ["general"]) == ("general", 20)  # one token per 20 s at 3 a minute
    assert limiter.take("b", ["general"]) is None  # another user: another bucket
    clock.now += 20
    assert limiter.take("a", ["general"]) is None
    assert limiter.take("a", ["general"]) is not None


def test_an_expensive_route_draws_on_both_buckets_all_or_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"general": 10, "expensive": 1}, clock=clock)
    assert limiter.take("a", ["general", "expensive"]) is None
    assert limiter.take("a", ["general", "expensive"]) == ("expensive", 60)
    # the refused request took nothing from the general bucket: 9 left
    assert [limiter.take("a", ["general"]) for _ in range(9)] == [None] * 9
    assert limiter.take("a", ["general"]) is not None


@contextmanager
def tight(stack: Stack, **per_minute: int) -> Iterator[None]:
    saved = stack.app.state.rate_limiter
    stack.app.state.rate_limiter = RateLimiter({"general": 1_000_000, "search": 1_000_000, "expensive": 1_000_000}
                                               | per_minute)
    try:
        yield
    finally:
        stack.app.state.rate_limiter = saved


async def test_429_with_retry_after_per_user_and_tighter_on_search(stack: Stack) -> None:
    with tight(stack, general=5, search=2):
        statuses = []
        for _ in range(3):
            response = await stack.http.post("/cases/search", json={"q": "x"}, headers=stack.auth(OPERATOR))
            statuses.append(response.status_code)
        assert statuses == [200, 200, 429]
        assert response.headers["Retry-After"] == "30"
        assert response.json() == {"detail": "too many search requests from you; retry after 30 s"}
        # the same user on another route: the general bucket still has tokens (2 of 5 used)
        assert (await stack.http.get("/me/tasks", headers=stack.auth(OPERATOR))).status_code == 200
        # another user is not held up
        other = await stack.http.post("/cases/search", json={"q": "x"}, headers=stack.auth(SUPERVISOR))
        assert other.status_code == 200


async def test_the_expensive_routes_have_their_own_small_bucket(stack: Stack) -> None:
    with tight(stack, expensive=1):
        first = await stack.http.post("/audit/verify", headers=stack.auth(AUDITOR))
        second = await stack.http.post("/audit/verify", headers=stack.auth(AUDITOR))
        assert first.status_code == 202 and second.status_code == 429
        assert int(second.headers["Retry-After"]) == 60
        # a cheap route for the same auditor still answers
        assert (await stack.http.get("/cases", headers=stack.auth(AUDITOR))).status_code == 200


def test_429_is_declared_on_every_guarded_route(stack: Stack) -> None:
    spec = stack.app.openapi()
    for path, operations in spec["paths"].items():
        if path == "/health":
            continue
        for method, operation in operations.items():
            assert "429" in operation["responses"], (method, path)
