"""The sign-off web app in a real browser (Playwright driving Debian's Chromium), end to end.

One site and one browser for the whole module. The studies come from `ecg-worklist demo`
(the real pipeline, the protocol reader interpreting) over the bundled samples (none of them
critical: the WFDB sample's highest ST is +0.05 mV) plus four synthetic records written here
(tests/review/synthetic.py): patient CAL-0001's ECG at 75 /min and, later, at exactly 60 /min
(R peaks 1000 ms apart: the calipers' test), another patient's normal ECG, and the critical
one, an inferior STEMI (ST raised 0.3 mV from the J point in II, III and aVF, reciprocal
depression in aVL), which the protocol reader reads as "st elevation (inferior)". The app runs
under uvicorn on a free port, at 1600 x 1000. The tests run in file order and build on each
other (the keyboard signs studies the later tests then see signed):

    queue and search      critical (the STEMI) first, saying which readers found it; the scan
                          marked "no signal: not measured"; MRN, name and accession, case ignored
    the study page        the SVG at 25 mm/s and 10 mm/mV with its grid and labels clear of the
                          traces, the device's statements and measurements, Sign above the fold
    calipers              two clicks on R peaks found in the page's pixels measure 1000 ms
    previous ECG          the patient's earlier ECG beside the list of changes
    keyboard              one keystroke per confirmed normal study; n / p; a critical study asks first
    sign and deliver      the critical (STEMI) draft edited and signed (the F message: "Confirmed
                          by", no machine-only content); the final ORU reaches a real MLLP
                          listener; a viewer sees no form and a crafted POST is refused

Screenshots (docs/screenshots/: queue, study, calipers, previous) are taken every run and
replace the README's when missing or with ECGWL_UPDATE_SCREENSHOTS=1, so an ordinary run
leaves the working tree clean. Without /usr/bin/chromium the tests skip on a developer's
machine and FAIL under CI=true (scripts/test.sh installs it).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from reports import store
from reports.db import Report, Study
from reports.review import accounts
from reports.review.queue import next_awaiting
from tests.conftest import POSTGRES_ADMIN_URL, REPO, require_service
from tests.mllp_engine import FakeInterfaceEngine
from tests.review.svg_reading import grid_lines, label_hits, read_drawing
from tests.review.synthetic import write_record

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO / "docs" / "screenshots"
SHOTS = ("queue.png", "study.png", "calipers.png", "previous.png")
VIEWPORT = {"width": 1600, "height": 1000}
PASSWORD = "correct horse battery staple"
EDITED = "Inferior ST elevation: acute inferior STEMI until proven otherwise. Cath lab informed."
CALIPER_PATIENT = {"patient_id": "CAL-0001", "patient_name": "Calipers^Carla", "sex": "F"}
CRITICAL = "stemi-inferior"  # the site's critical study (see the module docstring)


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


@dataclass
class Site:
    base: str
    engine: sa.Engine
    studies: dict[str, int]  # sample file name (without extension) -> study id
    shots: Path  # where this run's screenshots go


def _samples(folder: Path) -> Path:
    """The bundled samples plus four synthetic records of known timing, one of them an inferior STEMI."""
    shutil.copytree(REPO / "samples", folder)
    write_record(folder, "paced-1-earlier", 800, CALIPER_PATIENT | {
        "accession": "CAL-ACC-1", "acquired_at": "2026-05-04T10:00:00"})
    write_record(folder, "paced-2-calipers", 1000, CALIPER_PATIENT | {
        "accession": "CAL-ACC-2", "acquired_at": "2026-11-20T09:30:00"})
    write_record(folder, "paced-3-normal", 1000, {"patient_id": "NRM-0002", "patient_name": "Normale^Nora",
                                                  "sex": "F", "accession": "NRM-ACC-1",
                                                  "acquired_at": "2026-11-20T09:40:00"})
    # ST elevation 0.3 mV in II (so III and aVF): an inferior STEMI by the fourth universal definition.
    write_record(folder, CRITICAL, 857, {"patient_id": "STE-0003", "patient_name": "Infero^Ivo", "sex": "M",
                                         "birth_date": "1961-03-14", "accession": "STE-ACC-1",
                                         "acquired_at": "2026-11-20T09:50:00"}, st_mv={"II": 0.3})
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The pipeline's drafts in a Postgres database of this module, two accounts, the app on a free port."""
    _require_chromium()
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import uvicorn

    from reports.review.app import create_app
    from worker.cli import main as cli
    from worker.cli_review import review_config
    from worker.settings import Settings

    folder = tmp_path_factory.mktemp("site")
    name = f"ecgwl_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = None
    server = thread = None
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ECGWL_DATABASE_URL", url)
            env.setenv("ECGWL_DATA_DIR", str(folder / "var"))
            env.delenv("ECGWL_REDIS_URL", raising=False)
            env.delenv("ECGWL_HL7_DESTINATIONS", raising=False)
            env.setenv("ECGWL_REVIEW_SECURE_COOKIES", "false")  # Chromium on plain-http 127.0.0.1
            # The protocol reader's drafts: its reading of the synthetic STEMI (st elevation
            # (inferior)) is the critical study; the demonstration model's reading varies with training.
            env.setenv("ECGWL_INTERPRETER", "protocol")
            result = CliRunner().invoke(cli, ["demo", "--samples", str(_samples(folder / "samples"))])
            assert result.exit_code == 0, result.output
            config = review_config(Settings())
        engine = store.make_engine(url)
        with store.session_scope(engine) as session:
            accounts.add_user(session, "drrossi", "cardiologist", PASSWORD, actor="test", display_name="Rossi^Anna")
            accounts.add_user(session, "viewer", "viewer", PASSWORD, actor="test")
            studies = {Path(path).name.split(".")[0]: study_id for study_id, path in
                       session.execute(sa.select(Study.id, Study.source_path))}
        server = uvicorn.Server(uvicorn.Config(create_app(config, engine=engine), host="127.0.0.1",
                                               port=_free_port(), log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        shots = Path(os.environ.get("ECGWL_TEST_SHOTS_DIR", folder / "screenshots"))
        shots.mkdir(exist_ok=True)
        yield Site(f"http://127.0.0.1:{server.config.port}", engine, studies, shots)
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(10)
        if engine is not None:
            engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()
    _keep_screenshots(site.shots)


@pytest.fixture(scope="module")
def cardiologist(site: Site, browser) -> Iterator:
    """One logged-in cardiologist's page at 1600 x 1000, shared by the tests in order."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.console_errors = []  # e.g. a script or style the Content-Security-Policy refused
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("response", lambda response: response.status == 404 and page.console_errors.append(response.url))
    _log_in(page, site.base, "drrossi")
    yield page
    context.close()


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/queue")
    assert page.url.endswith("/login")  # no page without a session
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}/queue")


def _keep_screenshots(shots: Path) -> None:
    update = os.environ.get("ECGWL_UPDATE_SCREENSHOTS") == "1"
    for name in SHOTS:
        if not (shots / name).exists():
            continue  # a test that did not get that far
        assert (shots / name).stat().st_size > 10_000  # a real page, not a blank one
        if update or not (SCREENSHOTS / name).exists():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / name).write_bytes((shots / name).read_bytes())


def _state(site: Site, study_id: int) -> str:
    with store.session_scope(site.engine) as session:
        return session.get(Study, study_id).state


def _open(page, site: Site, study_id: int) -> None:
    page.goto(f"{site.base}/studies/{study_id}")
    page.wait_for_load_state("load")


# ---------------------------------------------------------------- queue and search


def test_queue_is_critical_first_and_search_finds_mrn_name_and_accession(site: Site, cardiologist) -> None:
    page = cardiologist
    page.goto(f"{site.base}/queue")
    first_row = page.locator("table.queue tbody tr").first
    assert "CRITICAL" in first_row.inner_text()
    assert f"/studies/{site.studies[CRITICAL]}" in first_row.locator("a").first.get_attribute("href")
    # Which reader found it (reports/triage.py): the measured values and the protocol reader.
    assert first_row.locator(".triage").inner_text() == (
        "critical: measured ST elevation II, III, aVF (measured values); st elevation (inferior) (protocol reader)")
    scan_row = page.locator("table.queue tbody tr", has=page.locator(f"a[href='/studies/{site.studies['demo-scan']}']"))
    assert "no signal: not measured" in scan_row.inner_text()
    page.screenshot(path=str(site.shots / "queue.png"))

    def found(text: str) -> set[int]:
        page.goto(f"{site.base}/queue")
        page.keyboard.press("/")  # the shortcut puts the cursor in the search box
        page.keyboard.type(text)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/search\?q="))
        links = page.locator("table.search-results tbody a").all()
        return {int(link.get_attribute("href").rsplit("/", 1)[1]) for link in links}

    caliper_studies = {site.studies["paced-1-earlier"], site.studies["paced-2-calipers"]}
    assert found("cal-0001") == caliper_studies  # MRN, case ignored
    assert found("CALIPERS, carla") == caliper_studies  # name, family first
    assert found("carla calipers") == caliper_studies
    assert found("nrm-acc-1") == {site.studies["paced-3-normal"]}  # accession
    assert found("DEMO-0001") == {site.studies[name] for name in ("demo-dicom", "demo-wfdb", "demo-report", "demo-scan")}
    assert found("nobody") == set() and "No study matches" in page.content()


# ---------------------------------------------------------------- the study page


def test_study_page_draws_the_ecg_to_scale_with_sign_above_the_fold(site: Site, cardiologist) -> None:
    page = cardiologist
    critical = site.studies[CRITICAL]
    _open(page, site, critical)
    drawing = page.locator("img.ecg-drawing").first
    assert drawing.evaluate("img => img.complete && img.naturalWidth") > 0  # the SVG really loaded
    assert drawing.get_attribute("src") == f"/studies/{critical}/ecg.svg"
    # Sign, and Sign and next, are on screen at 1600 x 1000 without scrolling.
    assert page.evaluate("window.scrollY") == 0
    for action in ("sign", "sign_next"):
        box = page.locator(f"form.signoff button[value={action}]").bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"], (action, box)
        print(f"\n{action}: button bottom at {box['y'] + box['height']:.0f} px of a 1600 x 1000 viewport, no scrolling")
    assert page.locator(".key-hint").is_visible()  # the shortcuts are named on screen
    assert "st elevation (inferior)" in page.locator("section.statements").inner_text()
    assert page.locator(".study-head .triage").inner_text().startswith("critical: measured ST elevation II, III, aVF")
    # The form offers the draft's statements and impression to confirm, without "preliminary ... confirmation".
    assert "st elevation (inferior)" in page.locator("input[name=labels]").input_value()
    assert "Preliminary computer reading" not in page.locator("textarea[name=impression]").input_value()
    assert not page.locator("section.statements details").first.evaluate("d => d.open")  # reasoning folded
    page.screenshot(path=str(site.shots / "study.png"))

    # The drawing itself: 25 mm/s and 10 mm/mV, a 1 mm grid, labels clear of every trace.
    svg = page.request.get(f"{site.base}/studies/{critical}/ecg.svg")
    assert svg.ok and svg.headers["content-type"] == "image/svg+xml"
    parsed = read_drawing(svg.text())
    assert parsed.root.get("width") == "270mm" and parsed.root.get("viewBox") == "0 0 270 175"
    rhythm = [xs for lead, is_rhythm, xs, _ in parsed.traces if is_rhythm][0]
    assert len(rhythm) == 5000 and rhythm[-1] - rhythm[0] == pytest.approx(250 * 4999 / 5000, abs=0.02)
    minor_x, _ = grid_lines(parsed, "0.08")
    major_x, _ = grid_lines(parsed, "0.2")
    assert sorted(minor_x + major_x) == list(range(271))
    assert label_hits(parsed) == [] and len(parsed.labels) == 13

    # The DICOM: the device's own statements and measurements beside ours.
    _open(page, site, site.studies["demo-dicom"])
    device = page.locator(".device-statements").inner_text()
    assert "RITMO SINUSALE" in device and "ECG NORMALE" in device and "el250" in device
    pr_row = page.locator("table.measurements tr", has_text="PR").first.locator("td").all_inner_texts()
    assert pr_row[0] == "PR" and pr_row[2] == "161 ms" and pr_row[1].endswith(" ms")  # ours, then the device's

    # A scan: its page image, no calipers.
    _open(page, site, site.studies["demo-scan"])
    scan = page.locator(".ecg-frame.scan img")
    assert scan.get_attribute("src").endswith("/image.png") and scan.evaluate("img => img.naturalWidth") > 0
    assert page.locator(".study-head .tag.nosignal").inner_text() == "no signal: not measured"
    assert page.locator("section.ecg .ecg-frame.measurable").count() == 0  # (its previous ECG may be measurable)


# ---------------------------------------------------------------- calipers


def _dark_trace_pixels(png: bytes) -> np.ndarray:
    """True where the screenshot shows a trace: near black and not the labels' dark blue."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return (rgb.max(axis=2) < 110) & (rgb[..., 2] - rgb[..., 0] < 30)


def _bottom_band(dark: np.ndarray) -> tuple[int, int]:
    """Rows (first, last) of the lowest horizontal band of trace pixels: the rhythm strip."""
    rows = np.flatnonzero(dark.sum(axis=1) > 0)
    gaps = np.flatnonzero(np.diff(rows) > 10)
    start = rows[gaps[-1] + 1] if len(gaps) else rows[0]
    return int(start), int(rows[-1])


def _r_peaks(dark: np.ndarray, band: tuple[int, int]) -> list[float]:
    """Columns of the narrow apexes (R peaks) in the band, left to right; the calibration pulse's
    flat top is as high but wide, and is left out."""
    top = np.full(dark.shape[1], np.inf)
    for column in range(dark.shape[1]):
        found = np.flatnonzero(dark[band[0]:band[1] + 1, column])
        if len(found):
            top[column] = found[0]
    highest = top.min()
    columns = np.flatnonzero(top <= highest + 1)
    groups = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    return [float(group.mean()) for group in groups if len(group) < 15]


def test_calipers_measure_a_1000_ms_interval_within_10_ms(site: Site, cardiologist) -> None:
    page = cardiologist
    _open(page, site, site.studies["paced-2-calipers"])
    frame = page.locator(".ecg-frame").first
    for _ in range(3):
        page.keyboard.press("+")  # zoom x1.5, x2, x3
    zoom = page.locator(".zoom-readout").first.inner_text()
    px_per_mm = float(zoom.split()[0])
    assert px_per_mm > 10  # beyond 10 px/mm: a 1 px error is under 4 ms
    frame.evaluate("f => { f.scrollLeft = 0; f.scrollTop = f.scrollHeight; }")
    frame.scroll_into_view_if_needed()
    box = frame.bounding_box()
    clip = {"x": box["x"], "y": box["y"], "width": box["width"] - 20, "height": box["height"] - 20}  # no scrollbars
    dark = _dark_trace_pixels(page.screenshot(clip=clip))
    band = _bottom_band(dark)
    peaks = _r_peaks(dark, band)
    assert len(peaks) >= 2, peaks
    apex_row = band[0] + 1.5  # the top of the stroke at the apex
    page.mouse.click(box["x"] + peaks[0], box["y"] + apex_row)
    page.mouse.click(box["x"] + peaks[1], box["y"] + apex_row)
    readout = page.locator(".caliper-readout").first
    measured = float(readout.get_attribute("data-ms"))
    print(f"\ncalipers: R-R of an ECG with R peaks exactly 1000 ms apart measured {measured:.1f} ms "
          f"(error {measured - 1000:+.1f} ms) at {px_per_mm} px/mm")
    assert abs(measured - 1000) <= 10
    assert re.match(r"Calipers: \d+ ms \(60 /min\)", readout.inner_text())
    page.screenshot(path=str(site.shots / "calipers.png"))
    # Amplitude: from the baseline (the row of most trace pixels) to the R apex is the template's 1 mV.
    baseline_row = band[0] + int(np.argmax(dark[band[0]:band[1] + 1].sum(axis=1)))
    page.mouse.click(box["x"] + peaks[0] - 60, box["y"] + baseline_row)  # a third click starts anew
    page.mouse.click(box["x"] + peaks[0], box["y"] + apex_row)
    assert float(readout.get_attribute("data-mv")) == pytest.approx(1.0, abs=0.05)
    page.keyboard.press("Escape")
    assert readout.get_attribute("data-ms") is None and page.locator(".caliper").count() == 0
    # Zoom back: fit the width, and paper size (270 mm at CSS's 96 px per inch).
    page.keyboard.press("0")
    assert float(page.locator(".zoom-readout").first.inner_text().split()[0]) == pytest.approx(px_per_mm / 3, abs=0.2)
    page.keyboard.press("1")
    assert page.locator(".ecg-canvas").first.evaluate("c => c.getBoundingClientRect().width") == pytest.approx(
        270 * 96 / 25.4, abs=1)
    page.keyboard.press("0")
    assert page.console_errors == []  # nothing refused by the Content-Security-Policy, no script error


# ---------------------------------------------------------------- the previous ECG


def test_the_previous_ecg_beside_the_changes(site: Site, cardiologist) -> None:
    page = cardiologist
    _open(page, site, site.studies["paced-2-calipers"])
    section = page.locator("#previous-ecg")
    heading = section.locator("h2").inner_text()
    assert f"study #{site.studies['paced-1-earlier']}" in heading and "acquired 2026-05-04 10:00" in heading
    changes = section.locator(".change-list").inner_text()
    assert "Heart rate 75 → 60 bpm (-15)" in changes  # RR 800 ms then, 1000 ms now
    assert re.search(r"QTc 4\d\d → 4\d\d ms \(-\d+\)", changes)  # the same QT at a slower rate
    previous = section.locator("img.ecg-drawing")
    assert previous.get_attribute("src") == f"/studies/{site.studies['paced-1-earlier']}/ecg.svg"
    assert previous.evaluate("img => img.complete && img.naturalWidth") > 0
    assert "Changes" in section.inner_text() and "Threshold" in section.inner_text()
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(site.shots / "previous.png"))


# ---------------------------------------------------------------- keyboard


def test_one_keystroke_per_confirmed_normal_study(site: Site, cardiologist) -> None:
    page = cardiologist
    calipers, normal = site.studies["paced-2-calipers"], site.studies["paced-3-normal"]
    critical = site.studies[CRITICAL]
    _open(page, site, normal)
    page.keyboard.press("p")  # previous in queue order
    page.wait_for_url(f"{site.base}/studies/{calipers}")
    assert "normal ecg" in page.locator("section.statements").inner_text()
    keystrokes = 0
    for study in (calipers, normal):
        assert page.url.split("?")[0] == f"{site.base}/studies/{study}" and _state(site, study) == "awaiting_signoff"
        with store.session_scope(site.engine) as session:
            following = next_awaiting(session, study)
        with page.expect_navigation():
            page.keyboard.press("s")  # sign and next
            keystrokes += 1
        assert _state(site, study) == "signed"
        assert page.url == f"{site.base}/studies/{following}?done=signed"  # already on the next one
    assert keystrokes == 2
    print(f"\nkeyboard: {keystrokes} keystrokes signed {keystrokes} normal studies, each landing on the next study")
    # On a critical study the key asks first; declining signs nothing.
    _open(page, site, critical)
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.keyboard.press("s")
    page.wait_for_timeout(300)
    assert asked and "CRITICAL" in asked[0]
    assert _state(site, critical) == "awaiting_signoff"
    with store.session_scope(site.engine) as session:
        signed = session.execute(sa.select(Report).where(Report.study_id == calipers, Report.version == 2)).scalar_one()
    assert signed.result_status == "F" and signed.signed_by == "drrossi"


# ---------------------------------------------------------------- sign, deliver, and a viewer


def test_cardiologist_signs_the_critical_draft_and_the_final_oru_arrives(site: Site, browser, cardiologist) -> None:
    from reports.delivery import deliver_due
    from reports.destinations import HL7Destination

    page = cardiologist
    critical = site.studies[CRITICAL]
    _open(page, site, critical)
    page.fill("textarea[name=impression]", EDITED)
    page.click("button[value=sign]")
    page.wait_for_url(re.compile(rf".*/studies/{critical}\?done=signed$"))
    assert "Signed: the final report (F)" in page.locator(".banner").inner_text()

    with FakeInterfaceEngine() as interface_engine:
        destination = HL7Destination(name="his", host="127.0.0.1", port=interface_engine.port)
        for _ in range(4):  # the drafts go first (per-patient order), then the finals
            deliver_due(site.engine, [destination])
        finals = [m for m in interface_engine.received if str(m.segment("OBR")[25]) == "F"
                  and "Cath lab informed." in str(m)]
        accepted = list(interface_engine.accepted_control_ids)
    assert len(finals) == 1
    final = finals[0]
    with store.session_scope(site.engine) as session:
        signed = session.execute(sa.select(Report).where(Report.study_id == critical, Report.version == 2)).scalar_one()
    assert str(final.segment("MSH")[10]) == signed.message_control_id in accepted
    assert EDITED.split(":")[0] in str(final)
    assert {str(obx[11]) for obx in final.segments("OBX")} == {"F"}
    # The cardiologist's report: "Confirmed by", none of the draft's machine content.
    from reports.hl7_validate import machine_only_content

    assert any(str(nte[3]).startswith("Confirmed by Rossi, Anna on ") for nte in final.segments("NTE"))
    assert machine_only_content(str(final)) == [] and "ECGWL-REASONING" not in str(final)
    assert str(final.segment("OBR")[32]).startswith("drrossi&Rossi&Anna")
    page.reload()
    assert "delivered" in page.locator("section.card", has_text="Delivery").inner_text()

    context = browser.new_context(viewport=VIEWPORT)
    viewer = context.new_page()
    _log_in(viewer, site.base, "viewer")
    other = site.studies["demo-dicom"]
    viewer.goto(f"{site.base}/studies/{other}")
    assert viewer.locator("form.signoff").count() == 0
    assert "can look but not sign" in viewer.content()
    viewer.keyboard.press("s")  # the shortcut has no form to submit
    token = viewer.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = viewer.request.post(f"{site.base}/studies/{other}/sign", form={
        "csrf_token": token, "based_on_version": "1", "impression": "viewer says", "action": "sign"})
    assert refused.status == 403
    context.close()
    with store.session_scope(site.engine) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Report)
                               .where(Report.study_id == other)).scalar_one() == 1
