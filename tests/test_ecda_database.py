"""The ECDA storage layer: schema versions, unreachable servers, passwords kept out of messages."""

import sqlite3

import pytest
from typer.testing import CliRunner

from compass.cli import app
from compass.ecda import Registry
from compass.ecda.database import Database, redact
from compass.ecda.jobs import JobQueue
from compass.ecda.store import QueryStore
from compass.errors import ConfigError


def test_a_database_from_a_newer_compass_is_refused(database):
    QueryStore(database).close()
    with Database(database).connect() as con:
        con.execute("UPDATE compass_schema SET version = 99 WHERE component = 'queries'")
    with pytest.raises(ConfigError, match="schema version 99; this COMPASS knows versions up to 1"):
        QueryStore(database)
    JobQueue(database)  # other components of the same database are unaffected


def test_a_store_from_before_schema_versions_is_adopted(tmp_path):
    """A query store written before ``compass_schema`` existed opens with its rows."""
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE queries (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, text TEXT NOT NULL, "
                      "lang TEXT NOT NULL, ts REAL, received REAL NOT NULL);"
                      "INSERT INTO queries VALUES (1, 'a', 'old text', 'swh', NULL, 0);")
    con.close()
    store = QueryStore(path)
    assert store.add([("a", "again", "swh", None), ("b", "new", "swh", None)]).seqs == [1, 2]
    assert [q.text for q in store.after(0, 10)] == ["old text", "new"]


def test_an_unreachable_server_is_a_clear_error_without_the_password():
    url = "postgresql://compass:hunter2@127.0.0.1:1/compass"
    with pytest.raises(ConfigError, match=r"registry postgresql://compass:\*\*\*@127.0.0.1:1/compass") as err:
        Registry(url)
    assert "hunter2" not in str(err.value)
    result = CliRunner().invoke(app, ["adapters", "list", "--registry", url])
    assert result.exit_code == 2 and "hunter2" not in result.output
    assert result.output.startswith("error: registry postgresql://compass:***@127.0.0.1:1/compass")


def test_redact_hides_passwords_in_the_user_part_and_the_query():
    assert redact("postgresql://u:p@h:5432/d?sslmode=require") == "postgresql://u:***@h:5432/d?sslmode=require"
    assert redact("postgresql://h/d?user=u&password=p") == "postgresql://h/d?user=u&password=***"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"
    assert redact("/srv/queries.sqlite") == "/srv/queries.sqlite"
