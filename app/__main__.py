"""Keel's command line: `python -m app serve | migrate | create-superuser`."""

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
def migrate(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the Alembic migrations (same as `alembic upgrade head`)."""
    from app.core import migrations

    migrations.upgrade(get_settings().database_url, revision)
    typer.echo(f"database migrated to {revision}")


if __name__ == "__main__":
    cli()
