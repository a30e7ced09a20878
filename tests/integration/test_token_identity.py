"""Token identity (issue 15, item 3): names are unique and never ``token:…``, in the store and
in ``tracejury token create``; migration 0013 suffixes the duplicates a store already holds."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select

from tests.integration.procs import EXE
from tracejury.core.errors import Conflict, InvalidInput
from tracejury.store.engine import make_engine, migrate
from tracejury.store.tables import ApiToken
from tracejury.store.tokens import create_token, list_tokens

_T = ApiToken.__table__


def test_a_taken_name_is_refused_in_the_store(engine: Engine) -> None:
    create_token(engine, "reviewer", "ana")
    with pytest.raises(Conflict, match="a token named 'ana' already exists"):
        create_token(engine, "admin", "ana")
    create_token(engine, "reviewer", "ana-2")
    create_token(engine, "reviewer")  # any number of tokens without a name
    create_token(engine, "reviewer")
    assert sorted(str(t["name"]) for t in list_tokens(engine)) == ["None", "None", "ana", "ana-2"]


@pytest.mark.parametrize("name", ["token:abc123", "TOKEN:abc", "token:", " ", "a\x00b", "x" * 129])
def test_reserved_and_unprintable_names_are_refused(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidInput, match="--name"):
        create_token(engine, "reviewer", name)
    assert list_tokens(engine) == []


def test_cli_token_create_refuses_a_taken_name_in_one_line(db_url: str) -> None:
    env = {**os.environ, "TRACEJURY_DATABASE_URL": db_url}

    def create(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EXE, "token", "create", *args], env=env, capture_output=True, text=True, timeout=60)

    assert create("--role", "reviewer", "--name", "ana").returncode == 0
    again = create("--role", "admin", "--name", "ana")
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr == ("error: --name: a token named 'ana' already exists (names are unique; "
                            "see tracejury token list)\n")  # fmt: skip
    reserved = create("--role", "reviewer", "--name", "token:0123abcd")
    assert reserved.returncode == 2 and reserved.stderr.count("\n") == 1 and "reserved" in reserved.stderr


def test_0013_suffixes_duplicate_names_oldest_first(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine, "0012")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        names = ["ana", "ana", "ana-2", "ana", "ben", None, None, "ben"]
        with engine.begin() as conn:
            conn.execute(insert(_T), [
                {"id": f"id{i}", "token_hash": f"h{i}", "role": "reviewer", "name": name,
                 "created_at": t0 + timedelta(minutes=i), "revoked_at": None}
                for i, name in enumerate(names)
            ])  # fmt: skip
        migrate(engine)
        with engine.connect() as conn:
            got = {r.id: r.name for r in conn.execute(select(_T.c.id, _T.c.name))}
        assert got == {"id0": "ana", "id1": "ana-3", "id2": "ana-2", "id3": "ana-4", "id4": "ben",
                       "id5": None, "id6": None, "id7": "ben-2"}  # fmt: skip
        with pytest.raises(Conflict):
            create_token(engine, "reviewer", "ana-3")  # the unique index holds from now on
    finally:
        engine.dispose()
