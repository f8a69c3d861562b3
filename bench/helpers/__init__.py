"""Small helpers for bench/migrate.py: processes, QMP, guest console, reports."""
