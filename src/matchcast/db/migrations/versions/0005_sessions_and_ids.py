"""sessions and ids: users' session epoch; ids never reused on SQLite

`users.session_epoch` is bumped by logout and a password change, which ends every session cookie
signed before. On SQLite, every table with an integer id is recreated with AUTOINCREMENT, so the
id of a deleted row is never handed out again (a deleted user's token must not open the next
account). Rows and ids are kept. PostgreSQL's sequences never reuse an id: nothing to do there.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Referenced tables first, as tables.py declares them.
TABLES = ("users", "tournaments", "registrations", "matches", "disputes", "reports", "webhooks")


def recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass  # recreating the table is the change


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
    recreate(autoincrement=True)


def downgrade() -> None:
    recreate(autoincrement=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
