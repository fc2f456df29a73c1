from adaptive.cli import app

app()
