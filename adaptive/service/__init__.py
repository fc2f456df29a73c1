"""The HTTP service (FastAPI): automated operator selection, studies in background workers, schedules."""
