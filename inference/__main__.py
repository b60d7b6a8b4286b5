"""Run the A1111-compatible API alone, for a GPU box:

    python -m inference serve [--host 0.0.0.0 --sdapi-auth user:pass] [--port 7861] [--model ID_OR_PATH] ...

It takes the game's settings table (``python -m inference serve --help``) less the game's own settings.  Any A1111
client, or a Lanternslide game started with ``--backend remote --api-url http://HOST:7861``, can then use it.  This
file is only the entry point: the server is the same app factory as the game's (app.py), without the game.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "serve":
        sys.stderr.write("usage: python -m inference serve [options]   (--help lists them)\n")
        return 2
    from app import main as serve

    return serve(args[1:], api_alone=True)


if __name__ == "__main__":
    sys.exit(main())
