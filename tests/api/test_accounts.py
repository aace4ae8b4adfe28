"""Email verification and password reset over HTTP, with a real SMTP server (aiosmtpd): the
links are read out of the received messages. Jobs run in the API process (no REDIS_URL)."""

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.models import AccountToken, AuthSession, OutboxJob, User
from app.models.base import utc_now
from tests.api.conftest import PASSWORD, Account, assert_envelope, login, make_account
from tests.mailbox import Mailbox, link_in, plain_text, token_in

AUTH = "/api/v1/auth"
ME = "/api/v1/users/me"
NEW_PASSWORD = "a brand new password 42"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], mailbox: Mailbox) -> Settings:
    return make_settings(**mailbox.settings)


async def jobs_finished(engine: AsyncEngine) -> list[OutboxJob]:
    """Every recorded job, once none is pending."""
    for _ in range(300):
        async with engine.connect() as conn:
            jobs = list((await conn.execute(select(OutboxJob))).all())
        if all(job.status != "pending" for job in jobs):
            return jobs  # type: ignore[return-value]
        await asyncio.sleep(0.05)
    raise AssertionError(f"jobs still pending: {jobs}")


async def test_register_sends_a_verification_link_that_works_once(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    alice = await make_account(client, "alice@example.com")
    message = await mailbox.received("alice@example.com")
    assert message["Subject"] == "Verify your email address for Keel"
    assert message["From"] == "Keel <no-reply@keel.example.com>"
    assert link_in(message).startswith("https://app.example.com/verify-email?token=")
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert link_in(message).replace("&", "&amp;") in html.get_content()  # type: ignore[attr-defined]
    token = token_in(message)
    assert len(token) >= 22  # >= 128 bits in URL-safe base64

    verified = await client.post(f"{AUTH}/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    assert (await client.get(ME, headers=alice.headers)).json()["email_verified"] is True
    again = await client.post(f"{AUTH}/verify-email", json={"token": token})
    assert_envelope(again, 400, "bad_request")


async def test_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine
) -> None:
    await make_account(client, "alice@example.com")
    token = token_in(await mailbox.received("alice@example.com"))
    async with cleanup_engine.connect() as conn:
        stored = (await conn.execute(select(AccountToken.token_hash))).scalars().all()
        payloads = (await conn.execute(select(OutboxJob.payload))).scalars().all()
    assert len(stored) == 1
    assert token not in stored[0]
    assert len(stored[0]) == 64
    assert token not in str(payloads)


@pytest.mark.parametrize("token", ["", "x" * 513, "unknown-token-value"])
async def test_verify_refuses_bad_tokens(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post(f"{AUTH}/verify-email", json={"token": token})
    assert response.status_code in (400, 422)
    assert set(response.json()) == {"error", "message", "details", "request_id"}


async def test_resend_needs_a_login_and_only_the_newest_link_works(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    assert_envelope(await client.post(f"{AUTH}/verify-email/resend"), 401, "unauthorized")
    alice = await make_account(client, "alice@example.com")
    first = token_in(await mailbox.received("alice@example.com"))
    resent = await client.post(f"{AUTH}/verify-email/resend", headers=alice.headers)
    assert resent.status_code == 202
    second = token_in(await mailbox.received("alice@example.com", 2))
    assert first != second
    assert_envelope(
        await client.post(f"{AUTH}/verify-email", json={"token": first}), 400, "bad_request"
    )
    ok = await client.post(f"{AUTH}/verify-email", json={"token": second})
    assert ok.status_code == 200


async def test_resend_sends_nothing_once_verified(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine
) -> None:
    alice = await make_account(client, "alice@example.com")
    token = token_in(await mailbox.received("alice@example.com"))
    await client.post(f"{AUTH}/verify-email", json={"token": token})
    resent = await client.post(f"{AUTH}/verify-email/resend", headers=alice.headers)
    assert resent.status_code == 202
    jobs = await jobs_finished(cleanup_engine)
    assert len(jobs) == 1  # the registration's only
    assert len(mailbox.to("alice@example.com")) == 1


async def test_changing_the_email_unverifies_it_and_verifies_the_new_one(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    alice = await make_account(client, "alice@example.com")
    old_token = token_in(await mailbox.received("alice@example.com"))
    await client.post(f"{AUTH}/verify-email", json={"token": old_token})
    body = {"email": "Alice2@Example.com", "current_password": PASSWORD}
    changed = await client.patch(ME, headers=alice.headers, json=body)
    assert changed.status_code == 200
    assert changed.json()["email_verified"] is False
    token = token_in(await mailbox.received("alice2@example.com"))
    verified = await client.post(f"{AUTH}/verify-email", json={"token": token})
    assert verified.json()["email"] == "alice2@example.com"
    assert verified.json()["email_verified"] is True


async def test_a_link_for_a_previous_address_does_not_verify_the_new_one(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    alice = await make_account(client, "alice@example.com")
    old_token = token_in(await mailbox.received("alice@example.com"))
    body = {"email": "alice2@example.com", "current_password": PASSWORD}
    assert (await client.patch(ME, headers=alice.headers, json=body)).status_code == 200
    response = await client.post(f"{AUTH}/verify-email", json={"token": old_token})
    assert_envelope(response, 400, "bad_request")
    assert (await client.get(ME, headers=alice.headers)).json()["email_verified"] is False


async def request_reset(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(f"{AUTH}/password-reset", json={"email": email})


async def test_password_reset_changes_the_password_and_ends_every_session(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    alice = await make_account(client, "alice@example.com")
    other_login = (await login(client, alice.email, PASSWORD)).json()
    accepted = await request_reset(client, "Alice@Example.com")
    assert accepted.status_code == 202
    message = await mailbox.received("alice@example.com", 2)  # after the verification email
    assert message["Subject"] == "Reset your Keel password"
    assert link_in(message).startswith("https://app.example.com/reset-password?token=")
    assert "30 minutes" in plain_text(message)

    body = {"token": token_in(message), "new_password": NEW_PASSWORD}
    confirmed = await client.post(f"{AUTH}/password-reset/confirm", json=body)
    assert confirmed.status_code == 204, confirmed.text
    # Every session is over: access and refresh tokens of both logins.
    assert_envelope(await client.get(ME, headers=alice.headers), 401, "unauthorized")
    refresh = await client.post(
        f"{AUTH}/refresh", json={"refresh_token": other_login["refresh_token"]}
    )
    assert_envelope(refresh, 401, "unauthorized")
    assert_envelope(await login(client, alice.email, PASSWORD), 401, "unauthorized")
    fresh = await login(client, alice.email, NEW_PASSWORD)
    assert fresh.status_code == 200
    me = await client.get(ME, headers={"Authorization": f"Bearer {fresh.json()['access_token']}"})
    assert me.json()["email_verified"] is True  # the reset link proved the address
    reused = await client.post(f"{AUTH}/password-reset/confirm", json=body)
    assert_envelope(reused, 400, "bad_request")


async def test_unknown_address_gets_the_same_answer_and_no_email(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine, alice: Account
) -> None:
    known = await request_reset(client, "alice@example.com")
    unknown = await request_reset(client, "nobody@example.com")
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    assert known.headers.keys() == unknown.headers.keys()
    jobs = await jobs_finished(cleanup_engine)
    assert {job.status for job in jobs} == {"succeeded"}
    assert mailbox.to("nobody@example.com") == []
    assert len(mailbox.to("alice@example.com")) == 2


async def test_inactive_accounts_get_no_reset_email(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine, alice: Account
) -> None:
    await mailbox.received("alice@example.com")
    async with cleanup_engine.begin() as conn:
        await conn.execute(update(User).values(is_active=False))
    assert (await request_reset(client, "alice@example.com")).status_code == 202
    await jobs_finished(cleanup_engine)
    assert len(mailbox.to("alice@example.com")) == 1


async def test_only_the_newest_reset_link_works(
    client: httpx.AsyncClient, mailbox: Mailbox, alice: Account
) -> None:
    await request_reset(client, alice.email)
    first = token_in(await mailbox.received(alice.email, 2))
    await request_reset(client, alice.email)
    second = token_in(await mailbox.received(alice.email, 3))
    old = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": first, "new_password": NEW_PASSWORD}
    )
    assert_envelope(old, 400, "bad_request")
    new = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": second, "new_password": NEW_PASSWORD}
    )
    assert new.status_code == 204


async def test_a_password_change_kills_outstanding_reset_links(
    client: httpx.AsyncClient, mailbox: Mailbox, alice: Account
) -> None:
    await request_reset(client, alice.email)
    token = token_in(await mailbox.received(alice.email, 2))
    changed = await client.post(
        f"{ME}/password",
        headers=alice.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 204
    response = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": token, "new_password": "another one 99"}
    )
    assert_envelope(response, 400, "bad_request")


async def test_an_expired_reset_link_is_refused(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine, alice: Account
) -> None:
    await request_reset(client, alice.email)
    token = token_in(await mailbox.received(alice.email, 2))
    async with cleanup_engine.begin() as conn:
        await conn.execute(update(AccountToken).values(expires_at=utc_now() - timedelta(seconds=1)))
    response = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert_envelope(response, 400, "bad_request")
    assert (await login(client, alice.email, PASSWORD)).status_code == 200


async def test_two_concurrent_confirms_with_one_token_succeed_once(
    client: httpx.AsyncClient, mailbox: Mailbox, cleanup_engine: AsyncEngine, alice: Account
) -> None:
    await request_reset(client, alice.email)
    token = token_in(await mailbox.received(alice.email, 2))
    bodies = [{"token": token, "new_password": f"{NEW_PASSWORD} {n}"} for n in range(2)]
    answers = await asyncio.gather(
        *(client.post(f"{AUTH}/password-reset/confirm", json=body) for body in bodies)
    )
    assert sorted(answer.status_code for answer in answers) == [204, 400]
    winner = bodies[[answer.status_code for answer in answers].index(204)]
    assert (await login(client, alice.email, winner["new_password"])).status_code == 200
    async with cleanup_engine.connect() as conn:
        live = await conn.scalar(select(AuthSession.id).where(AuthSession.revoked_at.is_(None)))
    assert live is not None  # only the login just made


async def test_reset_confirm_validates_the_new_password(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{AUTH}/password-reset/confirm", json={"token": "t", "new_password": "short"}
    )
    assert_envelope(response, 422, "validation_error")


async def test_tokens_never_reach_the_logs_when_emails_are_sent(
    client: httpx.AsyncClient, mailbox: Mailbox, capfd: pytest.CaptureFixture[str]
) -> None:
    alice = await make_account(client, "alice@example.com")
    verify = token_in(await mailbox.received("alice@example.com"))
    await client.post(f"{AUTH}/verify-email", json={"token": verify})
    await request_reset(client, alice.email)
    reset = token_in(await mailbox.received("alice@example.com", 2))
    body = {"token": reset, "new_password": NEW_PASSWORD}
    assert (await client.post(f"{AUTH}/password-reset/confirm", json=body)).status_code == 204
    logged = capfd.readouterr().err
    assert '"event":"email_sent"' in logged
    assert verify not in logged
    assert reset not in logged
