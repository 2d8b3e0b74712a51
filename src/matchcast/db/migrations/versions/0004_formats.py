"""formats: tournaments' format and Swiss rounds; matches' bracket and where the loser goes

Existing tournaments are single elimination and their matches are in the `main` bracket, so they
keep working as they were.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tournaments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("format", sa.String(length=30), nullable=False, server_default="single_elimination")
        )
        batch_op.add_column(sa.Column("rounds", sa.Integer(), nullable=True))
    with op.batch_alter_table("matches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bracket", sa.String(length=20), nullable=False, server_default="main"))
        batch_op.add_column(sa.Column("loser_next_match_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("loser_next_slot", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_matches_loser_next_match_id_matches"), "matches", ["loser_next_match_id"], ["id"]
        )
        batch_op.drop_constraint("uq_matches_slot", type_="unique")
        batch_op.create_unique_constraint("uq_matches_slot", ["tournament_id", "bracket", "round", "position"])


def downgrade() -> None:
    with op.batch_alter_table("matches", schema=None) as batch_op:
        batch_op.drop_constraint("uq_matches_slot", type_="unique")
        batch_op.create_unique_constraint("uq_matches_slot", ["tournament_id", "round", "position"])
        batch_op.drop_constraint(batch_op.f("fk_matches_loser_next_match_id_matches"), type_="foreignkey")
        batch_op.drop_column("loser_next_slot")
        batch_op.drop_column("loser_next_match_id")
        batch_op.drop_column("bracket")
    with op.batch_alter_table("tournaments", schema=None) as batch_op:
        batch_op.drop_column("rounds")
        batch_op.drop_column("format")
