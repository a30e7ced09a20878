"""Commands of the HTTP API: serve it, and manage its tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tracejury.cli.app import _engine, _print_json, _settings, app, out

token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless you mean otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    otlp_grpc_port: Annotated[int | None, typer.Option(
        help="Also receive OTLP over gRPC on this port (4317 is OTLP's); off unless given.", min=1, max=65535)] = None,
    otlp_grpc_host: Annotated[str | None, typer.Option(help="Address for OTLP/gRPC (default: --host).")] = None,
) -> None:
    """Serve the HTTP API, the review page and OTLP (HTTP; gRPC with --otlp-grpc-port).

    Sweeper processes beside the server (TRACEJURY_OTLP_SWEEPERS) assemble the staged OTLP
    traces; every worker runs one too."""
    import uvicorn

    settings = _settings()
    engine = _engine(settings)  # migrate once before the server processes start
    grpc_server = None
    if otlp_grpc_port is not None:
        from tracejury.api.otlp_grpc import start_grpc_server

        try:
            grpc_server = start_grpc_server(lambda: engine, settings, otlp_grpc_host or host, otlp_grpc_port)
        except OSError as exc:
            raise typer.BadParameter(str(exc), param_hint="--otlp-grpc-port") from exc
        out.print(f"OTLP/gRPC on {otlp_grpc_host or host}:{otlp_grpc_port}")
    from workers.otlp import start_sweeper_processes

    sweepers = start_sweeper_processes(settings.otlp_sweepers)  # assemble the OTLP traces staged by any process
    try:
        uvicorn.run("tracejury.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=False)  # fmt: skip
    finally:
        if grpc_server is not None:
            grpc_server.stop(5).wait()
        for sweeper in sweepers:
            sweeper.terminate()
        for sweeper in sweepers:
            sweeper.join(15)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="ingest, reviewer or admin.")],
    name: Annotated[str | None, typer.Option(help="Who or what the token is for.")] = None,
    json: Annotated[bool, typer.Option("--json", help='Print {"token": ..., "id": ..., "role": ...}.')] = False,
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from tracejury.store.tokens import create_token

    token, principal = create_token(_engine(_settings()), role, name)
    if json:
        _print_json({"token": token, "id": principal.token_id, "role": principal.role})
    else:
        out.print(f"token {principal.token_id} ({principal.role}); shown once, keep it safe:")
        typer.echo(token)


@token_app.command("list")
def token_list(json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Tokens by id, role and name (never the token itself)."""
    from tracejury.store.tokens import list_tokens

    rows = list_tokens(_engine(_settings()))
    if json:
        _print_json(rows)
        return
    table = Table("id", "role", "name", "created", "revoked")
    for r in rows:
        table.add_row(*(str(r[k] or "") for k in ("id", "role", "name", "createdAt", "revokedAt")))
    out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (from token list).")]) -> None:
    """Revoke a token; requests with it get 401 from then on."""
    from tracejury.store.tokens import revoke_token

    revoke_token(_engine(_settings()), token_id)
    out.print(f"revoked {token_id}")
