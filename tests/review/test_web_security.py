"""The web app's guards: sessions on every page, CSRF on every POST, lock-out, roles, headers."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from reports.db import AuditEvent, OutboxItem, Report, User, WebSession
from reports.review import security
from tests.review.conftest import PASSWORD, csrf_of, login

# Every route and a request that would change something if the guard were missing.
GUARDED = [
    ("GET", "/queue", None),
    ("GET", "/studies/{id}", None),
    ("GET", "/studies/{id}/image.png", None),
    ("GET", "/studies/{id}/ecg.svg", None),
    ("GET", "/search", None),
    ("POST", "/studies/{id}/sign", {"based_on_version": "1", "impression": "x", "action": "sign"}),
    ("POST", "/studies/{id}/reject", {"based_on_version": "1", "reason": "noise"}),
    ("POST", "/studies/{id}/deliveries/{outbox}/retry", {}),
    ("POST", "/studies/{id}/deliveries/{outbox}/withdraw", {"reason": "receiver will never take it"}),
    ("POST", "/logout", {}),
    ("GET", "/users", None),
    ("POST", "/users", {"username": "mallory", "role": "cardiologist", "password": "0123456789ab"}),
    ("POST", "/users/{name}/active", {"active": "false"}),
    ("POST", "/users/{name}/unlock", {}),
]
OPEN = {"/login", "/", "/static"}


def _reports(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(Report)).scalar_one()


def _delivery_acts(engine: sa.Engine) -> int:
    """Retry-now and withdraw audit rows: none may come from a refused request."""
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(AuditEvent)
                                  .where(AuditEvent.action.in_(["outbox.released", "outbox.held"]))).scalar_one()


def _outbox_of(engine: sa.Engine, study_id: int) -> int:
    """The study's draft delivery, so the delivery routes are tried on a real row."""
    with engine.connect() as connection:
        return connection.execute(sa.select(OutboxItem.id).join(Report, Report.id == OutboxItem.report_id)
                                  .where(Report.study_id == study_id)).scalar_one()


def test_every_route_is_listed_here(client: TestClient) -> None:
    """A new route must be added to GUARDED (and so tested) or be knowingly open."""
    routes = {route.path for route in client.app.routes if isinstance(route, APIRoute)}
    listed = {path.replace("{id}", "{study_id}").replace("{name}", "{username}").replace("{outbox}", "{outbox_id}")
              for _, path, _ in GUARDED}
    assert routes - OPEN == listed


def test_no_page_and_no_act_without_a_session(client: TestClient, make_study: Callable[..., int],
                                              review_engine: sa.Engine) -> None:
    study_id = make_study()
    outbox_id = _outbox_of(review_engine, study_id)
    before = _reports(review_engine)
    for method, path, data in GUARDED:
        url = path.replace("{id}", str(study_id)).replace("{name}", "cardio1").replace("{outbox}", str(outbox_id))
        response = client.request(method, url, data=data)
        assert response.status_code == 303 and response.headers["location"] == "/login", (method, url)
    # A forged or stale cookie is no session either.
    client.cookies.set("ecgwl_session", security.new_token())
    assert client.get("/queue").headers["location"] == "/login"
    assert _reports(review_engine) == before and _delivery_acts(review_engine) == 0
    with review_engine.connect() as connection:
        assert connection.execute(sa.select(User.active).where(User.username == "cardio1")).scalar_one()
        assert connection.execute(sa.select(sa.func.count()).select_from(User)
                                  .where(User.username == "mallory")).scalar_one() == 0


def test_expired_session_is_refused(logged_in: Callable[[str], TestClient], review_engine: sa.Engine) -> None:
    client = logged_in("cardio1")
    assert client.get("/queue").status_code == 200
    with review_engine.begin() as connection:
        connection.execute(sa.update(WebSession).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    assert client.get("/queue").headers["location"] == "/login"


def test_every_post_needs_the_sessions_csrf_token(logged_in: Callable[[str], TestClient],
                                                 make_study: Callable[..., int], review_engine: sa.Engine) -> None:
    study_id = make_study()
    admin = logged_in("admin1")
    cardio = logged_in("cardio1")
    other_token = csrf_of(logged_in("cardio2").get("/queue").text)  # a real token, of another session
    outbox_id = _outbox_of(review_engine, study_id)
    before = _reports(review_engine)
    for method, path, data in GUARDED:
        if method != "POST":
            continue
        url = path.replace("{id}", str(study_id)).replace("{name}", "cardio2").replace("{outbox}", str(outbox_id))
        client = admin if path.startswith("/users") else cardio
        for token in (None, "", "not-the-token", other_token):
            form = dict(data) | ({"csrf_token": token} if token is not None else {})
            response = client.post(url, data=form)
            assert response.status_code == 403, (url, token, response.status_code)
    assert _reports(review_engine) == before and _delivery_acts(review_engine) == 0
    assert cardio.get("/queue").status_code == 200  # the refused logout did not log out
    with review_engine.connect() as connection:
        assert connection.execute(sa.select(User.active).where(User.username == "cardio2")).scalar_one()


def test_login_form_needs_its_csrf_cookie(client: TestClient) -> None:
    page = client.get("/login")
    token = csrf_of(page.text)
    client.cookies.clear()
    refused = client.post("/login", data={"username": "cardio1", "password": PASSWORD, "csrf_token": token})
    assert refused.status_code == 403 and "ecgwl_session" not in refused.cookies


def test_lock_out_after_five_failures(client: TestClient, review_engine: sa.Engine) -> None:
    for attempt in range(security.MAX_FAILED_LOGINS):
        page = client.get("/login")
        response = client.post("/login", data={"username": "cardio1", "password": "wrong password!",
                                               "csrf_token": csrf_of(page.text)})
        assert response.status_code == 401
        expected = "locked" if attempt == security.MAX_FAILED_LOGINS - 1 else "Wrong user name or password"
        assert expected in response.text
    page = client.get("/login")
    response = client.post("/login", data={"username": "cardio1", "password": PASSWORD,
                                           "csrf_token": csrf_of(page.text)})
    assert response.status_code == 401 and "locked" in response.text  # the right password no longer opens it
    with review_engine.connect() as connection:
        actions = connection.execute(sa.select(AuditEvent.action).where(AuditEvent.entity_type == "user")
                                     .order_by(AuditEvent.id)).scalars().all()
        details = connection.execute(sa.select(AuditEvent.details).where(AuditEvent.entity_type == "user")).scalars()
        assert not any(PASSWORD in str(d) or "wrong password" in str(d) for d in details)
    assert actions.count("user.login_failed") == security.MAX_FAILED_LOGINS - 1
    assert "user.locked" in actions and "user.login_refused" in actions
    # When the lock expires, the right password works again.
    with review_engine.begin() as connection:
        connection.execute(sa.update(User).where(User.username == "cardio1")
                           .values(locked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    login(client, "cardio1")
    assert client.get("/queue").status_code == 200


def test_unknown_user_and_wrong_password_look_the_same(client: TestClient) -> None:
    texts = []
    for username in ("nobody", "cardio1"):
        page = client.get("/login")
        texts.append(client.post("/login", data={"username": username, "password": "not it at all",
                                                 "csrf_token": csrf_of(page.text)}).text)
    assert "Wrong user name or password" in texts[0] and "Wrong user name or password" in texts[1]


def test_session_cookie_attributes_and_security_headers(client: TestClient) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"username": "cardio1", "password": PASSWORD,
                                           "csrf_token": csrf_of(page.text)})
    cookie = [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("ecgwl_session=")]
    assert cookie and "HttpOnly" in cookie[0] and "SameSite=strict" in cookie[0] and "Secure" not in cookie[0]
    queue = client.get("/queue")
    policy = queue.headers["content-security-policy"]
    # Script only from the app's own files: no inline script, no other origin, no eval.
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "http" not in policy
    assert queue.headers["x-frame-options"] == "DENY"
    assert queue.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", queue.text, flags=re.S)
    assert scripts == [(' src="/static/review.js" defer', "")]  # one file of the app's own, nothing inline
    assert client.get("/static/review.js").status_code == 200


def test_secure_cookies_by_default(config, review_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from reports.review.app import create_app
    from reports.review.config import ReviewConfig
    from worker.settings import Settings

    monkeypatch.delenv("ECGWL_REVIEW_SECURE_COOKIES", raising=False)
    assert Settings().review_secure_cookies and ReviewConfig(database_url=config.database_url).secure_cookies
    app = create_app(config.model_copy(update={"secure_cookies": True}), engine=review_engine)
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)  # Secure cookies need HTTPS
    page = client.get("/login")
    response = client.post("/login", data={"username": "cardio1", "password": PASSWORD,
                                           "csrf_token": csrf_of(page.text)})
    cookie = [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("ecgwl_session=")]
    assert "Secure" in cookie[0]


def test_an_id_past_the_database_range_is_a_404_not_a_500(logged_in) -> None:
    client = logged_in("cardio1")
    for path in ("/studies/2147483648", "/studies/99999999999999999999999/ecg.svg",
                 "/studies/1/deliveries/2147483648/retry"):
        response = client.get(path) if not path.endswith("retry") else client.post(path, data={})
        assert response.status_code == 404, (path, response.status_code)
        assert "out of range" in response.text and response.headers["x-frame-options"] == "DENY"
    assert client.get("/studies/2147483647").status_code == 404  # in range, no such study: the usual 404


def test_logout_ends_the_session_server_side(logged_in: Callable[[str], TestClient], review_engine) -> None:
    client = logged_in("viewer1")
    token = client.cookies.get("ecgwl_session")
    response = client.post("/logout", data={"csrf_token": csrf_of(client.get("/queue").text)})
    assert response.headers["location"] == "/login"
    client.cookies.set("ecgwl_session", token)  # replaying the old cookie does not work
    assert client.get("/queue").headers["location"] == "/login"


def test_viewer_and_technician_cannot_sign_by_a_crafted_request(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study()
    for username in ("viewer1", "tech1", "admin1"):
        client = logged_in(username)
        page = client.get(f"/studies/{study_id}")
        assert page.status_code == 200 and 'action="/studies/' not in page.text  # no sign-off form shown
        token = csrf_of(page.text)  # the logout form's token: a valid one for this session
        for path, form in ((f"/studies/{study_id}/sign", {"based_on_version": "1", "impression": "x",
                                                          "action": "sign"}),
                           (f"/studies/{study_id}/sign", {"based_on_version": "1", "action": "sign_next"}),
                           (f"/studies/{study_id}/reject", {"based_on_version": "1", "reason": "x"})):
            response = client.post(path, data=form | {"csrf_token": token})
            assert response.status_code == 403, (username, path)
    with review_engine.connect() as connection:
        versions = connection.execute(sa.select(Report.version).where(Report.study_id == study_id)).scalars().all()
    assert versions == [1]


def test_image_only_for_a_session_and_only_from_the_image_folder(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine, tmp_path,
) -> None:
    study_id = make_study()
    client = logged_in("viewer1")
    image = client.get(f"/studies/{study_id}/image.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(image.content)
    from reports.db import Study

    with review_engine.begin() as connection:
        connection.execute(sa.update(Study).where(Study.id == study_id).values(image_path=str(outside)))
    assert client.get(f"/studies/{study_id}/image.png").status_code == 404


def test_a_scan_without_a_stored_image_is_shown_from_its_file(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine, tmp_path,
) -> None:
    """The pipeline keeps no image: a scan's page is rendered from the kept file when asked."""
    import shutil

    from reports.db import Study

    scan = shutil.copy(Path(__file__).resolve().parents[2] / "samples" / "demo-scan.pdf", tmp_path / "scan.pdf")
    study_id = make_study(source_format="pdf")
    with review_engine.begin() as connection:
        connection.execute(sa.update(Study).where(Study.id == study_id).values(image_path=None, source_path=str(scan)))
    client = logged_in("viewer1")
    assert f'src="/studies/{study_id}/image.png"' in client.get(f"/studies/{study_id}").text
    image = client.get(f"/studies/{study_id}/image.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert logged_in("cardio1").get(f"/studies/{study_id}/image.png").content == image.content


def test_only_an_admin_manages_accounts(logged_in: Callable[[str], TestClient], review_engine: sa.Engine) -> None:
    cardio = logged_in("cardio1")
    assert cardio.get("/users").status_code == 403
    refused = cardio.post("/users", data={"csrf_token": csrf_of(cardio.get("/queue").text), "username": "eve",
                                          "role": "cardiologist", "password": "0123456789ab"})
    assert refused.status_code == 403
    admin = logged_in("admin1")
    page = admin.get("/users")
    assert page.status_code == 200 and "cardio2" in page.text
    added = admin.post("/users", data={"csrf_token": csrf_of(page.text), "username": "newdoc",
                                       "role": "cardiologist", "password": "a long enough secret",
                                       "display_name": "Neri^Paola"})
    assert added.status_code == 303
    disabled = admin.post("/users/cardio2/active", data={"csrf_token": csrf_of(page.text), "active": "false"})
    assert disabled.status_code == 303
    with review_engine.connect() as connection:
        rows = connection.execute(sa.select(AuditEvent.action, AuditEvent.actor, AuditEvent.details)
                                  .where(AuditEvent.action.in_(["user.added", "user.disabled"]),
                                         AuditEvent.actor == "user:admin1")).all()
    assert {r.action for r in rows} == {"user.added", "user.disabled"}
    assert not any("a long enough secret" in str(r.details) or "password" in str(r.details) for r in rows)
    fresh = TestClient(admin.app, follow_redirects=False)
    assert login(fresh, "newdoc", "a long enough secret").get("/queue").status_code == 200


def test_an_admin_unlocks_a_locked_account(client: TestClient, logged_in: Callable[[str], TestClient],
                                           review_engine: sa.Engine) -> None:
    for _ in range(security.MAX_FAILED_LOGINS):
        client.post("/login", data={"username": "cardio1", "password": "wrong password!",
                                    "csrf_token": csrf_of(client.get("/login").text)})
    assert "locked" in client.post("/login", data={"username": "cardio1", "password": PASSWORD,
                                                   "csrf_token": csrf_of(client.get("/login").text)}).text
    cardio = logged_in("cardio2")
    refused = cardio.post("/users/cardio1/unlock", data={"csrf_token": csrf_of(cardio.get("/queue").text)})
    assert refused.status_code == 403
    admin = logged_in("admin1")
    page = admin.get("/users")
    assert 'action="/users/cardio1/unlock"' in page.text
    assert 'action="/users/cardio2/unlock"' not in page.text  # only a locked account offers it
    unlocked = admin.post("/users/cardio1/unlock", data={"csrf_token": csrf_of(page.text)})
    assert unlocked.status_code == 303 and unlocked.headers["location"] == "/users?done=unlocked"
    assert 'action="/users/cardio1/unlock"' not in admin.get("/users").text
    assert admin.post("/users/nobody/unlock", data={"csrf_token": csrf_of(page.text)}).status_code == 404
    with review_engine.connect() as connection:
        row = connection.execute(sa.select(User.locked_until, User.failed_logins)
                                 .where(User.username == "cardio1")).one()
        events = connection.execute(sa.select(AuditEvent.actor, AuditEvent.details)
                                    .where(AuditEvent.action == "user.unlocked")).all()
    assert row.locked_until is None and row.failed_logins == 0
    assert [(e.actor, e.details["username"]) for e in events] == [("user:admin1", "cardio1")]
    fresh = TestClient(admin.app, follow_redirects=False)
    assert login(fresh, "cardio1", PASSWORD).get("/queue").status_code == 200


def test_text_from_the_interpreter_is_escaped(logged_in: Callable[[str], TestClient],
                                              make_study: Callable[..., int]) -> None:
    study_id = make_study(["<script>alert(1)</script>"], narrative='Rate 72 bpm "><img src=x onerror=alert(1)>')
    client = logged_in("viewer1")
    for url in ("/queue", f"/studies/{study_id}"):
        page = client.get(url).text
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
