#!/usr/bin/env python3
"""Starts the dot_fleet test's Django OAuth Toolkit server.

Run with the venv's python (the test does: target/dot-venv/bin/python
tests/dot/serve.py). Environment:

- DOT_DB_DIR (required): a directory for the SQLite database; a new one per
  server, so every run starts with no tokens.
- PORT: the port on 127.0.0.1 (default 0: a free one).
- DOT_ACCESS_TOKEN_SECONDS: access token lifetime (default 4).
- EXIT_ON_STDIN_EOF=1: exit when stdin closes (so that a server whose test
  process died does not linger).

It migrates the database, creates the client and user (dot_setup), then
serves with Django's threaded WSGI server (what runserver uses, one thread
per connection) and prints one line of JSON when it accepts connections:

  {"base": "http://127.0.0.1:PORT", "port": PORT, "client_id": ..,
   "client_secret": .., "username": .., "password": ..}
"""

import json
import os
import sqlite3
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dotserver.settings")


def main():
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    from dotserver.management.commands import dot_setup

    call_command("migrate", verbosity=0, interactive=False)
    # WAL: readers (every API call) do not wait for a refresh's write.
    # The mode is kept in the database file.
    db = sqlite3.connect(settings.DATABASES["default"]["NAME"])
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    call_command("dot_setup")

    class Server(ThreadedWSGIServer):
        # 8 processes x 8 concurrent requests connect at once; the default
        # backlog (10) would drop SYNs and add a second of retransmission.
        request_queue_size = 256

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):
            pass

    server = Server(("127.0.0.1", int(os.environ.get("PORT", "0"))), QuietHandler)
    server.set_app(get_wsgi_application())
    port = server.server_address[1]

    if os.environ.get("EXIT_ON_STDIN_EOF") == "1":

        def exit_on_eof():
            sys.stdin.read()
            os._exit(0)

        threading.Thread(target=exit_on_eof, daemon=True).start()

    ready = {
        "base": f"http://127.0.0.1:{port}",
        "port": port,
        "client_id": dot_setup.CLIENT_ID,
        "client_secret": dot_setup.CLIENT_SECRET,
        "username": dot_setup.USERNAME,
        "password": dot_setup.PASSWORD,
    }
    print(json.dumps(ready), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
