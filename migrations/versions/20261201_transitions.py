"""transitions: the database refuses any move of a target, a job or a callback that
app/domain/states.py does not list

Revision ID: 20261201_transitions
Revises: 20261123_surfaces
Create Date: 2026-12-01 16:00:00

The lists below are the domain's tables as of this revision, written out: a migration must
not change when the code does. tests/integration/test_transitions.py walks every pair of
positions against these triggers and fails when they and the domain disagree; a new state
or move goes into app/domain/states.py and into a new migration that replaces the lists.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "20261201_transitions"
down_revision: str | None = "20261123_surfaces"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TARGET_MOVES = (
    "pending/bind>cancelled/bind",
    "pending/bind>running/bind",
    "retrying/bind>cancelled/bind",
    "retrying/bind>running/bind",
    "running/bind>failed/bind",
    "running/bind>pending/bind",
    "running/bind>retrying/bind",
    "running/bind>running/verify",
    "running/bind>succeeded/bind",
    "running/verify>failed/verify",
    "running/verify>succeeded/verify",
)
JOB_MOVES = (
    "queued>cancelled",
    "queued>failed",
    "queued>partial",
    "queued>running",
    "queued>succeeded",
    "running>cancelled",
    "running>failed",
    "running>partial",
    "running>succeeded",
)
CALLBACK_MOVES = ("pending>delivered", "pending>failed")


def _listed(moves: Sequence[str]) -> str:
    return ", ".join(f"'{m}'" for m in moves)


# (trigger, table, columns it watches, the move as text, the moves allowed)
GUARDS = (
    (
        "targets_moves",
        "targets",
        ("state", "phase"),
        "OLD.state || '/' || OLD.phase || '>' || NEW.state || '/' || NEW.phase",
        TARGET_MOVES,
    ),
    ("jobs_moves", "jobs", ("state",), "OLD.state || '>' || NEW.state", JOB_MOVES),
    (
        "jobs_callback_moves",
        "jobs",
        ("callback_state",),
        "COALESCE(OLD.callback_state, '') || '>' || COALESCE(NEW.callback_state, '')",
        CALLBACK_MOVES,
    ),
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # Called only for a refused move (the WHEN clause decides), so it costs nothing on the
        # moves keybind makes.
        op.execute(
            """
            CREATE FUNCTION keybind_refuse_move() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
              o jsonb := to_jsonb(OLD);
              n jsonb := to_jsonb(NEW);
              c text;
              src text := '';
              dst text := '';
            BEGIN
              FOREACH c IN ARRAY TG_ARGV LOOP
                src := src || '/' || coalesce(o->>c, 'null');
                dst := dst || '/' || coalesce(n->>c, 'null');
              END LOOP;
              RAISE EXCEPTION 'keybind: % % may not move % -> %', TG_TABLE_NAME, o->>'id',
                substr(src, 2), substr(dst, 2) USING ERRCODE = 'check_violation';
            END $$
            """
        )
    for name, table, columns, move, allowed in GUARDS:
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
        when = f"({changed}) AND ({move}) NOT IN ({_listed(allowed)})"
        of = ", ".join(columns)
        if postgres:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE OF {of} ON {table} FOR EACH ROW"
                f" WHEN ({when}) EXECUTE FUNCTION keybind_refuse_move({_listed(columns)})"
            )
        else:
            when = when.replace("IS DISTINCT FROM", "IS NOT")
            op.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE OF {of} ON {table} FOR EACH ROW"
                f" WHEN {when} BEGIN"
                f" SELECT RAISE(ABORT, 'keybind: {table} may not move ({name})'); END"
            )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in GUARDS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS keybind_refuse_move()")
