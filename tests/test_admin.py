"""The admin sign-in and dashboard: password, CSRF, slowed failures, who is playing, the queue."""

import re

import pytest

from game import admin


@pytest.fixture
def fast_failures(monkeypatch):
    monkeypatch.setattr(admin, "FAILED_LOGIN_DELAY", 0)


def csrf_token(client, path="/admin/login"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def sign_in(client, password="open sesame"):
    return client.post("/admin/login", data={"password": password, "csrf_token": csrf_token(client)})


def test_a_generated_password_is_printed_once_and_only_its_hash_kept(make_app, tmp_path, caplog):
    make_app(ADMIN_PASSWORD="")
    printed = re.search(r"Admin password \(shown once.*?\n\n\s+(\S+)\n", caplog.text, re.S).group(1)
    stored = (tmp_path / "instance" / "admin_password.hash").read_text()
    assert printed not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    caplog.clear()
    client = make_app(ADMIN_PASSWORD="").test_client()
    assert "Admin password" not in caplog.text  # not again
    assert sign_in(client, printed).status_code == 303


def test_pages_need_a_signed_in_admin(make_app):
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    assert client.get("/admin/").headers["Location"] == "/admin/login?next=/admin/"
    response = client.get("/admin/status.json")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/admin/status.json", auth=("admin", "open sesame")).status_code == 200
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    page = client.get("/admin/").get_data(as_text=True)
    assert "Playing now" in page and "Painter" in page


def test_a_wrong_password_is_refused_and_slowed(make_app, monkeypatch):
    delays = []
    monkeypatch.setattr(admin.time, "sleep", delays.append)
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    response = sign_in(client, "guess")
    assert response.status_code == 401
    assert "That password is not right." in response.get_data(as_text=True)
    assert delays == [admin.FAILED_LOGIN_DELAY]
    assert client.get("/admin/").status_code == 302


def test_a_post_without_csrf_token_is_refused(make_app):
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    response = client.post("/admin/login", data={"password": "open sesame"})
    assert response.status_code == 400
    assert "CSRF token is missing" in response.get_data(as_text=True)
    sign_in(client)
    assert client.post("/admin/logout").status_code == 400  # signed in, but still no token
    assert client.get("/admin/").status_code == 200


def test_sign_out(make_app):
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    sign_in(client)
    token = csrf_token(client, "/admin/")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/admin/").status_code == 302


def test_failed_sign_ins_are_rate_limited_per_client(make_app, fast_failures):
    client = make_app(ADMIN_PASSWORD="open sesame", BEHIND_PROXY=True).test_client()
    headers = {"X-Forwarded-For": "203.0.113.9"}
    token = csrf_token(client)
    codes = [client.post("/admin/login", data={"password": "x", "csrf_token": token}, headers=headers).status_code
             for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_dashboard_shows_who_is_playing_and_the_queue(make_app):
    app = make_app(ADMIN_PASSWORD="open sesame")
    player = app.test_client()
    player.get("/play/lighthouse/shore")
    player.post("/play/lighthouse/shore", data={"choice": "2"})
    player.get("/play/lighthouse/wreckage")
    admin_client = app.test_client()
    sign_in(admin_client)
    html = admin_client.get("/admin/dashboard").get_data(as_text=True)
    assert "<td>lighthouse</td><td>wreckage</td>" in html
    assert "Not shared." in html
    assert "waiting:" in html and "cache:" in html


def test_the_share_link_and_its_qr_code_are_shown(make_app):
    app = make_app(ADMIN_PASSWORD="open sesame")
    app.extensions["share_url"] = "https://example-friends.ngrok-free.app"
    client = app.test_client()
    sign_in(client)
    html = client.get("/admin/").get_data(as_text=True)
    assert 'href="https://example-friends.ngrok-free.app"' in html
    assert 'src="data:image/svg+xml' in html


def test_players_never_see_admin_links(client):
    for path in ("/", "/play/lighthouse/shore"):
        assert "/admin" not in client.get(path).get_data(as_text=True)
