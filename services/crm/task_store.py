"""The CRM's SQL for tasks and their reminders."""
from __future__ import annotations

from datetime import datetime

TASK_COLUMNS = """t.task_id, t.customer_id, c.name AS customer_name, t.salesperson_id, t.kind, t.title, t.notes,
                  t.status, t.due_at, t.cause_key, t.revision, t.reminder_id, t.created_by, t.created_at,
                  t.updated_at, t.closed_at"""
TASKS_FROM = "tasks t JOIN customers c USING (customer_id)"


def insert_task(conn, *, task_id: str, customer_id: str, salesperson_id: str, kind: str, title: str, notes: str,
                due_at: datetime, cause_key: str | None, reminder_id: str, created_by: str,
                now: datetime) -> bool:
    """False when a task for the same cause (or with the same id) already exists."""
    row = conn.execute(
        """INSERT INTO tasks (task_id, customer_id, salesperson_id, kind, title, notes, due_at, cause_key,
                              reminder_id, created_by, created_at, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT DO NOTHING RETURNING task_id""",
        (task_id, customer_id, salesperson_id, kind, title, notes, due_at, cause_key, reminder_id, created_by,
         now, now)).fetchone()
    return row is not None


def task(conn, task_id: str, *, lock: bool = False) -> dict | None:
    # FOR UPDATE OF t: a reminder firing and a completion racing see one another's result.
    return conn.execute(f"SELECT {TASK_COLUMNS} FROM {TASKS_FROM} WHERE t.task_id = %s"
                        + (" FOR UPDATE OF t" if lock else ""), (task_id,)).fetchone()


def close_task(conn, task_id: str, status: str, note: str, now: datetime) -> None:
    conn.execute(
        """UPDATE tasks SET status = %s, closed_at = %s, updated_at = %s,
                            notes = CASE WHEN %s = '' THEN notes WHEN notes = '' THEN %s ELSE notes || E'\n' || %s END
           WHERE task_id = %s""", (status, now, now, note, note, note, task_id))


def reschedule(conn, task_id: str, due_at: datetime, revision: int, reminder_id: str, now: datetime) -> None:
    conn.execute("""UPDATE tasks SET due_at = %s, revision = %s, reminder_id = %s, updated_at = %s
                    WHERE task_id = %s""", (due_at, revision, reminder_id, now, task_id))


def assign(conn, task_id: str, salesperson_id: str, now: datetime) -> None:
    conn.execute("UPDATE tasks SET salesperson_id = %s, updated_at = %s WHERE task_id = %s",
                 (salesperson_id, now, task_id))


def open_automatic_reorder_tasks(conn, customer_id: str) -> list[dict]:
    return conn.execute(
        f"""SELECT {TASK_COLUMNS} FROM {TASKS_FROM}
            WHERE t.customer_id = %s AND t.status = 'open' AND starts_with(t.cause_key, 'reorder:')
            FOR UPDATE OF t""", (customer_id,)).fetchall()


def open_tasks_of_customer(conn, customer_id: str) -> list[dict]:
    return conn.execute(f"""SELECT {TASK_COLUMNS} FROM {TASKS_FROM}
                            WHERE t.customer_id = %s AND t.status = 'open' ORDER BY t.due_at""",
                        (customer_id,)).fetchall()


def open_tasks_of(conn, salesperson_id: str, *, due_from: datetime | None = None,
                  due_before: datetime | None = None, limit: int = 200, offset: int = 0) -> tuple[int, list[dict]]:
    """(how many, this page) of a salesperson's open tasks in [due_from, due_before), soonest first."""
    where = """t.salesperson_id = %(sp)s AND t.status = 'open'
               AND (%(from)s::timestamptz IS NULL OR t.due_at >= %(from)s)
               AND (%(before)s::timestamptz IS NULL OR t.due_at < %(before)s)"""
    params = {"sp": salesperson_id, "from": due_from, "before": due_before, "limit": limit, "offset": offset}
    total = conn.execute(f"SELECT count(*) AS n FROM tasks t WHERE {where}", params).fetchone()["n"]
    rows = conn.execute(f"""SELECT {TASK_COLUMNS} FROM {TASKS_FROM} WHERE {where}
                            ORDER BY t.due_at, t.task_id LIMIT %(limit)s OFFSET %(offset)s""", params).fetchall()
    return total, rows


def add_reminder(conn, reminder_id: str, task_id: str, fire_at: datetime) -> None:
    conn.execute("""INSERT INTO reminders (reminder_id, task_id, fire_at) VALUES (%s, %s, %s)
                    ON CONFLICT (reminder_id) DO UPDATE SET fire_at = EXCLUDED.fire_at""",
                 (reminder_id, task_id, fire_at))


def settle_reminder(conn, reminder_id: str, state: str, now: datetime) -> bool:
    """Moves a scheduled reminder to sent or withdrawn; False if it was settled already."""
    row = conn.execute(
        """UPDATE reminders SET state = %s, settled_at = %s
           WHERE reminder_id = %s AND state = 'scheduled' RETURNING reminder_id""",
        (state, now, reminder_id)).fetchone()
    return row is not None


def reminder(conn, reminder_id: str) -> dict | None:
    return conn.execute("SELECT * FROM reminders WHERE reminder_id = %s", (reminder_id,)).fetchone()
