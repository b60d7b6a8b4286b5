"""The web server (waitress) for the settings: threads, connections, whose proxy headers to trust, and a check
that picture streams leave threads for pages."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("lanternslide")


def serve_options(settings: dict[str, Any]) -> dict[str, Any]:
    """waitress's settings for these Lanternslide settings: threads, connections, and whose proxy headers to trust.

    Behind a proxy (``--share``, ``--behind-proxy``) waitress takes the client's address from the last hop of
    X-Forwarded-For and the scheme from X-Forwarded-Proto, but only on connections from ``TRUSTED_PROXY``; it drops
    every X-Forwarded-*/Forwarded header it does not trust, always, so a stranger cannot pose as another client.
    """
    options: dict[str, Any] = {
        "host": settings["HOST"], "port": settings["PORT"], "threads": settings["THREADS"], "ident": "Lanternslide",
        # poll() rather than select(), which stops at 1024 descriptors; idle keep-alive connections close sooner
        "connection_limit": settings["CONNECTIONS"], "asyncore_use_poll": True, "channel_timeout": 30,
        "clear_untrusted_proxy_headers": True,
    }
    if settings.get("SHARE") or settings["BEHIND_PROXY"]:
        options.update(trusted_proxy=settings["TRUSTED_PROXY"], trusted_proxy_count=1,
                       trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"})
    return options


def check_capacity(settings: dict[str, Any]) -> str:
    """An error message when the streams would leave no server thread for pages, else ''."""
    if settings["THREADS"] < 2 or not 0 < settings["MAX_STREAMS"] <= settings["THREADS"] - max(
        8, settings["THREADS"] // 4
    ):
        return (f"--max-streams {settings['MAX_STREAMS']} with --threads {settings['THREADS']}: live picture streams "
                f"each hold a thread, so keep at least a quarter of the threads (8 or more) for pages: "
                f"--max-streams between 1 and {max(0, settings['THREADS'] - max(8, settings['THREADS'] // 4))}")
    return ""


def raise_open_files(wanted: int) -> None:
    """Let this process hold ``wanted`` open files (one per connection), up to what the system allows."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            if target < wanted:
                log.warning("only %d open files are allowed (ulimit -n); fewer than --connections %d", target, wanted)
    except (ImportError, ValueError, OSError) as exc:  # not on this system: waitress then stops accepting earlier
        log.warning("could not raise the open-file limit: %s", exc)
