"""A small Django app on Django's default SQLite settings, for lockbench to load."""
