"""Issue 24, tried as an attacker would: an address verified without proof, an account taken
with an access token alone, links that outlive the address they were sent to, email bombing.

The races send real concurrent requests (a random 0-12 ms apart) for many rounds; whatever the
interleaving, `email_verified` is true only for the address the used link was sent to.
"""

import asyncio
import random
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.models import User
from tests.api.conftest import PASSWORD, Account, assert_envelope, login, make_account
from tests.api.test_accounts import jobs_finished
from tests.mailbox import Mailbox, plain_text, token_in

AUTH = "/api/v1/auth"
ME = "/api/v1/users/me"
RACE_ROUNDS = 30
NEW_PASSWORD = "a brand new password 42"
VERIFY, RESET = "Verify your email", "Reset your"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], mailbox: Mailbox) -> Settings:
    return make_settings(**mailbox.settings)


async def change_email(
    client: httpx.AsyncClient, account: Account, email: str, password: str = PASSWORD
) -> httpx.Response:
    body = {"email": email, "current_password": password}
    return await client.patch(ME, headers=account.headers, json=body)


async def after_a_moment(request: Any, up_to: float = 0.012) -> httpx.Response:
    await asyncio.sleep(random.uniform(0, up_to))
    response: httpx.Response = await request
    return response


async def stored(engine: AsyncEngine, user_id: str) -> tuple[str, bool]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(User.email, User.email_verified).where(User.id == uuid.UUID(user_id))
            )
        ).one()
    return row.email, row.email_verified


async def test_a_verification_racing_an_email_change_never_verifies_the_new_address(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine
) -> None:
    alice = await make_account(client, "alice@example.com")
    sent = 1  # the registration's verification email
    lost, verified_at = [], []
    for n in range(RACE_ROUNDS):
        token = token_in(await mailbox.received(alice.email, sent, VERIFY))
        victim = f"ceo{n}@victim-corp.com"
        verify = client.post(f"{AUTH}/verify-email", json={"token": token})
        change = change_email(client, alice, victim)
        verified, changed = await asyncio.gather(after_a_moment(verify), after_a_moment(change))
        assert verified.status_code in (200, 400), verified.text
        assert changed.status_code == 200, changed.text
        if verified.status_code == 200:
            verified_at.append(n)
        email, is_verified = await stored(cleanup_engine, alice.id)
        assert email == victim
        if is_verified:
            lost.append(n)
        me = (await client.get(ME, headers=alice.headers)).json()
        assert (me["email"], me["email_verified"]) == (email, is_verified)
        # Back to Alice's own address: a new verification link for the next round.
        assert (await change_email(client, alice, alice.email)).status_code == 200
        sent += 1
    assert verified_at, "no verification won a race: the test raced nothing"
    assert lost == [], f"victim's address verified in rounds {lost}"


async def test_a_password_reset_racing_an_email_change_never_verifies_the_new_address(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine
) -> None:
    alice = await make_account(client, "alice@example.com")
    password, lost, reset_at = PASSWORD, [], []
    for n in range(RACE_ROUNDS):
        await client.post(f"{AUTH}/password-reset", json={"email": alice.email})
        token = token_in(await mailbox.received(alice.email, n + 1, RESET))
        victim = f"ceo{n}@victim-corp.com"
        new_password = f"{NEW_PASSWORD} {n}"
        body = {"token": token, "new_password": new_password}
        reset = client.post(f"{AUTH}/password-reset/confirm", json=body)
        change = change_email(client, alice, victim, password)
        # The reset hashes its new password first (tens of ms): the change may land at any point.
        reset_answer, changed = await asyncio.gather(reset, after_a_moment(change, 0.1))
        assert reset_answer.status_code in (204, 400), reset_answer.text
        assert changed.status_code in (200, 401, 403), changed.text
        email, is_verified = await stored(cleanup_engine, alice.id)
        if email == victim and is_verified:
            lost.append(n)
        if reset_answer.status_code == 204:
            password = new_password
            reset_at.append(n)
        # Log in again (a reset ends every session) and return to Alice's own address.
        tokens = (await login(client, email, password)).json()
        alice.access_token = tokens["access_token"]
        if email != alice.email:
            assert (await change_email(client, alice, alice.email, password)).status_code == 200
    assert reset_at, "no reset won a race: the test raced nothing"
    assert lost == [], f"victim's address verified in rounds {lost}"


@pytest.mark.parametrize("password", [None, "", "not the password"])
async def test_an_access_token_alone_cannot_change_the_email(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine, password: str | None
) -> None:
    alice = await make_account(client, "alice@example.com")
    body: dict[str, str] = {"email": "attacker@evil.example.com"}
    if password is not None:
        body["current_password"] = password
    response = await client.patch(ME, headers=alice.headers, json=body)
    assert response.status_code in (400, 401, 403, 422), response.text
    assert set(response.json()) == {"error", "message", "details", "request_id"}
    assert await stored(cleanup_engine, alice.id) == ("alice@example.com", False)
    assert mailbox.to("attacker@evil.example.com") == []


async def test_an_email_change_notifies_the_old_address_and_ends_its_links(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    alice = await make_account(client, "alice@example.com")
    verify_token = token_in(await mailbox.received(alice.email))
    await client.post(f"{AUTH}/password-reset", json={"email": alice.email})
    reset_token = token_in(await mailbox.received(alice.email, 2))

    changed = await change_email(client, alice, "Alice.New@Example.com")
    assert changed.status_code == 200, changed.text
    assert changed.json()["email"] == "alice.new@example.com"
    assert changed.json()["email_verified"] is False

    notice = await mailbox.received(alice.email, 3)
    assert "alice.new@example.com" in plain_text(notice)
    assert "token=" not in plain_text(notice)  # a notice, with nothing in it that changes anything
    assert notice["Subject"] == "The email address of your Keel account was changed"
    await mailbox.received("alice.new@example.com")  # the new address's verification link

    reset = {"token": reset_token, "new_password": NEW_PASSWORD}
    assert_envelope(
        await client.post(f"{AUTH}/password-reset/confirm", json=reset), 400, "bad_request"
    )
    verify = await client.post(f"{AUTH}/verify-email", json={"token": verify_token})
    assert_envelope(verify, 400, "bad_request")
    assert (await login(client, "alice.new@example.com", PASSWORD)).status_code == 200


async def test_a_reset_link_works_only_while_the_address_is_the_one_it_went_to(
    client: httpx.AsyncClient, mailbox: Mailbox, admin_client: tuple[httpx.AsyncClient, Account]
) -> None:
    """Even when a superuser changes the address (no password asked of the account)."""
    client, admin = admin_client
    alice = await make_account(client, "alice@example.com")
    await client.post(f"{AUTH}/password-reset", json={"email": alice.email})
    reset_token = token_in(await mailbox.received(alice.email, 2))
    moved = await client.patch(
        f"/api/v1/users/{alice.id}", headers=admin.headers, json={"email": "alice2@example.com"}
    )
    assert moved.status_code == 200, moved.text
    reset = {"token": reset_token, "new_password": NEW_PASSWORD}
    assert_envelope(
        await client.post(f"{AUTH}/password-reset/confirm", json=reset), 400, "bad_request"
    )
    assert (await login(client, "alice2@example.com", PASSWORD)).status_code == 200


@pytest.fixture
async def admin_client(
    make_settings: Callable[..., Settings], make_client: Callable[..., Any], mailbox: Mailbox
) -> Any:
    settings = make_settings(
        FIRST_SUPERUSER_EMAIL="admin@example.com",
        FIRST_SUPERUSER_PASSWORD="admin password 123",
        **mailbox.settings,
    )
    async with make_client(settings) as client:
        admin = await make_account(client, "admin@example.com", "admin password 123")
        yield client, admin


# --- Emails per address: at most AUTH_RATE_LIMIT_REQUESTS a window, however it is spelled. ---

LIMIT = 3


@pytest.fixture
async def limited(
    make_settings: Callable[..., Settings], make_client: Callable[..., Any], mailbox: Mailbox
) -> Any:
    settings = make_settings(
        AUTH_RATE_LIMIT_REQUESTS=LIMIT,
        AUTH_RATE_LIMIT_WINDOW_SECONDS=3600,
        TRUSTED_PROXIES="203.0.113.7/32",
        **mailbox.settings,
    )
    async with make_client(settings) as client:
        yield client


async def settled(engine: AsyncEngine) -> None:
    """Wait until every recorded job has run."""
    await jobs_finished(engine)


async def test_an_account_cannot_bomb_an_address_by_changing_its_email(
    limited: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine
) -> None:
    client = limited
    attacker = await make_account(client, "attacker@example.com")
    answers = []
    for n in range(12):
        target = "victim@example.com" if n % 2 == 0 else f"attacker{n}@example.com"
        answers.append((await change_email(client, attacker, target)).status_code)
    await settled(cleanup_engine)
    assert len(mailbox.to("victim@example.com")) <= LIMIT
    assert 429 in answers
    assert set(answers) <= {200, 429}


@pytest.mark.parametrize(
    "spell",
    [
        lambda i: "bob@example.com",
        lambda i: f"x{i} <bob@example.com>",
        lambda i: f"  BOB@Example.COM{' ' * i}",
    ],
    ids=["exact", "display-name", "case-and-space"],
)
async def test_password_reset_emails_are_limited_by_address_whatever_the_spelling(
    limited: httpx.AsyncClient,
    mailbox: Mailbox,
    cleanup_engine: AsyncEngine,
    spell: Callable[[int], str],
) -> None:
    client = limited
    await make_account(client, "bob@example.com")
    answers = [
        await client.post(
            f"{AUTH}/password-reset",
            json={"email": spell(i)},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        )
        for i in range(15)
    ]
    await settled(cleanup_engine)
    # Registration sent Bob one email already: the address has LIMIT - 1 left.
    assert [a.status_code for a in answers] == [202] * (LIMIT - 1) + [429] * (16 - LIMIT)
    refused = answers[-1]
    assert_envelope(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) > 0
    resets = [m for m in mailbox.to("bob@example.com") if "Reset" in m["Subject"]]
    assert len(resets) <= LIMIT


async def test_a_refusal_looks_the_same_whether_or_not_the_account_exists(
    limited: httpx.AsyncClient,
) -> None:
    client = limited
    await make_account(client, "bob@example.com")

    async def exhaust(email: str) -> httpx.Response:
        for i in range(LIMIT + 1):
            response = await client.post(
                f"{AUTH}/password-reset",
                json={"email": email},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            )
        return response

    known, unknown = await exhaust("bob@example.com"), await exhaust("nobody@example.com")
    assert known.status_code == unknown.status_code == 429
    strip = {"request_id"}
    assert {k: v for k, v in known.json().items() if k not in strip} == {
        k: v for k, v in unknown.json().items() if k not in strip
    }
    assert known.headers.keys() == unknown.headers.keys()


async def test_registration_and_resend_count_against_the_address(
    limited: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine
) -> None:
    """Register, delete, register again ... or resend: the address's budget ends it."""
    client = limited

    async def bearer(email: str, ip: str) -> dict[str, str]:
        form = {"username": email, "password": PASSWORD}
        tokens = await client.post(f"{AUTH}/token", data=form, headers={"X-Forwarded-For": ip})
        return {"Authorization": f"Bearer {tokens.json()['access_token']}"}

    answers = []
    for i in range(LIMIT + 1):
        ip = f"198.51.100.{i}"
        body = {"email": f"Victim{i} <victim@example.com>", "password": PASSWORD}
        created = await client.post(f"{AUTH}/register", json=body, headers={"X-Forwarded-For": ip})
        answers.append(created.status_code)
        if created.status_code == 201:
            deleted = await client.delete(ME, headers=await bearer("victim@example.com", ip))
            assert deleted.status_code == 204
    assert answers == [201] * LIMIT + [429]

    ip = "192.0.2.1"
    body = {"email": "other@example.com", "password": PASSWORD}
    await client.post(f"{AUTH}/register", json=body, headers={"X-Forwarded-For": ip})
    headers = await bearer("other@example.com", ip)
    resent = [
        await client.post(
            f"{AUTH}/verify-email/resend", headers={**headers, "X-Forwarded-For": f"192.0.2.{n}"}
        )
        for n in range(2, LIMIT + 2)
    ]
    await settled(cleanup_engine)
    assert len(mailbox.to("victim@example.com")) == LIMIT
    # The registration spent one of the address's emails.
    assert [r.status_code for r in resent] == [202] * (LIMIT - 1) + [429]
    assert_envelope(resent[-1], 429, "rate_limited")
    assert len(mailbox.to("other@example.com")) == LIMIT
