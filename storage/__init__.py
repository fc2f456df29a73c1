"""The database: SQLAlchemy models and engine; Optuna's RDB storage on the same URL."""
