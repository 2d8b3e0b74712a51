"""results: reports with confirmation deadlines; tournaments' best_of

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tournaments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("best_of", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("match_id", sa.Integer(), nullable=False),
        sa.Column("reported_by_id", sa.Integer(), nullable=False),
        sa.Column("participant1_score", sa.Integer(), nullable=False),
        sa.Column("participant2_score", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("confirmed_by", sa.String(length=20), nullable=True),
        sa.Column("confirm_by", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["match_id"], ["matches.id"], name=op.f("fk_reports_match_id_matches")),
        sa.ForeignKeyConstraint(["reported_by_id"], ["users.id"], name=op.f("fk_reports_reported_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_match_id"), ["match_id"], unique=False)
        batch_op.create_index("ix_reports_status_confirm_by", ["status", "confirm_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_status_confirm_by")
        batch_op.drop_index(batch_op.f("ix_reports_match_id"))
    op.drop_table("reports")
    with op.batch_alter_table("tournaments", schema=None) as batch_op:
        batch_op.drop_column("best_of")
