"""The database: one URL (SQLite by default, PostgreSQL for many machines) holding Optuna's studies and
the project's own tables (targets, selections, plaintext references)."""
