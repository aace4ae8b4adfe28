"""Rate limits: exact counts on memory and Redis, keys, auth quotas, headers, Redis outages."""

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis

from app.config import Settings
from app.core import rate_limit
from app.core.rate_limit import KEY_PREFIX
from app.core.security import create_token
from tests.conftest import _ClientContext
from tests.core.conftest import free_port
from tests.core.redis_server import redis_server_binary
from tests.core.test_logging import json_lines
from tests.servers import ThrowawayRedis

PROBE = "/api/v1/_probe"  # no such route: 404s count like any other answer
TOKEN = "/api/v1/auth/token"
REGISTER = "/api/v1/auth/register"
HOUR = 3600  # long windows: a test never straddles one in practice


def clear_keys(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{KEY_PREFIX}*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides selecting the limiter's storage."""
    if request.param == "memory":
        return {}
    url: str = request.getfixturevalue("redis_url")
    clear_keys(url)
    return {"REDIS_URL": url}


@pytest.fixture
def limited(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    backend: dict[str, Any],
) -> Callable[..., _ClientContext]:
    def make(**overrides: Any) -> _ClientContext:
        values = {"RATE_LIMIT_WINDOW_SECONDS": HOUR, "AUTH_RATE_LIMIT_WINDOW_SECONDS": HOUR}
        return make_client(make_settings(**{**values, **backend, **overrides}))

    return make


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


async def test_exact_count_and_headers(limited: Callable[..., _ClientContext]) -> None:
    async with limited(RATE_LIMIT_REQUESTS=5) as client:
        responses = [await client.get(PROBE) for _ in range(8)]
    assert statuses(responses) == [404] * 5 + [429] * 3
    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in responses[:5]]
    assert remaining == [4, 3, 2, 1, 0]
    for response in responses:
        assert response.headers["x-ratelimit-limit"] == "5"
        assert response.headers["ratelimit-policy"] == f'"default";q=5;w={HOUR}'
        assert re.fullmatch(r'"default";r=\d+;t=\d+', response.headers["ratelimit"])
    denied = responses[5]
    assert denied.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(denied.headers["retry-after"]) <= HOUR
    assert denied.headers["ratelimit"] == f'"default";r=0;t={denied.headers["retry-after"]}'
    body = denied.json()
    assert body["error"] == "rate_limited"
    assert body["request_id"] == denied.headers["x-request-id"]
    assert "retry-after" not in responses[0].headers


async def test_keyed_by_user_when_the_token_is_valid(
    limited: Callable[..., _ClientContext], settings: Settings
) -> None:
    def bearer() -> dict[str, str]:
        token, _ = create_token(
            settings,
            token_type="access",
            user_id=uuid.uuid4(),
            session_id=uuid.uuid4(),
            jti=uuid.uuid4(),
            lifetime=timedelta(minutes=5),
        )
        return {"Authorization": f"Bearer {token}"}

    ann, bob = bearer(), bearer()
    async with limited(RATE_LIMIT_REQUESTS=2) as client:
        ann_answers = [await client.get(PROBE, headers=ann) for _ in range(3)]
        bob_answers = [await client.get(PROBE, headers=bob) for _ in range(3)]
        # An invalid token counts against the IP, like no token at all.
        forged = {"Authorization": "Bearer not-a-valid-token"}
        ip_answers = [await client.get(PROBE, headers=forged) for _ in range(2)]
        ip_answers.append(await client.get(PROBE))
    assert statuses(ann_answers) == [404, 404, 429]
    assert statuses(bob_answers) == [404, 404, 429]
    assert statuses(ip_answers) == [404, 404, 429]


@pytest.mark.parametrize(
    "path", ["/health/live", "/health", "/health/ready", "/metrics", "/docs", "/redoc"]
)
async def test_health_metrics_and_docs_are_never_limited(
    limited: Callable[..., _ClientContext], path: str
) -> None:
    async with limited(RATE_LIMIT_REQUESTS=1) as client:
        responses = [await client.get(path) for _ in range(3)]
        spec = [await client.get("/api/v1/openapi.json") for _ in range(3)]
    assert 429 not in statuses(responses + spec)
    assert all("x-ratelimit-limit" not in r.headers for r in responses + spec)


async def test_auth_endpoints_have_their_own_ip_quota(
    limited: Callable[..., _ClientContext],
) -> None:
    async with limited(RATE_LIMIT_REQUESTS=100, AUTH_RATE_LIMIT_REQUESTS=2) as client:
        token = [
            await client.post(TOKEN, data={"username": f"u{i}@example.com", "password": "x"})
            for i in range(3)
        ]
        register = [await client.post(REGISTER, json={"email": "a@example.com"}) for _ in range(3)]
        other = await client.get(PROBE)
    assert statuses(token)[-1] == 429
    assert 429 not in statuses(token)[:2]
    assert statuses(register)[-1] == 429
    assert 429 not in statuses(register)[:2]
    assert token[-1].headers["ratelimit-policy"] == f'"auth";q=2;w={HOUR}'
    assert token[-1].headers["x-ratelimit-limit"] == "2"
    assert other.status_code == 404  # the default quota is untouched


async def test_token_endpoint_is_limited_per_account_across_ips(
    limited: Callable[..., _ClientContext],
) -> None:
    async with limited(AUTH_RATE_LIMIT_REQUESTS=3, TRUSTED_PROXIES="203.0.113.7/32") as client:

        async def login(ip: str, username: str) -> httpx.Response:
            return await client.post(
                TOKEN,
                data={"username": username, "password": "guess"},
                headers={"X-Forwarded-For": ip},
            )

        same_account = [
            await login(f"198.51.100.{i}", name)
            for i, name in enumerate(["ann@example.com", "Ann@Example.com", " ann@example.com"])
        ]
        fourth = await login("198.51.100.99", "ANN@example.com")
        others = [await login(f"192.0.2.{i}", f"user{i}@example.com") for i in range(4)]
    assert 429 not in statuses(same_account)
    assert fourth.status_code == 429
    assert 429 not in statuses(others)


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A Redis of the test's own, killed at the end whatever happens."""
    server = ThrowawayRedis(redis_server_binary(), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def outage_client(
    throwaway_redis: ThrowawayRedis,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[httpx.AsyncClient]:
    # Retry Redis on every request, so that its return is seen at once.
    monkeypatch.setattr(rate_limit, "REDIS_RETRY_AFTER_SECONDS", 0.0)
    settings = make_settings(
        REDIS_URL=throwaway_redis.url,
        RATE_LIMIT_REQUESTS=3,
        RATE_LIMIT_WINDOW_SECONDS=HOUR,
        AUTH_RATE_LIMIT_REQUESTS=2,
        AUTH_RATE_LIMIT_WINDOW_SECONDS=HOUR,
    )
    async with make_client(settings) as client:
        yield client


async def test_redis_outage_falls_back_to_local_limits_and_recovers(
    outage_client: httpx.AsyncClient,
    throwaway_redis: ThrowawayRedis,
    capfd: pytest.CaptureFixture[str],
) -> None:
    client = outage_client
    assert statuses([await client.get(PROBE) for _ in range(2)]) == [404, 404]
    assert throwaway_redis.key_count() > 0  # counted in Redis
    assert (await client.get("/health")).json()["checks"]["redis"]["status"] == "ok"

    throwaway_redis.stop()
    capfd.readouterr()
    during = [await client.get(PROBE) for _ in range(5)]
    logins = [
        await client.post(TOKEN, data={"username": "a@b.c", "password": "x"}) for _ in range(3)
    ]
    health = await client.get("/health")
    # Served throughout, never a 5xx; each process now counts on its own (from zero)...
    assert statuses(during) == [404, 404, 404, 429, 429]
    # ...and the auth endpoints keep their strict cap.
    assert statuses(logins)[-1] == 429
    assert health.status_code == 200
    assert health.json()["checks"]["redis"]["status"] == "error"
    outage_logs = [
        line
        for line in json_lines(capfd.readouterr().err)
        if line.get("event") == "rate_limit_redis_unavailable"
    ]
    assert len(outage_logs) == 1  # once per interval, not once per request

    throwaway_redis.start()
    after = await client.get(PROBE)
    assert after.status_code in (404, 429)
    assert throwaway_redis.key_count() > 0  # counting in Redis again
    recovered = [
        line
        for line in json_lines(capfd.readouterr().err)
        if line.get("event") == "rate_limit_redis_recovered"
    ]
    assert len(recovered) == 1


async def test_password_reset_is_limited_per_account_alike_for_unknown_addresses(
    limited: Callable[..., _ClientContext],
) -> None:
    """By IP and by the named address; a refusal tells nothing about the account's existence."""
    async with limited(AUTH_RATE_LIMIT_REQUESTS=2, TRUSTED_PROXIES="203.0.113.7/32") as client:
        await client.post(REGISTER, json={"email": "ann@example.com", "password": "x" * 12})

        async def reset(ip: str, email: str) -> httpx.Response:
            return await client.post(
                "/api/v1/auth/password-reset",
                json={"email": email},
                headers={"X-Forwarded-For": ip},
            )

        answers = {}
        # Ann's registration sent her address one of its two emails.
        for email, expected in (("ann@example.com", [202]), ("nobody@example.com", [202, 202])):
            tries = [await reset(f"198.51.100.{i}", email.upper()) for i in range(3)]
            assert statuses(tries) == expected + [429] * (3 - len(expected))
            answers[email] = tries[-1]
        by_ip = [await reset("192.0.2.1", f"user{i}@example.com") for i in range(3)]
    assert statuses(by_ip) == [202, 202, 429]
    known, unknown = answers["ann@example.com"], answers["nobody@example.com"]
    assert known.headers.keys() == unknown.headers.keys()
    assert known.headers["ratelimit-policy"] == unknown.headers["ratelimit-policy"]
    body = known.json()
    body.pop("request_id")
    other = unknown.json()
    other.pop("request_id")
    assert body == other


async def test_verification_resend_is_limited_per_account(
    limited: Callable[..., _ClientContext],
) -> None:
    async with limited(AUTH_RATE_LIMIT_REQUESTS=2, TRUSTED_PROXIES="203.0.113.7/32") as client:
        await client.post(REGISTER, json={"email": "ann@example.com", "password": "x" * 12})
        login = await client.post(TOKEN, data={"username": "ann@example.com", "password": "x" * 12})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        tries = [
            await client.post(
                "/api/v1/auth/verify-email/resend",
                headers={**headers, "X-Forwarded-For": f"198.51.100.{i}"},
            )
            for i in range(3)
        ]
    assert statuses(tries) == [202, 429, 429]  # the registration's email was the first of two
