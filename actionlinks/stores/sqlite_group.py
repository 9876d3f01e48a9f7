"""Group commit: the one-statement writes of one event-loop turn, one transaction.

Under load many requests reach their write in the same turn of the event loop
(a use, a "used" stamp, a mint). A commit costs more than the statement, so
they wait for the end of the turn and commit together, each with its own
answer. One statement that fails rolls the group back, and each statement runs
again on its own, so that it fails only its own caller.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

GROUP_LIMIT = 256
"""The most statements one group commits (the rest start the next group)."""


@dataclass(frozen=True, slots=True, eq=False)
class Pending:
    """One statement waiting for its group, and where its answer goes."""

    sql: str
    parameters: tuple[Any, ...]
    answer: asyncio.Future[int]


Outcome = int | Exception
"""What one statement did: the number of rows it changed, or its error."""


def is_busy(exc: BaseException) -> bool:
    """Whether another connection held the write lock (nothing was done)."""
    return (
        isinstance(exc, sqlite3.OperationalError)
        and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    )


def together(connection: sqlite3.Connection, group: Sequence[Pending]) -> list[int]:
    """Run the statements of ``group`` as one transaction; their changed rows.

    One statement runs by itself (autocommit); more in ``BEGIN IMMEDIATE`` …
    ``COMMIT``.

    Raises:
        Exception: the first failure; nothing of the group was kept.
    """
    if len(group) == 1:
        (pending,) = group
        return [connection.execute(pending.sql, pending.parameters).rowcount]
    connection.execute("BEGIN IMMEDIATE")
    try:
        changed = [
            connection.execute(pending.sql, pending.parameters).rowcount
            for pending in group
        ]
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return changed


def apply(connection: sqlite3.Connection, group: Sequence[Pending]) -> list[Outcome]:
    """Run ``group`` together, or, if a statement fails, each statement by itself.

    So one bad statement (or a bad parameter) fails only its own caller. A
    lock that stayed busy fails them all at once: alone, each would wait as
    long again.

    Raises:
        sqlite3.OperationalError: the write lock stayed busy.
    """
    try:
        return list(together(connection, group))
    except Exception as exc:
        if is_busy(exc):
            raise
        return [_alone(connection, pending) for pending in group]


def _alone(connection: sqlite3.Connection, pending: Pending) -> Outcome:
    try:
        return connection.execute(pending.sql, pending.parameters).rowcount
    except Exception as exc:  # the caller's answer, whatever it is  # noqa: BLE001
        return exc
