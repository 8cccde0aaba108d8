"""A database superuser against the audit trail, on a real Postgres: rewrites that the hash
chain alone misses (re-hashing with the project's own function, cutting the tail and moving
the head) are caught by the signed checkpoints kept outside the database, and so are edits
of the checkpoint file itself. What is NOT caught is shown too: a rewrite of events written
after the last checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from reports import audit, store
from reports.audit_anchor import CheckpointError, read_checkpoints, verify_with_checkpoints, write_checkpoint
from worker.cli import main as cli

KEY = b"k" * 40  # in production: ECGWL_AUDIT_CHECKPOINT_KEY, 32+ random characters


@pytest.fixture
def pg(postgres_url: str) -> sa.Engine:
    store.upgrade(postgres_url)
    engine = store.make_engine(postgres_url)
    yield engine
    engine.dispose()


def _append(engine: sa.Engine, count: int) -> None:
    for n in range(count):
        with store.session_scope(engine) as session:
            audit.append(session, actor="worker:report", action="report.created", entity_type="study",
                         entity_id=n, details={"n": n})


def _checkpoint(engine: sa.Engine, path: Path) -> None:
    with store.session_scope(engine) as session:
        assert write_checkpoint(session, path, KEY) is not None


def _superuser(engine: sa.Engine, *statements: str, params: list[dict] | None = None) -> None:
    """What a superuser can do: switch the append-only triggers off for a transaction."""
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            connection.execute(sa.text(statement), params or {})


def _rewrite_and_rehash(engine: sa.Engine, from_id: int, new_actor: str) -> None:
    """Change one event and recompute every hash after it, then move the head: the forgery
    the chain alone cannot see (the hash function is public)."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM audit_events WHERE id >= :i ORDER BY id"),
                                  {"i": from_id}).mappings().all()
    previous = rows[0]["prev_hash"]
    updates = []
    for row in rows:
        actor = new_actor if row["id"] == from_id else row["actor"]
        row_hash = audit.compute_hash(id=row["id"], at=row["at"], actor=actor, action=row["action"],
                                      entity_type=row["entity_type"], entity_id=row["entity_id"],
                                      details=row["details"], prev_hash=previous)
        updates.append({"id": row["id"], "actor": actor, "prev": previous, "hash": row_hash})
        previous = row_hash
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        connection.execute(sa.text("UPDATE audit_events SET actor = :actor, prev_hash = :prev, row_hash = :hash "
                                   "WHERE id = :id"), updates)
        connection.execute(sa.text("UPDATE audit_head SET last_hash = :h WHERE id = 1"), {"h": previous})


def _verify(engine: sa.Engine, path: Path):
    with store.session_scope(engine) as session:
        return audit.verify_chain(session), verify_with_checkpoints(session, path, KEY)


def test_a_rehashed_rewrite_passes_the_chain_but_not_the_checkpoint(pg: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    _append(pg, 20)
    _checkpoint(pg, path)
    _append(pg, 5)
    _rewrite_and_rehash(pg, 5, new_actor="mallory")
    chain, anchored = _verify(pg, path)
    assert chain.ok  # the forgery is self-consistent
    assert not anchored.ok and anchored.chain.broken_id == 20
    assert "differs from the signed checkpoint" in anchored.describe()


def test_cutting_the_tail_and_moving_the_head_is_caught(pg: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    _append(pg, 20)
    _checkpoint(pg, path)
    with pg.connect() as connection:
        hash_17 = connection.execute(sa.text("SELECT row_hash FROM audit_events WHERE id = 17")).scalar_one()
    _superuser(pg, "DELETE FROM audit_events WHERE id > 17",
               "UPDATE audit_head SET last_id = 17, last_hash = :h WHERE id = 1", params=[{"h": hash_17}])
    chain, anchored = _verify(pg, path)
    assert chain.ok
    assert not anchored.ok and "names event 20, but the chain ends at 17" in anchored.describe()


def test_every_checkpoint_is_checked_not_only_the_last(pg: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    for _ in range(3):
        _append(pg, 4)
        _checkpoint(pg, path)
    assert [c.last_id for c in read_checkpoints(path, KEY)] == [4, 8, 12]
    _rewrite_and_rehash(pg, 2, new_actor="mallory")
    _, anchored = _verify(pg, path)
    assert anchored.chain.broken_id == 4  # the first checkpoint after the change


def test_a_change_after_the_last_checkpoint_is_not_caught(pg: sa.Engine, tmp_path: Path) -> None:
    """The documented limit: events newer than the last checkpoint are protected by the chain only."""
    path = tmp_path / "checkpoints.jsonl"
    _append(pg, 10)
    _checkpoint(pg, path)
    _append(pg, 3)
    _rewrite_and_rehash(pg, 12, new_actor="mallory")
    _, anchored = _verify(pg, path)
    assert anchored.ok


def test_a_broken_chain_is_never_signed(pg: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    _append(pg, 5)
    _checkpoint(pg, path)
    _append(pg, 3)
    _superuser(pg, "UPDATE audit_events SET actor = 'mallory' WHERE id = 7")
    with store.session_scope(pg) as session, pytest.raises(CheckpointError, match="not signed.*event 7"):
        write_checkpoint(session, path, KEY)
    assert len(read_checkpoints(path, KEY)) == 1


def test_an_unchanged_head_writes_no_new_line(pg: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    _append(pg, 2)
    _checkpoint(pg, path)
    with store.session_scope(pg) as session:
        assert write_checkpoint(session, path, KEY) is None
    assert len(path.read_text().splitlines()) == 1


def test_edits_of_the_checkpoint_file_are_caught(pg: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    for _ in range(3):
        _append(pg, 2)
        _checkpoint(pg, path)
    lines = path.read_text().splitlines()

    path.write_text("\n".join([lines[0], lines[1].replace('"last_id":4', '"last_id":3'), lines[2]]) + "\n")
    with pytest.raises(CheckpointError, match="line 2: the signature does not match"):
        read_checkpoints(path, KEY)
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    with pytest.raises(CheckpointError, match="line 2 does not follow"):
        read_checkpoints(path, KEY)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match="signed with another key"):
        read_checkpoints(path, b"x" * 40)
    _, anchored = _verify(pg, path)
    assert anchored.ok and anchored.checkpoints == 3


def test_the_commands(pg: sa.Engine, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "outside" / "checkpoints.jsonl"
    monkeypatch.setenv("ECGWL_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ECGWL_AUDIT_CHECKPOINT_KEY", KEY.decode())
    monkeypatch.setenv("ECGWL_AUDIT_CHECKPOINT_PATH", str(path))
    _append(pg, 6)
    runner = CliRunner()
    signed = runner.invoke(cli, ["audit", "checkpoint"])
    assert signed.exit_code == 0 and "event 6 signed" in signed.output
    assert runner.invoke(cli, ["audit", "checkpoint"]).output.startswith("audit checkpoint: the head has not moved")
    intact = runner.invoke(cli, ["audit", "verify"])
    assert intact.exit_code == 0 and "1 signed checkpoint(s)" in intact.output
    _rewrite_and_rehash(pg, 3, new_actor="mallory")
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1 and "BROKEN at event 6" in broken.output
    refused = runner.invoke(cli, ["audit", "checkpoint"])  # the forged head is never signed
    assert refused.exit_code == 1 and "REFUSED" in refused.output
    assert len(path.read_text().splitlines()) == 1
    monkeypatch.delenv("ECGWL_AUDIT_CHECKPOINT_KEY")
    unkeyed = runner.invoke(cli, ["audit", "verify"])
    assert unkeyed.exit_code == 0 and "checked against itself only" in unkeyed.output
