"""The web layer: every module that knows HTTP (Flask blueprints, security, errors), thin over game/ and inference/."""
