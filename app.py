"""Lanternslide: the app factory and the command line.

    python app.py [--host 127.0.0.1] [--port 5000] [--model ID_OR_PATH] [--share] ...
    python -m inference serve [--port 7861] ...        (the A1111-compatible API alone, for a GPU box)

Every setting is a flag and an environment variable (``LANTERNSLIDE_<NAME>``, see web/settings.py);
``python app.py --help`` lists them.  The factory only composes: settings, the instance folder and session key,
the services (web/services.py), the public-link hardening (web/security.py), the blueprints and the error pages.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from web import errors
from web import security
from web import services
from web.settings import SETTINGS
from web.settings import build_parser
from web.settings import settings_from_env

log = logging.getLogger("lanternslide")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Lanternslide app.  ``config`` overrides settings (tests pass a mapping here); ``API_ALONE: True``
    builds the A1111-compatible API without the game (``python -m inference serve``)."""
    from web import covers
    from web import play
    from web import sdapi
    from web.admin import init_app as init_admin
    from web.cli import bake_command
    from web.sdapi import exposure

    # 1. Settings, the instance folder and the session key.
    settings = settings_from_env()
    settings.update(config or {})
    api_alone = bool(settings.get("API_ALONE"))
    app = Flask(__name__, instance_path=str(Path(settings["INSTANCE"]).resolve()))
    app.config.update(settings)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=90)
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # no form or JSON body of ours comes near this
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.secret_key = security.session_key(Path(app.instance_path))
    # 2. The stories and players (the game only), and the image service in front of the backend.
    services.init_services(app, with_stories=not api_alone)
    # 3. What a public link needs: the proxy's headers, secure cookies, CSRF, rate limits, security headers.
    limiter = security.harden(app)
    # 4. Pages, the A1111 API, the admin pages and the error pages.
    rate_limit = limiter.limit(app.config["RATE_LIMIT"])
    if not api_alone:
        rate_limit(play.bp)
        rate_limit(covers.bp)
        app.register_blueprint(play.bp)
        app.register_blueprint(covers.bp)
        init_admin(app)
        app.cli.add_command(bake_command)
    sdapi.init_app(app, flags={k.lower(): v for k, v in app.config.items() if k in {x.key for x in SETTINGS}},
                   limit=rate_limit)
    if api_alone and app.extensions["sdapi"].off:  # the API alone with the API off would serve nothing
        raise ValueError(f"--sdapi-auth: {exposure(app.config['HOST'])} lets other machines reach the API; set "
                         "--sdapi-auth user:password (or LANTERNSLIDE_SDAPI_AUTH), or listen on 127.0.0.1 only")
    app.add_template_filter(lambda seconds: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)), "timestamp")
    errors.init_app(app)
    return app


def main(argv: list[str] | None = None, api_alone: bool = False) -> int:
    """Parse the command line, build the app and serve it with waitress until interrupted."""
    started = time.perf_counter()
    try:
        args = vars(build_parser(api_alone).parse_args(argv))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)  # logging is not set up before the log level is known
        return 2
    logging.basicConfig(level=args["LOG_LEVEL"].upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from waitress import serve

    from web.sdapi import api_status
    from web.server import check_capacity
    from web.server import raise_open_files
    from web.server import serve_options
    from web.share import close_share
    from web.share import open_share

    problem = check_capacity(args)
    if problem:
        log.error("error: %s", problem)
        return 2
    try:
        app = create_app({**args, "API_ALONE": api_alone})
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    (log.warning if app.extensions["sdapi"].off else log.info)("%s", api_status(app))
    options = serve_options(args)
    raise_open_files(args["CONNECTIONS"] + 64)
    if "trusted_proxy" in options:
        log.info("behind a proxy: a client's address and scheme come from X-Forwarded-For/-Proto, trusted only on "
                 "connections from %s (--trusted-proxy)", options["trusted_proxy"])
    host = "localhost" if args["HOST"] in ("127.0.0.1", "0.0.0.0") else args["HOST"]
    where = f"http://{host}:{args['PORT']}" + ("/sdapi/v1" if api_alone else "/")
    log.info("Lanternslide%s is up in %.2f s: %s", " (API alone)" if api_alone else "", time.perf_counter() - started,
             where)
    tunnel = open_share(app, args["PORT"], args["NGROK_AUTHTOKEN"]) if args.get("SHARE") else None
    try:
        serve(app, **options)
    finally:
        if tunnel is not None:
            close_share(tunnel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
