"""`python app.py --share`: everything of ours runs for real; only the ngrok service is stood in for, at the SDK."""

import logging
import sys
import types

import pytest

import app as lanternslide

TOKEN = "tok-SECRET-1234567890"
URL = "https://quiet-lantern-42.ngrok-free.app"


class FakeNgrokSDK:
    """Test double for the `ngrok` package (the ngrok service cannot be reached from here)."""

    def __init__(self, fail: Exception | None = None):
        self.fail = fail
        self.forwarded = []
        self.disconnected = []

    def module(self):
        module = types.ModuleType("ngrok")
        module.forward = self.forward
        module.disconnect = self.disconnected.append
        return module

    def forward(self, addr, authtoken=None, **options):
        self.forwarded.append((addr, authtoken))
        if self.fail:
            raise self.fail
        return types.SimpleNamespace(url=lambda: URL)


@pytest.fixture
def run(monkeypatch, tmp_path):
    served = []
    monkeypatch.setattr("waitress.serve", lambda app, **kw: served.append((app, kw)))
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)

    def main(*extra, sdk=None):
        if sdk is not None:
            monkeypatch.setitem(sys.modules, "ngrok", sdk.module())
        # a remote backend on a closed port: no model, and no torch imported in a background thread
        code = lanternslide.main(["--backend", "remote", "--api-url", "http://127.0.0.1:9", "--port", "5999",
                                  "--instance", str(tmp_path / "instance"), "--admin-password", "pw", *extra])
        assert code == 0
        return served[-1][0]

    main.served = served
    return main


def test_share_opens_the_tunnel_prints_link_and_qr_and_closes_on_exit(run, capsys, caplog):
    sdk = FakeNgrokSDK()
    with caplog.at_level(logging.INFO):
        app = run("--share", "--ngrok-authtoken", TOKEN, sdk=sdk)
    out = capsys.readouterr()
    assert sdk.forwarded == [("127.0.0.1:5999", TOKEN)]
    assert f"Share this link with your friends: {URL}" in out.out
    assert "█" in out.out or "▀" in out.out  # the QR code
    assert app.extensions["share_url"] == URL
    assert sdk.disconnected == [URL]
    assert TOKEN not in out.out + out.err + caplog.text


def test_the_token_comes_from_ngrok_authtoken_too(run, monkeypatch):
    monkeypatch.setenv("NGROK_AUTHTOKEN", TOKEN)
    sdk = FakeNgrokSDK()
    run("--share", sdk=sdk)
    assert sdk.forwarded[0][1] == TOKEN


def test_without_a_token_it_says_what_to_do_and_keeps_running(run, caplog):
    sdk = FakeNgrokSDK()
    app = run("--share", sdk=sdk)
    assert sdk.forwarded == []
    assert "Sharing needs a free ngrok account" in caplog.text and "NGROK_AUTHTOKEN" in caplog.text
    assert "share_url" not in app.extensions  # served locally all the same


def test_a_tunnel_failure_is_explained_without_the_token(run, caplog, capsys):
    sdk = FakeNgrokSDK(fail=RuntimeError(f"failed to authenticate with authtoken {TOKEN}"))
    app = run("--share", "--ngrok-authtoken", TOKEN, sdk=sdk)
    assert "Could not open the public link: failed to authenticate with authtoken <token>" in caplog.text
    assert TOKEN not in caplog.text + capsys.readouterr().out
    assert "share_url" not in app.extensions


def test_sharing_makes_the_server_trust_one_proxy_hop_from_this_machine(run):
    run("--share", "--ngrok-authtoken", TOKEN, sdk=FakeNgrokSDK())
    options = run.served[-1][1]
    assert options["trusted_proxy"] == "127.0.0.1"  # where the ngrok agent connects from
    assert options["trusted_proxy_count"] == 1
    assert options["trusted_proxy_headers"] == {"x-forwarded-for", "x-forwarded-proto"}
    assert options["clear_untrusted_proxy_headers"] is True
