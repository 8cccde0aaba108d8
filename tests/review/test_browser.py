"""The sign-off web app in a real browser (Playwright driving Debian's Chromium), end to end.

Studies come from `ecg-worklist demo` (the real pipeline over the bundled samples, one of
which reads as an inferior ST elevation: the critical one) into a fresh Postgres. The app
runs under uvicorn on a free port. A cardiologist logs in, opens the most urgent draft,
sees the ECG image load, edits the impression and signs; `deliver_due` then sends the final
ORU to a real MLLP listener. A viewer sees no sign-off form and a crafted POST is refused.
Screenshots of the queue and the study page are taken every run; they replace
docs/screenshots/{queue,study}.png (used by the README) when those are missing or
ECGWL_UPDATE_SCREENSHOTS=1, so an ordinary run leaves the working tree clean.

Without /usr/bin/chromium the test is skipped on a developer's machine and FAILS under
CI=true (scripts/test.sh installs it).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from reports import store
from reports.db import Report, Study
from reports.review import accounts
from tests.mllp_engine import FakeInterfaceEngine

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery staple"
EDITED = "Inferior ST elevation: acute inferior STEMI until proven otherwise. Cath lab informed."


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("/usr/bin/chromium is missing (CI=true: scripts/test.sh installs it with apt-get)")
    pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def demo_site(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, sa.Engine]]:
    """The demo's drafts in Postgres, two accounts, and the app serving them on a free port."""
    import uvicorn

    from worker.cli import main as cli
    from worker.cli_review import review_config
    from worker.settings import Settings

    monkeypatch.setenv("ECGWL_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ECGWL_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("ECGWL_REDIS_URL", raising=False)
    monkeypatch.delenv("ECGWL_HL7_DESTINATIONS", raising=False)
    # The protocol reader's drafts: its reading of the WFDB sample (inferior ST elevation) is
    # the critical study this test signs; the demonstration model's reading varies with training.
    monkeypatch.setenv("ECGWL_INTERPRETER", "protocol")
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    engine = store.make_engine(postgres_url)
    with store.session_scope(engine) as session:
        accounts.add_user(session, "drrossi", "cardiologist", PASSWORD, actor="test", display_name="Rossi^Anna")
        accounts.add_user(session, "viewer", "viewer", PASSWORD, actor="test")
    from reports.review.app import create_app

    app = create_app(review_config(Settings()), engine=engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}", engine
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/queue")
    assert page.url.endswith("/login")  # no page without a session
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}/queue")


def _keep_screenshots(shots: Path) -> None:
    update = os.environ.get("ECGWL_UPDATE_SCREENSHOTS") == "1"
    for name in ("queue.png", "study.png"):
        assert (shots / name).stat().st_size > 10_000  # a real page, not a blank one
        if update or not (SCREENSHOTS / name).exists():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / name).write_bytes((shots / name).read_bytes())


def test_cardiologist_signs_the_most_urgent_draft_and_the_final_oru_arrives(demo_site, tmp_path: Path) -> None:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    from reports.delivery import deliver_due
    from reports.destinations import HL7Destination

    base, engine = demo_site
    with store.session_scope(engine) as session:
        critical_id = session.execute(sa.select(Study.id).where(Study.critical.is_(True))).scalar_one()
        awaiting = session.execute(sa.select(sa.func.count()).select_from(Study)
                                   .where(Study.state == "awaiting_signoff")).scalar_one()
    assert awaiting >= 3
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            _log_in(page, base, "drrossi")
            first_row = page.locator("table.queue tbody tr").first
            assert "CRITICAL" in first_row.inner_text()
            assert page.locator(".count", has_text="awaiting sign-off").inner_text().startswith(str(awaiting))
            page.screenshot(path=str(shots / "queue.png"))

            first_row.locator("a").first.click()
            page.wait_for_url(f"{base}/studies/{critical_id}")
            image = page.locator("#ecg-image")
            image.wait_for()
            page.wait_for_load_state("load")
            assert image.evaluate("img => img.complete && img.naturalWidth") > 0  # the ECG really loaded
            assert "st elevation (inferior)" in page.locator("section.card", has_text="Impression:").inner_text()
            assert not page.locator("details").first.evaluate("d => d.open")  # reasoning folded
            page.screenshot(path=str(shots / "study.png"))

            page.fill("textarea[name=impression]", EDITED)
            page.click("button[value=sign]")
            page.wait_for_url(re.compile(rf".*/studies/{critical_id}\?done=signed$"))
            assert "Signed: the final report (F)" in page.locator(".banner").inner_text()

            with FakeInterfaceEngine() as interface_engine:
                destination = HL7Destination(name="his", host="127.0.0.1", port=interface_engine.port)
                for _ in range(3):  # the drafts go first (per-patient order), then the final
                    deliver_due(engine, [destination])
                finals = [m for m in interface_engine.received if str(m.segment("OBR")[25]) == "F"]
                accepted = list(interface_engine.accepted_control_ids)
            assert len(finals) == 1
            final = finals[0]
            with store.session_scope(engine) as session:
                signed = session.execute(sa.select(Report).where(Report.study_id == critical_id, Report.version == 2)
                                         ).scalar_one()
            assert str(final.segment("MSH")[10]) == signed.message_control_id in accepted
            assert EDITED.split(":")[0] in str(final) and "Cath lab informed." in str(final)
            assert {str(obx[11]) for obx in final.segments("OBX")} == {"F"}
            assert str(final.segment("OBR")[32]).startswith("drrossi&Rossi&Anna")
            page.reload()
            assert "delivered" in page.locator("section.card", has_text="Delivery").inner_text()

            viewer = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
            _log_in(viewer, base, "viewer")
            with store.session_scope(engine) as session:
                other = session.execute(sa.select(Study.id).where(Study.state == "awaiting_signoff")
                                        .order_by(Study.id).limit(1)).scalar_one()
            viewer.goto(f"{base}/studies/{other}")
            assert viewer.locator("form.signoff").count() == 0
            assert "can look but not sign" in viewer.content()
            token = viewer.locator("input[name=csrf_token]").first.get_attribute("value")
            refused = viewer.request.post(f"{base}/studies/{other}/sign", form={
                "csrf_token": token, "based_on_version": "1", "impression": "viewer says", "action": "sign"})
            assert refused.status == 403
        finally:
            browser.close()
    _keep_screenshots(shots)
    with store.session_scope(engine) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Report)
                               .where(Report.study_id == other)).scalar_one() == 1
