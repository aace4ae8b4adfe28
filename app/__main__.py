"""Keel's command line: `python -m app serve | migrate | worker | create-superuser`."""

import typer

from app.config import get_settings

cli = typer.Typer(help="Keel: run, migrate and administer the service.", no_args_is_help=True)


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    reload: bool = typer.Option(False, help="Restart on code changes (development only)."),
) -> None:
    """Serve the API with Uvicorn (one process). Production: gunicorn -c gunicorn.conf.py."""
    import uvicorn

    get_settings()  # refuse bad configuration before the server starts
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        reload=reload,
        server_header=False,
        proxy_headers=False,
        access_log=False,
        log_config=None,
    )


@cli.command()
def migrate(
    revision: str = typer.Argument("head", help="Target revision."),
    down: bool = typer.Option(False, "--down", help="Downgrade to REVISION (a rollback)."),
) -> None:
    """Apply the Alembic migrations (same as `alembic upgrade head`), on DATABASE_DIRECT_URL.

    Waits for a database that does not answer yet (60 s), and gives up on a table lock it
    cannot take within 5 s, three times, with one line saying so (docs/runbook.md)."""
    from app import migrations

    get_settings()  # refuse bad configuration with one line before Alembic starts
    try:
        if down:
            migrations.downgrade(None, revision)
        else:
            migrations.upgrade(None, revision)
    except (migrations.MigrationLocked, migrations.DatabaseUnreachable) as error:
        typer.echo(f"Migration failed: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"database migrated to {revision}")


@cli.command()
def worker() -> None:
    """Run a background-job worker (needs REDIS_URL; without it the API runs the jobs)."""
    import asyncio
    import os

    # One process: its metrics live in its own registry, not in the multiprocess files that
    # PROMETHEUS_MULTIPROC_DIR (Gunicorn's, shared through the ConfigMap) would select.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from app.jobs.worker import run_worker

    settings = get_settings()
    if not settings.REDIS_URL:
        typer.echo("Refused: the worker needs REDIS_URL (without it the API runs jobs)", err=True)
        raise typer.Exit(2)
    asyncio.run(run_worker(settings))


@cli.command("create-superuser")
def create_superuser(
    email: str | None = typer.Option(None, help="Defaults to FIRST_SUPERUSER_EMAIL."),
    password: str | None = typer.Option(
        None, help="Defaults to FIRST_SUPERUSER_PASSWORD; prompted for when neither is set."
    ),
) -> None:
    """Create a superuser unless that email exists (the same as start-up does)."""
    import asyncio

    from app.api.v1.schemas.users import UserRegister
    from app.core import database
    from app.services import user_service

    settings = get_settings()
    secret = settings.FIRST_SUPERUSER_PASSWORD
    email = email or settings.FIRST_SUPERUSER_EMAIL or typer.prompt("Email")
    password = password or (secret.get_secret_value() if secret else None)
    password = password or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        valid = UserRegister(email=email, password=password)
    except ValueError as error:
        typer.echo(f"Refused: {error}", err=True)
        raise typer.Exit(2) from None

    async def run() -> str:
        engine = database.create_engine(settings)
        try:
            return await user_service.ensure_superuser(
                database.create_sessionmaker(engine), email=valid.email, password=valid.password
            )
        finally:
            await engine.dispose()

    outcome = asyncio.run(run())
    if outcome == "taken":
        typer.echo(f"Refused: {valid.email} belongs to a regular user; not promoted", err=True)
        raise typer.Exit(1)
    typer.echo(f"superuser {valid.email} {outcome}")


if __name__ == "__main__":
    cli()
