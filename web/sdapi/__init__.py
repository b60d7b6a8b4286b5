"""The AUTOMATIC1111 web UI's HTTP API, /sdapi/v1/*, served over the generation service.

Clients written for A1111 (webuiapi, Krita and Photoshop plug-ins, bots) work unchanged: the same routes, request
fields, defaults, response shapes and error bodies (../shared/reference/sdapi-contract.md).  Pictures go through
the same queue, coalescing and cache as the game, at the lowest priority (players of the game never wait for an
API call: they preempt it), with a cap per client and per call.  Fields we cannot honour (hires fix, face
restoration, scripts) are accepted and reported in ``info``.  A server reachable from outside serves the API only
with credentials; interrupt, skip and progress concern the caller's own pictures only.

The parts, each registering its views on the one blueprint:
- `common`: the blueprint, per-app state, A1111's error body, auth, the caller, the body read as FastAPI would.
- `mount`: `init_app` (credentials, caps, whether the API is on), `exposure`, `api_status`, the model's title.
- `calls`: a txt2img or img2img call checked (fields, init pictures, mask, styles, seeds, caps) before painting.
- `generate`: /txt2img and /img2img painted and answered like A1111; /progress, /interrupt, /skip.
- `catalogue`: samplers, schedulers, the model, options, flags, prompt styles, and the empty lists and refreshes.
- `info`: /png-info.
"""

from web.sdapi import catalogue
from web.sdapi import generate
from web.sdapi import info
from web.sdapi.common import bp
from web.sdapi.mount import api_status
from web.sdapi.mount import exposure
from web.sdapi.mount import init_app

__all__ = ["bp", "init_app", "exposure", "api_status", "catalogue", "generate", "info"]
