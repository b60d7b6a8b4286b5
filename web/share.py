"""Sharing with friends: an ngrok tunnel to this server, its URL printed with a QR code."""

from __future__ import annotations

import logging
import sys

from flask import Flask

log = logging.getLogger("lanternslide")


def open_share(app: Flask, port: int, token: str) -> str | None:
    """Open an ngrok tunnel to ``port``; print its URL and a QR code.  On any problem, say what to do and
    return None: the game keeps running locally either way.  The token is never logged."""
    if not token:
        log.error("Sharing needs a free ngrok account. Sign up at ngrok.com, copy your authtoken from the "
                  "dashboard, then start again with NGROK_AUTHTOKEN=<token> python app.py --share "
                  "(or --ngrok-authtoken). The game is running locally meanwhile.")
        return None
    try:
        import ngrok

        listener = ngrok.forward(f"127.0.0.1:{port}", authtoken=token)
        url = listener.url()
    except Exception as exc:  # noqa: BLE001 - any SDK failure is told to the user, without the token
        log.error("Could not open the public link: %s. Check the authtoken and the internet connection; "
                  "the game is running locally meanwhile.", str(exc).replace(token, "<token>"))
        return None
    app.extensions["share_url"] = url
    import segno

    log.info("Friends can play at %s", url)
    segno.make(url, error="m").terminal(out=sys.stdout, compact=True)
    sys.stdout.write(f"\n  Share this link with your friends: {url}\n\n")
    sys.stdout.flush()
    return url


def close_share(url: str) -> None:
    """Close the tunnel opened by `open_share`."""
    import ngrok

    ngrok.disconnect(url)
    log.info("closed the public link %s", url)
