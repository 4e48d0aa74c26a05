#!/usr/bin/env python3
"""Django's command-line utility for the dot_fleet test server.

Needs DOT_DB_DIR (where the SQLite database goes). serve.py is what the
test runs; this is for looking around by hand:

    DOT_DB_DIR=/tmp/dot target/dot-venv/bin/python tests/dot/manage.py migrate
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dotserver.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
