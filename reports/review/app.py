"""The sign-off web app: server-rendered pages over the queue, the study and the sign-off acts.

    GET  /login, POST /login, POST /logout       accounts (lock-out after 5 failures)
    GET  /queue                                  counts, filters, keyset paging, critical first
    GET  /search?q=                              studies by MRN, name or accession
    GET  /studies/{id}                           the ECG (zoom, calipers), patient, draft, the device's
                                                 statements, ours | device | stated measurements, flags,
                                                 the previous ECG and what changed, deliveries, history;
                                                 the sign-off forms; keyboard shortcuts
    GET  /studies/{id}/ecg.svg                   the ECG for people, from the file (ecg_view, cached)
    GET  /studies/{id}/image.png                 a scan's page (from the file, PNG, cached)
    POST /studies/{id}/sign                      sign | sign and next | amend (a correction)
    POST /studies/{id}/reject                    withdraw the draft with a reason
    POST /studies/{id}/deliveries/{outbox}/retry     a refused or retrying message: due at once
    POST /studies/{id}/deliveries/{outbox}/withdraw  ... or set aside, with a reason
    GET  /users, POST /users, POST /users/{name}/active    accounts (admin only)
    POST /users/{name}/unlock                              end a lock-out (admin only, audited)

Security choices, in one place:
- every page but /login needs a session; the session is a random token in an HttpOnly,
  SameSite=Strict cookie (Secure when configured for HTTPS), stored server-side as SHA-256;
- every POST carries the session's CSRF token (the login form a pre-session token that must
  equal its HttpOnly cookie); a missing or wrong token is refused with 403 before anything runs;
- roles are checked here and again in `signoff` (a viewer's crafted POST gets 403 from both);
- CSP allows only the app's own script files (static/review.js: zoom, calipers, shortcuts), no
  inline script, no other origin; frames are refused (X-Frame-Options DENY, frame-ancestors
  'none'), pages are not cached (they carry patient data);
- each request opens its own short database transactions (`store.session_scope`): a page one, for
  the session check and its reads together; an act (POST) one for the session check, then its own.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at run time,
# and the dependencies they name are local to `create_app`.

import gzip
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.interpretation import Interpretation
from ingest.protocol import vocabulary
from ingest.report_format import STEP_HEADINGS
from reports import delivery_view, store
from reports.hl7_oru import MEASUREMENT_CODES
from reports.db import OutboxState, Report, Role, Study, User
from reports.review import accounts, security, signoff
from reports.review.config import ReviewConfig, critical_in
from reports.review.ecg_source import ViewCache
from reports.review.queue import Cursor, QueueFilters, QueueStatus, next_awaiting, queue_counts, queue_page, search
from reports.review.study_view import source_file, study_extras
from reports.triage import stored_summary

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "ecgwl_session"
LOGIN_CSRF_COOKIE = "ecgwl_login_csrf"

SECURITY_HEADERS = {
    # Script only from the app's own files (no inline script, nothing from elsewhere): the pages
    # work as plain forms, and static/review.js adds zoom, calipers and keyboard shortcuts.
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; img-src 'self'; style-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # pages and images carry patient data
}

STATUS_CHOICES = [(QueueStatus.AWAITING.value, "awaiting sign-off"), (QueueStatus.SIGNED.value, "signed"),
                  (QueueStatus.REJECTED.value, "rejected"), (QueueStatus.ALL.value, "all")]
DONE_MESSAGES = {
    "signed": "Signed: the final report (F) is queued for delivery.",
    "amended": "Amended: the corrected report (C) is queued for delivery.",
    "rejected": "Rejected: the withdrawal (X) is recorded.",
    "queue_empty": "Signed. Nothing else is awaiting sign-off.",
    "delivery_retried": "Retry now: the message is due at once; the next delivery pass sends it.",
    "delivery_withdrawn": "Withdrawn: the message is set aside and no longer holds up this patient's later messages.",
}
# Who may retry or withdraw a refused message: the cardiologist who owns the result, and the
# administrator (who runs the interfaces). Withdrawing means the receiver never gets that
# version, a decision not left to the roles that only look.
DELIVERY_ROLES = frozenset({Role.CARDIOLOGIST, Role.ADMIN})
# The keyboard shortcuts static/review.js binds, as the page lists them (key, what it does).
SHORTCUTS = (("s", "sign and open the next study"), ("Shift+S", "sign and stay"), ("n / p", "next / previous study"),
             ("+ / -", "zoom in / out"), ("0", "fit the width"), ("1", "paper size (25 mm/s at 96 dpi)"),
             ("Esc", "clear the calipers"), ("/", "search"), ("?", "show or hide this list"))


REVIEWABLE_STATES = ("awaiting_signoff", "signed", "rejected")


class NeedLogin(Exception):
    """No valid session: send the browser to the login page."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking, read from the session at the start of the request."""

    user_id: int
    username: str
    display_name: str | None
    role: Role
    csrf_token: str

    @property
    def can_sign(self) -> bool:
        return self.role.can_sign

    @property
    def can_act_on_delivery(self) -> bool:
        return self.role in DELIVERY_ROLES


class SignForm(BaseModel):
    csrf_token: str = ""
    based_on_version: int
    impression: str = ""
    labels: str = ""  # the statements, ';'-separated: the draft's as offered, edited, or free text
    add_statement: str = ""  # one more statement picked from the library
    reason: str = ""
    action: Literal["sign", "sign_next", "amend"] = "sign"
    # Measurements the reviewer entered (blank: the report keeps the study's value).
    m_hr_bpm: str = ""
    m_pr_ms: str = ""
    m_qrs_ms: str = ""
    m_qt_ms: str = ""
    m_qtc_ms: str = ""
    m_qrs_axis_deg: str = ""

    def statements(self) -> list[str]:
        labels = split_labels(self.labels)
        return labels + [self.add_statement.strip()] if self.add_statement.strip() else labels

    def measurements(self) -> dict[str, float | None]:
        """The entered values; a value that is not a number is refused with the field's name."""
        entered: dict[str, float | None] = {}
        for name in MEASUREMENT_FIELDS:
            text = getattr(self, f"m_{name}").strip()
            if not text:
                continue
            try:
                entered[name] = float(text)
            except ValueError:
                raise signoff.InvalidInput(f"{MEASUREMENT_CODES[name][1]}: {text[:20]!r} is not a number") from None
        return entered

    def echo(self) -> dict[str, str]:
        """What was typed, for the form shown again after a refusal."""
        return {"impression": self.impression, "labels": "; ".join(self.statements()), "reason": self.reason}


MEASUREMENT_FIELDS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg")


class RejectForm(BaseModel):
    csrf_token: str = ""
    based_on_version: int
    reason: str = ""


class CsrfForm(BaseModel):
    csrf_token: str = ""


class WithdrawForm(BaseModel):
    csrf_token: str = ""
    reason: str = ""


class NewUserForm(BaseModel):
    csrf_token: str = ""
    username: str
    role: Role
    display_name: str = ""
    password: str


class ActiveForm(BaseModel):
    csrf_token: str = ""
    active: bool


def _form_measurements(study: Study, report: Report | None) -> list[tuple[str, str, str, str]]:
    """(field, name, unit, the value the report sends now) for the form's measurement inputs."""
    current = ((report.measurements or {}).get("values") if report is not None and report.measurements
               else None) or study.measurements or {}
    rows = []
    for name in MEASUREMENT_FIELDS:
        value = current.get(name)
        rows.append((name, MEASUREMENT_CODES[name][1], MEASUREMENT_CODES[name][2],
                     "" if value is None else str(int(round(value)))))
    return rows


def split_labels(text: str) -> list[str]:
    """Labels as typed in the form: ';' or new lines between them."""
    return [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]


def create_app(config: ReviewConfig, *, engine: sa.Engine | None = None) -> FastAPI:
    """The app for one database. Pass `engine` to share one (tests); else it is made from the URL."""
    engine = engine or store.make_engine(config.database_url)
    app = FastAPI(title="ecg-worklist sign-off", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    policy = signoff.SignoffPolicy(endpoints=config.endpoints, destinations=config.destinations,
                                   reject_action=config.reject_action)
    image_roots = [root.resolve() for root in config.image_roots]
    views = ViewCache(config.view_cache_dir, config.prepared_dir)

    @app.middleware("http")
    async def ids_in_range(request: Request, call_next: Callable[[Request], Any]) -> Response:
        # Every id in a URL is a database integer key: a number past its range names nothing
        # (a 404), and must not reach the database, which would refuse it with an error (a 500).
        if any(part.isdigit() and int(part) > MAX_URL_ID for part in request.url.path.split("/")):
            return _error_page(404, "No such page: the number in the address is out of range.")
        return await call_next(request)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(NeedLogin)
    async def need_login(_request: Request, _exc: NeedLogin) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_page(exc.status_code, str(exc.detail))

    # ------------------------------------------------------------ request helpers

    def db() -> Iterator[Session]:
        with store.session_scope(engine) as session:
            yield session

    def viewer_in(session: Session, request: Request) -> Viewer:
        found = accounts.session_for_token(session, request.cookies.get(SESSION_COOKIE))
        if found is None:
            raise NeedLogin()
        user = found.user
        return Viewer(user_id=user.id, username=user.username, display_name=user.display_name,
                      role=Role(user.role), csrf_token=found.csrf_token)

    def viewer(request: Request) -> Viewer:
        """Who is asking, for an act (POST): checked in a transaction of its own, ended before
        the act opens the transaction that writes."""
        with store.session_scope(engine) as session:
            return viewer_in(session, request)

    def reader(request: Request, session: Annotated[Session, Depends(db)]) -> Viewer:
        """Who is asking, for a page (GET): checked in the page's own transaction (`db` is made
        once a request), so a page costs one connection checkout and one transaction, not two."""
        return viewer_in(session, request)

    def check_csrf(who: Viewer, given: str) -> None:
        if not security.tokens_match(who.csrf_token, given):
            raise HTTPException(403, "The form's security token is missing or out of date: reload the page.")

    def form_of(model: type[BaseModel]) -> Callable[..., Any]:
        """A dependency reading `model` from the posted form (pydantic at the boundary)."""
        async def parse(request: Request) -> BaseModel:
            form = await request.form()
            try:
                return model.model_validate({key: value for key, value in form.items() if isinstance(value, str)})
            except ValidationError as exc:
                fields = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]}))
                raise HTTPException(422, f"The form is incomplete or malformed ({fields}).") from exc
        return parse

    def render(request: Request, name: str, who: Viewer | None, status_code: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, {"user": who, "csrf_token": who.csrf_token if who else "",
                                                          **context}, status_code=status_code)

    def signing_user(session: Session, who: Viewer) -> User:
        user = session.get(User, who.user_id)
        if user is None or not user.active:
            raise NeedLogin()
        return user

    def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                            secure=config.secure_cookies)

    # ------------------------------------------------------------ login and logout

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/queue", status_code=303)

    def login_page(request: Request, message: str | None = None, status_code: int = 200) -> Response:
        # Before a session exists, the login form's CSRF token is checked against a cookie of its own.
        token = security.new_token()
        response = templates.TemplateResponse(request, "login.html", {
            "user": None, "csrf_token": token, "message": message, "message_kind": "error" if message else None,
        }, status_code=status_code)
        set_cookie(response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    @app.get("/login")
    def login_form(request: Request) -> Response:
        return login_page(request)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        given = str(form.get("csrf_token", ""))
        if not security.tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), given):
            raise HTTPException(403, "The login form's security token is missing or out of date: reload the page.")
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        with store.session_scope(engine) as session:
            result = accounts.login(session, username, password, session_hours=config.session_hours)
        if result.outcome is accounts.LoginOutcome.LOCKED:
            until = f"{result.locked_until:%H:%M} UTC" if result.locked_until else "later"
            return login_page(request, f"This account is locked after {security.MAX_FAILED_LOGINS} failed logins; "
                                       f"try again after {until} or ask an administrator.", 401)
        if result.outcome is not accounts.LoginOutcome.OK or result.token is None:
            return login_page(request, "Wrong user name or password.", 401)
        response = RedirectResponse("/queue", status_code=303)
        set_cookie(response, SESSION_COOKIE, result.token, max_age=int(config.session_hours * 3600))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    @app.post("/logout")
    def logout(request: Request, who: Annotated[Viewer, Depends(viewer)],
               form: Annotated[CsrfForm, Depends(form_of(CsrfForm))]) -> Response:
        check_csrf(who, form.csrf_token)
        with store.session_scope(engine) as session:
            found = accounts.session_for_token(session, request.cookies.get(SESSION_COOKIE))
            if found is not None:
                accounts.logout(session, found)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------ the queue

    @app.get("/queue")
    def queue(
        request: Request, who: Annotated[Viewer, Depends(reader)], session: Annotated[Session, Depends(db)],
        status: str = "awaiting", source: str = "", date_from: str = "", date_to: str = "",
        date_on: str = "received", after: str = "", before: str = "", done: str = "",
    ) -> Response:
        try:
            filters = QueueFilters(status=status or "awaiting", source=source or None,
                                   date_from=date_from or None, date_to=date_to or None, date_on=date_on)
        except ValidationError:
            filters, done = QueueFilters(), "bad_filter"
        page = queue_page(session, filters, after=Cursor.decode(after), before=Cursor.decode(before),
                          limit=config.page_size)
        counts = queue_counts(session, filters)
        problems = delivery_view.delivery_problems(session, limit=20)
        base = {"status": filters.status.value, "source": filters.source or "", "date_on": filters.date_on,
                "date_from": filters.date_from.isoformat() if filters.date_from else "",
                "date_to": filters.date_to.isoformat() if filters.date_to else ""}

        def page_url(direction: str, cursor: Cursor) -> str:
            query = {k: v for k, v in base.items() if v} | {direction: cursor.encode()}
            return "/queue?" + urlencode(query)

        for row in page.rows:
            row.critical = row.critical or bool(critical_in(row.labels, config.critical_labels))
        message = DONE_MESSAGES.get(done) or ("The filter was not understood; showing the default view."
                                              if done == "bad_filter" else None)
        return render(
            request, "queue.html", who, rows=page.rows, filters=filters, status_choices=STATUS_CHOICES,
            counts=[("awaiting sign-off", counts.awaiting), ("critical awaiting", counts.awaiting_critical),
                    ("signed", counts.signed), ("rejected", counts.rejected),
                    ("delivery problems", len(problems)),
                    ("deliveries held for a person", delivery_view.alert_count(session))],
            total=counts.in_view(filters.status), problems=problems,
            prev_url=page_url("before", page.prev_cursor) if page.prev_cursor else None,
            next_url=page_url("after", page.next_cursor) if page.next_cursor else None,
            critical_labels=set(critical_in([label for row in page.rows for label in row.labels],
                                            config.critical_labels)),
            message=message, message_kind="ok" if done in DONE_MESSAGES else "error",
        )

    @app.get("/search")
    def search_page(request: Request, who: Annotated[Viewer, Depends(reader)],
                    session: Annotated[Session, Depends(db)], q: str = "") -> Response:
        found = search(session, q[:200])
        for row in found.rows:
            row.critical = row.critical or bool(critical_in(row.labels, config.critical_labels))
        return render(request, "search.html", who, query=q[:200], rows=found.rows, more=found.more,
                      critical_labels=set(critical_in([label for row in found.rows for label in row.labels],
                                                      config.critical_labels)))

    # ------------------------------------------------------------ the study

    def study_context(session: Session, study: Study, who: Viewer) -> dict[str, Any]:
        reports = list(session.execute(
            sa.select(Report).where(Report.study_id == study.id).order_by(Report.version)).scalars())
        report = reports[-1] if reports else None
        interpretation = Interpretation.model_validate(study.interpretation) if study.interpretation else None
        labels = list(report.labels or []) if report and report.labels is not None else list(study.labels or [])
        deliveries = delivery_view.delivery_status_for_study(session, study.id)
        demographics = study.demographics or {}
        extras = study_extras(session, study, labels, interpretation, views=views, thresholds=config.change_thresholds)
        return {
            "study": study, "report": report, "history": list(reversed(reports)), "labels": labels,
            "critical": bool(study.critical or critical_in(labels, config.critical_labels)),
            "triage": stored_summary(study.triage),
            "has_signal": (study.triage or {}).get("has_signal", study.features is not None),
            "critical_labels": set(critical_in(labels, config.critical_labels)),
            "is_demonstration": bool(interpretation and interpretation.is_demonstration),
            "interpreter": f"{interpretation.interpreter} {interpretation.interpreter_version}"
                           if interpretation else None,
            "patient": {
                "name": (demographics.get("patient_name") or "").replace("^", ", ") or None,
                "id": demographics.get("patient_id"), "sex": demographics.get("sex"),
                "birth_date": demographics.get("birth_date"), "age": demographics.get("age_years"),
                "accession": demographics.get("accession"), "acquired_at": demographics.get("acquired_at"),
            },
            "has_image": _image_file(study, image_roots) is not None,
            "reasoning_steps": _reasoning(interpretation),
            "extras": extras, "shortcuts": SHORTCUTS,
            "flags": list((study.interpretation or {}).get("flags") or []),
            "deliveries": deliveries,
            "can_act_on_delivery": who.can_act_on_delivery,
            "actionable_deliveries": {row.outbox_id for row in deliveries if _needs_a_person(row)},
            "can_sign": who.can_sign and report is not None,
            # The form offers the draft's statements and impression to confirm, without the
            # interpreter's "preliminary ... requires confirmation" sentence; a signed report's as signed.
            "form_impression": (signoff.draft_impression(report.impression) if report is not None
                                and report.status == "draft" else (report.impression or "") if report else ""),
            "statement_library": [label for label in vocabulary.LABELS if label not in labels],
            "form_measurements": _form_measurements(study, report),
            "signed": report is not None and report.status in ("signed", "amended"),
            "is_draft": report is not None and report.status == "draft",
        }

    def show_study(request: Request, session: Session, study_id: int, who: Viewer, *, message: str | None = None,
                   message_kind: str = "info", status_code: int = 200, form: dict[str, str] | None = None) -> Response:
        study = session.get(Study, study_id)
        if study is None or study.state not in REVIEWABLE_STATES:
            raise HTTPException(404, "No such study in the sign-off queue.")
        context = study_context(session, study, who)
        return render(request, "study.html", who, status_code=status_code, message=message,
                      message_kind=message_kind, form=form or {}, **context)

    @app.get("/studies/{study_id}")
    def study_page(request: Request, study_id: int, who: Annotated[Viewer, Depends(reader)],
                   session: Annotated[Session, Depends(db)], done: str = "") -> Response:
        return show_study(request, session, study_id, who, message=DONE_MESSAGES.get(done),
                          message_kind="ok")

    @app.get("/studies/{study_id}/ecg.svg")
    def study_svg(request: Request, study_id: int, who: Annotated[Viewer, Depends(reader)],
                  session: Annotated[Session, Depends(db)]) -> Response:
        study = session.get(Study, study_id)
        if study is None or study.state not in REVIEWABLE_STATES:
            raise HTTPException(404, "No such study in the sign-off queue.")
        drawing = views.svg_gz(study.sha256, source_file(study))
        if drawing is None:
            raise HTTPException(404, "This study has no signal to draw (a scan: see its page image).")
        headers = {"Cache-Control": "private, no-store", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(drawing, media_type="image/svg+xml", headers=headers | {"Content-Encoding": "gzip"})
        return Response(gzip.decompress(drawing), media_type="image/svg+xml", headers=headers)

    @app.get("/studies/{study_id}/image.png")
    def study_image(study_id: int, who: Annotated[Viewer, Depends(reader)],
                    session: Annotated[Session, Depends(db)]) -> Response:
        study = session.get(Study, study_id)
        headers = {"Cache-Control": "private, no-store"}
        path = _image_file(study, image_roots) if study is not None else None
        if path is not None:  # a study prepared before the pipeline stopped writing images
            return FileResponse(path, media_type="image/png", headers=headers)
        page = views.page_png(study.sha256, source_file(study)) if study is not None else None
        if page is None:
            raise HTTPException(404, "No image for this study.")
        return Response(page, media_type="image/png", headers=headers)

    def refuse_unless_signer(who: Viewer) -> None:
        if not who.can_sign:
            raise HTTPException(403, f"The {who.role.value} role can look but not sign, amend or reject.")

    @app.post("/studies/{study_id}/sign")
    def sign(request: Request, study_id: int, who: Annotated[Viewer, Depends(viewer)],
             form: Annotated[SignForm, Depends(form_of(SignForm))]) -> Response:
        check_csrf(who, form.csrf_token)
        refuse_unless_signer(who)
        labels = form.statements()
        try:
            entered = form.measurements()
            with store.session_scope(engine) as session:
                user = signing_user(session, who)
                if form.action == "amend":
                    signoff.amend(session, study_id, user, form.based_on_version, form.impression, labels,
                                  form.reason, policy=policy, measurements=entered)
                else:
                    signoff.sign(session, study_id, user, form.based_on_version, form.impression, labels,
                                 policy=policy, measurements=entered)
                following = next_awaiting(session, study_id) if form.action == "sign_next" else None
        except (signoff.SignoffError, store.StudyNotFound) as exc:
            return refused(request, study_id, who, exc, form=form.echo())
        done = "amended" if form.action == "amend" else "signed"
        if form.action == "sign_next":
            target = f"/studies/{following}?done=signed" if following else "/queue?done=queue_empty"
            return RedirectResponse(target, status_code=303)
        return RedirectResponse(f"/studies/{study_id}?done={done}", status_code=303)

    @app.post("/studies/{study_id}/reject")
    def reject(request: Request, study_id: int, who: Annotated[Viewer, Depends(viewer)],
               form: Annotated[RejectForm, Depends(form_of(RejectForm))]) -> Response:
        check_csrf(who, form.csrf_token)
        refuse_unless_signer(who)
        try:
            with store.session_scope(engine) as session:
                signoff.reject(session, study_id, signing_user(session, who), form.based_on_version, form.reason,
                               policy=policy)
        except (signoff.SignoffError, store.StudyNotFound) as exc:
            return refused(request, study_id, who, exc)
        return RedirectResponse(f"/studies/{study_id}?done=rejected", status_code=303)

    def refused(request: Request, study_id: int, who: Viewer, exc: Exception,
                form: dict[str, str] | None = None) -> Response:
        """The study page again, as it is now, with why the act was refused (nothing was saved)."""
        if isinstance(exc, store.StudyNotFound):
            raise HTTPException(404, "No such study.")
        status_code = {signoff.Conflict: 409, signoff.NotAllowed: 403}.get(type(exc), 400)
        # The reviewer's edits come back in the form so a conflict costs no typing.
        with store.session_scope(engine) as session:
            return show_study(request, session, study_id, who, message=str(exc), message_kind="error",
                              status_code=status_code, form=form if status_code != 409 else None)

    # ------------------------------------------------------------ delivery problems

    def refuse_unless_delivery_role(who: Viewer) -> None:
        if not who.can_act_on_delivery:
            raise HTTPException(403, f"The {who.role.value} role can look but not retry or withdraw a delivery.")

    def actionable_delivery(session: Session, study_id: int, outbox_id: int) -> delivery_view.DeliveryRow:
        """The study's own row, and only one the page offers the buttons for: a crafted POST can
        neither reach another study's message nor withdraw one that is merely queued."""
        row = next((r for r in delivery_view.delivery_status_for_study(session, study_id)
                    if r.outbox_id == outbox_id), None)
        if row is None:
            raise HTTPException(404, "No such delivery for this study.")
        if not _needs_a_person(row):
            raise ValueError(f"This delivery is {row.status}: there is nothing to retry or withdraw.")
        return row

    @app.post("/studies/{study_id}/deliveries/{outbox_id}/retry")
    def retry_delivery(request: Request, study_id: int, outbox_id: int, who: Annotated[Viewer, Depends(viewer)],
                       form: Annotated[CsrfForm, Depends(form_of(CsrfForm))]) -> Response:
        check_csrf(who, form.csrf_token)
        refuse_unless_delivery_role(who)
        try:
            with store.session_scope(engine) as session:
                actionable_delivery(session, study_id, outbox_id)
                delivery_view.retry_now(session, outbox_id, f"user:{who.username}")
        except ValueError as exc:  # delivered, or not a problem row: nothing was changed
            return refused(request, study_id, who, exc)
        return RedirectResponse(f"/studies/{study_id}?done=delivery_retried", status_code=303)

    @app.post("/studies/{study_id}/deliveries/{outbox_id}/withdraw")
    def withdraw_delivery(request: Request, study_id: int, outbox_id: int, who: Annotated[Viewer, Depends(viewer)],
                          form: Annotated[WithdrawForm, Depends(form_of(WithdrawForm))]) -> Response:
        check_csrf(who, form.csrf_token)
        refuse_unless_delivery_role(who)
        try:
            with store.session_scope(engine) as session:
                actionable_delivery(session, study_id, outbox_id)
                delivery_view.withdraw(session, outbox_id, f"user:{who.username}", form.reason)
        except ValueError as exc:  # no reason, delivered, or not a problem row: nothing was changed
            return refused(request, study_id, who, exc)
        return RedirectResponse(f"/studies/{study_id}?done=delivery_withdrawn", status_code=303)

    # ------------------------------------------------------------ accounts (admin)

    def refuse_unless_admin(who: Viewer) -> None:
        if who.role is not Role.ADMIN:
            raise HTTPException(403, "Only an administrator manages accounts.")

    @app.get("/users")
    def users_page(request: Request, who: Annotated[Viewer, Depends(reader)],
                   session: Annotated[Session, Depends(db)], done: str = "") -> Response:
        refuse_unless_admin(who)
        return render(request, "users.html", who, users=accounts.list_users(session), roles=list(Role),
                      message={"added": "Account added.", "changed": "Account changed.",
                               "unlocked": "Account unlocked."}.get(done),
                      message_kind="ok")

    @app.post("/users")
    def add_user(request: Request, who: Annotated[Viewer, Depends(viewer)],
                 form: Annotated[NewUserForm, Depends(form_of(NewUserForm))]) -> Response:
        check_csrf(who, form.csrf_token)
        refuse_unless_admin(who)
        try:
            with store.session_scope(engine) as session:
                accounts.add_user(session, form.username, form.role, form.password, actor=f"user:{who.username}",
                                  display_name=form.display_name.strip() or None)
        except ValueError as exc:  # AccountError, or a password that is too short
            with store.session_scope(engine) as session:
                return render(request, "users.html", who, status_code=400, users=accounts.list_users(session),
                              roles=list(Role), message=str(exc), message_kind="error")
        return RedirectResponse("/users?done=added", status_code=303)

    @app.post("/users/{username}/active")
    def set_active(username: str, who: Annotated[Viewer, Depends(viewer)],
                   form: Annotated[ActiveForm, Depends(form_of(ActiveForm))]) -> Response:
        check_csrf(who, form.csrf_token)
        refuse_unless_admin(who)
        if username == who.username and not form.active:
            raise HTTPException(400, "You cannot disable your own account.")
        try:
            with store.session_scope(engine) as session:
                accounts.set_active(session, username, form.active, actor=f"user:{who.username}")
        except accounts.AccountError as exc:
            raise HTTPException(404, str(exc)) from exc
        return RedirectResponse("/users?done=changed", status_code=303)

    @app.post("/users/{username}/unlock")
    def unlock_user(username: str, who: Annotated[Viewer, Depends(viewer)],
                    form: Annotated[CsrfForm, Depends(form_of(CsrfForm))]) -> Response:
        check_csrf(who, form.csrf_token)
        refuse_unless_admin(who)
        try:
            with store.session_scope(engine) as session:
                accounts.unlock(session, username, actor=f"user:{who.username}")
        except accounts.AccountError as exc:
            raise HTTPException(404, str(exc)) from exc
        return RedirectResponse("/users?done=unlocked", status_code=303)

    app.state.engine = engine
    app.state.config = config
    return app


# ---------------------------------------------------------------- page data


MAX_URL_ID = 2**31 - 1  # the largest INTEGER key (studies, reports, outbox rows, users)


def _error_page(status_code: int, detail: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>{status_code}</title><p>{_escape(detail)}</p>"
                        '<p><a href="/queue">Back to the queue</a></p>', status_code=status_code)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _needs_a_person(row: delivery_view.DeliveryRow) -> bool:
    """Held for a person after AE/AR, or retrying: the rows `delivery_problems` lists."""
    return row.state == OutboxState.ERROR.value or (row.state == OutboxState.PENDING.value and row.attempts > 0)


def _image_file(study: Study | None, roots: list[Path]) -> Path | None:
    """The study's PNG, if it exists and lies under an allowed folder (when any are configured)."""
    if study is None or not study.image_path:
        return None
    path = Path(study.image_path).resolve()
    if roots and not any(path.is_relative_to(root) for root in roots):
        log.warning("study %s: image outside the configured folders, not served", study.id)
        return None
    return path if path.is_file() else None


def _reasoning(interpretation: Interpretation | None) -> list[tuple[str, str]]:
    if interpretation is None:
        return []
    steps = interpretation.parsed.steps
    if not steps and interpretation.raw_text.strip():
        return [("Interpreter output (not in the expected format)", interpretation.raw_text)]
    return [(STEP_HEADINGS[number - 1], steps[number]) for number in sorted(steps)]
