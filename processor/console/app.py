"""The QM console's web application (Starlette + Jinja2, server-rendered, no build step).

Pages: ACD Configuration and Users (administrators), Contacts and a contact's detail with
its audio and screen recordings (evaluators). Nothing is served without signing in
except the sign-in page and the style sheet; every change is a POST carrying the
session's CSRF token and is written to the audit log, and so is every phone-number reveal.
AWS calls are blocking boto3 calls: they run in Starlette's thread pool.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from botocore.exceptions import BotoCoreError, ClientError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processor.adapters.connect.user_listing import (
    ConnectUserSource,
    SyncStateStore,
    instance_id_from_arn,
    sync_users,
)
from processor.adapters.dynamodb.console_audit_log import AuditEntry, DynamoAuditLog
from processor.adapters.dynamodb.console_sessions import SessionStore
from processor.adapters.dynamodb.contacts import DynamoContactStore, StoredContact
from processor.adapters.dynamodb.contacts_query import ContactQuery
from processor.adapters.dynamodb.runtime_config import AcdConfiguration, ConfigConflict, RuntimeConfigStore
from processor.adapters.dynamodb.users_table import DynamoUserAdmin, UserRow
from processor.adapters.sqs.agent_queue_depth import AgentQueueDepths
from processor.console.auth import (
    Authenticator,
    ConsoleAccount,
    SignInThrottled,
    csrf_matches,
    new_csrf_token,
)
from processor.console.forms import changes, parse_acd_form, whole_number
from processor.console.health_panel import HealthCheck
from processor.console.media import (
    Media,
    RecordingInspector,
    RecordingMismatch,
    RecordingTooLarge,
    S3Objects,
    ScreenSource,
)
from processor.core.contact_query import DIRECTIONS, duration_check, parse_filter
from processor.core.http_range import RangeNotSatisfiable, parse_range
from processor.core.local_time import shown_date_time
from processor.core.schemas import load_schema
from processor.core.user_directory import parse_users
from processor.platform.exceptions import InvalidInput, OsLoginTaken
from processor.platform.logs import get_logger, mask_phone
from processor.platform.settings import ConsoleRole, Settings

log = get_logger("processor.console")

HERE = Path(__file__).parent
SESSION_COOKIE = "qm_console"
MAX_IMPORT_BYTES = 5 * 1024 * 1024
NUMBER_FIELDS = ("called_number", "calling_number")
ADMIN, EVALUATOR = ConsoleRole.ADMINISTRATOR, ConsoleRole.EVALUATOR


def known_flags() -> frozenset[str]:
    schema = load_schema("qm-contact")
    return frozenset(schema["properties"]["flags"]["items"]["enum"])


def with_every_field(doc: Mapping[str, Any], tz: tzinfo = UTC) -> dict[str, Any]:
    """The contact with every schema field present (None when absent): older versions of a
    contact lack the fields later pipeline stages add. ``shown_date``/``shown_time``: the
    seed's Date and Time in the contact centre's time zone."""
    full = {**dict.fromkeys(load_schema("qm-contact")["properties"]), **doc}
    full["shown_date"], full["shown_time"] = shown_date_time(full, tz)
    full["shown_zone"] = str(tz)
    return full


@dataclass
class ConsoleDeps:
    """Everything the pages read and write; built from the settings by ``build_console``."""

    settings: Settings
    auth: Authenticator
    config: RuntimeConfigStore
    users: DynamoUserAdmin
    sync_state: SyncStateStore
    connect_users: Callable[[], ConnectUserSource]
    contacts: DynamoContactStore
    contact_query: ContactQuery
    audit: DynamoAuditLog
    objects: S3Objects
    inspector: RecordingInspector
    screen: ScreenSource
    queue_depths: AgentQueueDepths
    health: HealthCheck
    sessions: SessionStore
    #: Gives these agents' contacts their (new) names; returns how many changed.
    name_contacts: Callable[[Iterable[str]], int]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def instant(self) -> str:
        return self.now().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Denied(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


#: A sign-in form is a user name, a password, a token and a path: never more than this.
MAX_SIGN_IN_BYTES = 4096
#: Playbacks a session remembers as audited (hashed marks, to keep the cookie small).
PLAYED_REMEMBERED = 100


# --- sessions, roles, CSRF ----------------------------------------------------------------------
def _account(request: Request, deps: ConsoleDeps) -> ConsoleAccount | None:
    """The signed-in account: the cookie's session must still be open (not signed out) and
    opened for the account as it is now (same password and roles)."""
    username, sid, fingerprint = (request.session.get(k) for k in ("user", "sid", "fp"))
    if not (isinstance(username, str) and isinstance(sid, str) and isinstance(fingerprint, str)):
        return None
    account = deps.auth.account(username)
    if account is None or account.fingerprint != fingerprint:
        return None
    if not deps.sessions.alive(sid, username, fingerprint, deps.now()):
        return None
    return account


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = new_csrf_token()
        request.session["csrf"] = token
    return token


def _is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path.endswith(("/audio", "/screen"))


async def checked_form(request: Request) -> FormData:
    """The request's form, only when it carries this session's CSRF token."""
    form = await request.form(max_part_size=MAX_IMPORT_BYTES)
    given = request.headers.get("x-csrf-token") or form.get("csrf_token")
    if not csrf_matches(request.session.get("csrf"), given if isinstance(given, str) else None):
        raise HTTPException(403, "The form is out of date or did not come from this console: reload it.")
    return form


Handler = Callable[[Request, ConsoleDeps, ConsoleAccount], Awaitable[Response]]


def _refused(body: dict[str, str], status: int, request: Request) -> Response:
    # A refused POST's body is never read: close the connection rather than let the client
    # send its next request after an unread body on the same keep-alive connection.
    headers = {"Connection": "close"} if request.method not in ("GET", "HEAD") else None
    return JSONResponse(body, status_code=status, headers=headers)


def guarded(
    deps: ConsoleDeps, role: ConsoleRole | None, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    """Sign-in (and ``role``) required; anonymous page views go to the sign-in page."""

    async def endpoint(request: Request) -> Response:
        account = _account(request, deps)
        if account is None:
            if _is_api(request) or request.method != "GET":
                return _refused({"error": "sign in first"}, 401, request)
            return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)
        if role is not None and not account.has(role):
            if _is_api(request) or request.method != "GET":
                return _refused({"error": f"needs the {role.value} role"}, 403, request)
            return _page(
                request,
                deps,
                "error.html",
                account,
                status=403,
                message=f"This page needs the {role.value} role.",
            )
        return await handler(request, deps, account)

    return endpoint


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["masked"] = lambda v: mask_phone(v) if v else ""


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    total = round(seconds)
    return (
        f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"
        if total >= 3600
        else f"{total // 60}:{total % 60:02d}"
    )


templates.env.filters["duration"] = _duration


def _page(
    request: Request,
    deps: ConsoleDeps,
    name: str,
    account: ConsoleAccount | None,
    status: int = 200,
    **context: Any,
) -> Response:
    context.update(request=request, account=account, csrf_token=_csrf(request), roles=ConsoleRole)
    return templates.TemplateResponse(request, name, context, status_code=status)


async def _audit(deps: ConsoleDeps, account: ConsoleAccount, action: str, target: str, **detail: Any) -> None:
    entry = AuditEntry(deps.instant(), account.username, action, target, detail)
    await run_in_threadpool(deps.audit.record, entry)


# --- sign-in ------------------------------------------------------------------------------------
async def login_page(request: Request, deps: ConsoleDeps) -> Response:
    if _account(request, deps) is not None:
        return RedirectResponse("/", status_code=303)
    return _page(
        request,
        deps,
        "login.html",
        None,
        next=request.query_params.get("next", "/"),
        configured=deps.auth.configured,
    )


def _safe_next(value: Any) -> str:
    text = value if isinstance(value, str) else "/"
    # Only paths of this console: never an absolute or scheme-relative URL.
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/"


async def small_form(request: Request) -> dict[str, str]:
    """A sign-in form: URL-encoded and at most ``MAX_SIGN_IN_BYTES``, read no further; its
    CSRF token checked before anything else is done with it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "Sign in with the form.")
    declared = request.headers.get("content-length", "")
    if not declared.isascii() or not declared.isdigit() or int(declared) > MAX_SIGN_IN_BYTES:
        raise HTTPException(413, "The sign-in form is larger than a sign-in needs.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SIGN_IN_BYTES:
            raise HTTPException(413, "The sign-in form is larger than a sign-in needs.")
    try:
        pairs = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "The sign-in form could not be read.") from None
    form = {k: v[0] for k, v in pairs.items()}
    if not csrf_matches(request.session.get("csrf"), form.get("csrf_token")):
        raise HTTPException(403, "The form is out of date or did not come from this console: reload it.")
    return form


def _login_refused(
    request: Request, deps: ConsoleDeps, form: Mapping[str, str], status: int, error: str
) -> Response:
    return _page(
        request,
        deps,
        "login.html",
        None,
        status=status,
        next=_safe_next(form.get("next")),
        error=error,
        configured=deps.auth.configured,
    )


async def login(request: Request, deps: ConsoleDeps) -> Response:
    form = await small_form(request)
    username = form.get("username", "").strip()
    password = form.get("password", "")
    client = request.client.host if request.client else ""
    try:
        account = await run_in_threadpool(deps.auth.verify, username, password, client)
    except SignInThrottled as exc:
        log.warning("console sign-in throttled", user=username[:64], retry_after=round(exc.retry_after))
        wait = max(1, round(exc.retry_after))
        response = _login_refused(
            request, deps, form, 429, f"Too many failed sign-ins from here: try again in {wait} s."
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if account is None:
        log.warning("console sign-in refused", user=username[:64])
        return _login_refused(request, deps, form, 401, "Unknown user name or wrong password.")
    request.session.clear()  # a new session on sign-in: no fixation
    sid = secrets.token_urlsafe(24)
    expires = deps.now() + timedelta(minutes=deps.settings.console_session_minutes)
    await run_in_threadpool(deps.sessions.open, sid, account.username, account.fingerprint, expires)
    request.session.update(
        user=account.username, sid=sid, fp=account.fingerprint, csrf=new_csrf_token(), since=deps.instant()
    )
    await _audit(deps, account, "sign_in", account.username)
    return RedirectResponse(_safe_next(form.get("next")), status_code=303)


async def logout(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    await checked_form(request)
    sid = request.session.get("sid")
    if isinstance(sid, str):
        await run_in_threadpool(deps.sessions.close, sid)  # the cookie, if kept, opens nothing
    request.session.clear()
    await _audit(deps, account, "sign_out", account.username)
    return RedirectResponse("/login", status_code=303)


async def home(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    return RedirectResponse("/contacts" if account.has(EVALUATOR) else "/config", status_code=303)


# --- ACD configuration --------------------------------------------------------------------------
async def config_page(
    request: Request,
    deps: ConsoleDeps,
    account: ConsoleAccount,
    *,
    form_config: AcdConfiguration | None = None,
    problems: dict[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    stored = await run_in_threadpool(deps.config.load)
    health = await run_in_threadpool(deps.health)
    recent = await run_in_threadpool(deps.audit.recent, deps.instant()[:10], 15)
    return _page(
        request,
        deps,
        "config.html",
        account,
        status=status,
        config=form_config or stored,
        stored=stored,
        problems=problems or {},
        settings=deps.settings,
        health=health.problems,
        recent=recent,
        message=message or ("Saved." if request.query_params.get("saved") else None),
    )


async def config_get(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    return await config_page(request, deps, account)


async def config_post(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    form = await checked_form(request)
    current = await run_in_threadpool(deps.config.load)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    wanted, problems = parse_acd_form(values, current)
    if problems:
        return await config_page(request, deps, account, form_config=wanted, problems=problems, status=422)
    if wanted.version != current.version:
        return await config_page(
            request,
            deps,
            account,
            message="Someone else saved the configuration meanwhile: here it is now; make your change again.",
            status=409,
        )
    diff = changes(current, wanted)
    if not diff:
        return RedirectResponse("/config?saved=1", status_code=303)
    try:
        await run_in_threadpool(
            lambda: deps.config.save(wanted, updated_by=account.username, updated_at=deps.instant())
        )
    except ConfigConflict:
        return await config_page(
            request,
            deps,
            account,
            message="Someone else saved the configuration meanwhile: here it is now; make your change again.",
            status=409,
        )
    await _audit(deps, account, "acd_configuration_changed", "acd", changes=diff)
    return RedirectResponse("/config?saved=1", status_code=303)


# --- users --------------------------------------------------------------------------------------
def _matches(row: UserRow, query: str) -> bool:
    user = row.user
    text = " ".join(
        filter(None, (user.username, user.first_name, user.last_name, user.desktop_id, user.os_login))
    ).lower()
    return all(part in text for part in query.lower().split())


async def users_page(
    request: Request,
    deps: ConsoleDeps,
    account: ConsoleAccount,
    *,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    query = request.query_params.get("q", "").strip()
    page_text = request.query_params.get("page", "1")
    page_number = whole_number(page_text) or 1
    rows = await run_in_threadpool(deps.users.rows)
    matching = [r for r in rows if _matches(r, query)] if query else rows
    size = deps.settings.console_page_size
    pages = max(1, -(-len(matching) // size))
    page_number = min(page_number, pages)
    shown = matching[(page_number - 1) * size : page_number * size]

    def depths() -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for row in shown:
            try:
                out[row.user.username] = deps.queue_depths.depth(row.user.username)
            except (ClientError, BotoCoreError):
                out[row.user.username] = None
        return out

    depth = await run_in_threadpool(depths)
    sync = await run_in_threadpool(deps.sync_state.load)
    return _page(
        request,
        deps,
        "users.html",
        account,
        status=status,
        rows=shown,
        depth=depth,
        query=query,
        page=page_number,
        pages=pages,
        total=len(matching),
        sync=sync,
        message=message,
        error=error,
    )


async def users_get(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    # The outcome of the change just made travels in the signed session, never in the URL: a
    # link cannot make the page show text of its choosing.
    message = request.session.pop("done", None)
    return await users_page(request, deps, account, message=message if isinstance(message, str) else None)


def _redirect_users(request: Request, message: str) -> Response:
    request.session["done"] = message
    return RedirectResponse("/users", status_code=303)


async def users_screen_recording(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    form = await checked_form(request)
    action = form.get("action")
    if action not in ("enable", "disable"):
        raise HTTPException(400, "action must be enable or disable")
    usernames = [u for u in form.getlist("username") if isinstance(u, str) and u]
    if not usernames:
        return await users_page(request, deps, account, error="Select at least one user.", status=422)
    changed = await run_in_threadpool(deps.users.set_screen_recording, usernames, action == "enable")
    await _audit(deps, account, f"screen_recording_{action}d", "users", usernames=changed)
    return _redirect_users(request, f"Screen recording {action}d for {len(changed)} user(s).")


async def users_os_login(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    """Map (or unmap, with a blank login) the OS login an agent logs on to PCs with."""
    form = await checked_form(request)
    username = form.get("username")
    login = form.get("os_login")
    if not isinstance(username, str) or not username.strip() or not isinstance(login, str):
        return await users_page(request, deps, account, error="Give the ACD ID and the OS login.", status=422)
    username = username.strip()
    try:
        found = await run_in_threadpool(deps.users.set_os_login, username, login)
    except OsLoginTaken as exc:
        return await users_page(request, deps, account, error=f"OS login not saved: {exc}.", status=409)
    except InvalidInput as exc:
        return await users_page(
            request, deps, account, error=f"OS login not saved: {exc.detail}.", status=422
        )
    if not found:
        return await users_page(request, deps, account, error=f"No user {username}.", status=404)
    cleared = not login.strip()
    await _audit(deps, account, "os_login_removed" if cleared else "os_login_set", username)
    return _redirect_users(request, f"OS login {'removed' if cleared else 'saved'} for {username}.")


async def users_sync(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    await checked_form(request)
    stored = await run_in_threadpool(deps.config.load)
    arn = stored.instance_arn or deps.settings.named_instance_arn
    if not arn:
        return await users_page(
            request,
            deps,
            account,
            status=409,
            error="No Amazon Connect instance is configured: enter its ARN on the ACD Configuration page.",
        )

    def sync() -> tuple[Any, int]:
        outcome = sync_users(
            deps.connect_users(),
            deps.users,
            deps.sync_state,
            instance_id=instance_id_from_arn(arn),
            now=deps.instant,
            synced_by=account.username,
        )
        return outcome, deps.name_contacts(outcome.named)

    try:
        outcome, named = await run_in_threadpool(sync)
    except (ClientError, BotoCoreError) as exc:
        code = (
            exc.response.get("Error", {}).get("Code", "")
            if isinstance(exc, ClientError)
            else type(exc).__name__
        )
        log.warning("users sync failed", error=code)
        return await users_page(
            request,
            deps,
            account,
            status=502,
            error=f"Amazon Connect did not answer the user listing ({code or 'error'}): check the "
            "instance ARN, the region and the service's connect:ListUsers / connect:DescribeUser "
            "permissions.",
        )
    await _audit(
        deps,
        account,
        "users_synced",
        instance_id_from_arn(arn),
        created=len(outcome.created),
        updated=len(outcome.updated),
        gone=outcome.gone,
        problems=outcome.problems,
    )
    text = f"Synced {outcome.total} user(s) from Amazon Connect: {len(outcome.created)} new"
    if outcome.gone:
        text += f", {len(outcome.gone)} no longer in Connect"
    if outcome.problems:
        text += f", {len(outcome.problems)} could not be read"
    if named:
        text += f"; {named} contact(s) got their agent's name"
    return _redirect_users(request, text + ".")


async def users_import(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    form = await checked_form(request)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return await users_page(request, deps, account, error="Choose a file to import.", status=422)
    data = await upload.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        return await users_page(request, deps, account, error="The file is larger than 5 MiB.", status=413)
    try:
        users = parse_users(data)
    except InvalidInput as exc:
        return await users_page(request, deps, account, error=f"Nothing imported: {exc.detail}", status=422)
    except UnicodeDecodeError:
        return await users_page(
            request, deps, account, error="Nothing imported: the file is not UTF-8 text.", status=422
        )

    def write() -> int:
        for user in users:
            deps.users.upsert_imported(user)
        return deps.name_contacts([u.username for u in users])

    named = await run_in_threadpool(write)
    await _audit(
        deps, account, "users_imported", upload.filename or "file", usernames=[u.username for u in users]
    )
    return _redirect_users(
        request,
        f"Imported {len(users)} user(s) from {upload.filename or 'the file'}; "
        f"{named} contact(s) got their agent's name.",
    )


# --- contacts -----------------------------------------------------------------------------------
def _filter(deps: ConsoleDeps, params: Mapping[str, str]) -> Any:
    tz = deps.settings.zone
    return parse_filter(params, deps.now().astimezone(tz).date(), known_flags(), tz)


async def contacts_page(
    request: Request,
    deps: ConsoleDeps,
    account: ConsoleAccount,
    *,
    params: Mapping[str, str],
    revealed: str | None = None,
) -> Response:
    error = None
    try:
        flt = _filter(deps, params)
        page = await run_in_threadpool(
            deps.contact_query.page, flt, params.get("cursor"), deps.settings.console_page_size
        )
    except InvalidInput as exc:
        flt = parse_filter(
            {}, deps.now().astimezone(deps.settings.zone).date(), known_flags(), deps.settings.zone
        )
        page, error = None, exc.detail
    query = flt.as_query()
    next_link = (
        "/contacts?" + urlencode({**query, "cursor": page.next_cursor}) if page and page.next_cursor else None
    )
    agents = sorted(r.user.username for r in await run_in_threadpool(deps.users.rows))
    return _page(
        request,
        deps,
        "contacts.html",
        account,
        status=422 if error else 200,
        flt=flt,
        docs=[with_every_field(d, deps.settings.zone) for d in page.docs] if page else [],
        next_link=next_link,
        first_link="/contacts?" + urlencode(query),
        error=error,
        revealed=revealed,
        flags=sorted(known_flags()),
        directions=DIRECTIONS,
        agents=agents,
        cursor=params.get("cursor", ""),
        query=query,
    )


async def contacts_get(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    return await contacts_page(request, deps, account, params=dict(request.query_params))


def _may_reveal(account: ConsoleAccount) -> None:
    if not account.reveal_numbers:
        raise HTTPException(403, "Your account may not reveal phone numbers.")


async def contacts_reveal(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    form = await checked_form(request)
    _may_reveal(account)
    contact_id = str(form.get("contact_id") or "")
    stored = await run_in_threadpool(deps.contacts.get, contact_id)
    if stored is None:
        raise HTTPException(404, "No such contact.")
    await _audit(
        deps, account, "phone_numbers_revealed", contact_id, fields=list(NUMBER_FIELDS), page="contacts"
    )
    params = {
        k: v
        for k, v in form.items()
        if isinstance(v, str) and k in ("from", "to", "agent", "direction", "flag", "cursor")
    }
    return await contacts_page(request, deps, account, params=params, revealed=contact_id)


async def _stored(deps: ConsoleDeps, request: Request) -> StoredContact:
    stored = await run_in_threadpool(deps.contacts.get, request.path_params["contact_id"])
    if stored is None:
        raise HTTPException(404, "No such contact.")
    return stored


async def _contact(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    return with_every_field((await _stored(deps, request)).doc, deps.settings.zone)


def _recording_locations(deps: ConsoleDeps, doc: Mapping[str, Any]) -> tuple[list[str], bool]:
    """(where the contact's call recording may be played from, first choice first; refused).
    A stored contact is checked again before anything of it is read: a location outside the
    recordings buckets or Connect's key layout for this contact is refused, never touched in
    S3. QM's own copy comes first, and only where it must be: the copies bucket, the same key."""
    location = doc.get("recording_location")
    if not isinstance(location, str) or not location:
        return [], False
    rejection = deps.settings.recording_locations.check(location, str(doc.get("contact_id")))
    if rejection is not None:
        log.warning(
            "call recording outside the recordings buckets refused",
            contact_id=str(doc.get("contact_id")),
            reason=rejection.reason,
            bucket=rejection.bucket[:63],
        )
        return [], True
    copy = doc.get("qm_recording_location")
    if copy == f"{deps.settings.recordings_copy_bucket}/{location.partition('/')[2]}":
        return [copy, location], False
    return [location], False


def _recording_media(deps: ConsoleDeps, locations: Sequence[str]) -> Media | None:
    """The first of ``locations`` that is in S3 (QM's copy, else Connect's recording)."""
    for location in locations:
        media = deps.objects.media(location, "audio/wav")
        if media is not None:
            return media
    return None


async def contact_page(
    request: Request, deps: ConsoleDeps, account: ConsoleAccount, *, revealed: bool = False
) -> Response:
    stored = await _stored(deps, request)
    doc = with_every_field(stored.doc, deps.settings.zone)
    locations, refused = _recording_locations(deps, doc)
    parties = None
    recording_present = False
    # Stored at import (read once from the recording); computed here only for contacts
    # imported before the parties were stored.
    stored_parties = doc.get("recorded_parties") if isinstance(doc.get("recorded_parties"), str) else None
    if locations:
        try:
            recording_present = await run_in_threadpool(_recording_media, deps, locations) is not None
            if recording_present and stored_parties is None:
                parties = await run_in_threadpool(deps.inspector.parties, locations[-1])
        except (ClientError, BotoCoreError, ValueError):
            parties = None
    has_screen = bool(doc.get("screen_recording_location"))
    return _page(
        request,
        deps,
        "contact.html",
        account,
        doc=doc,
        revealed=revealed,
        parties=parties,
        stored_parties=stored_parties,
        recording_present=recording_present,
        recording_refused=refused,
        has_screen=has_screen,
        check=duration_check(
            doc,
            stored.view.expected_media_seconds,
            tolerance_seconds=deps.settings.duration_tolerance_seconds,
            tolerance_ratio=deps.settings.duration_tolerance_ratio,
        ),
    )


async def contact_get(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    return await contact_page(request, deps, account)


async def contact_reveal(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    await checked_form(request)
    _may_reveal(account)
    doc = await _contact(deps, request)
    await _audit(
        deps, account, "phone_numbers_revealed", doc["contact_id"], fields=list(NUMBER_FIELDS), page="contact"
    )
    return await contact_page(request, deps, account, revealed=True)


def _ranged(request: Request, media: Media) -> Response:
    try:
        wanted = parse_range(request.headers.get("range"), media.size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{media.size}"})
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
    if media.size == 0:
        return Response(b"", media_type=media.content_type, headers=headers)
    if wanted is None:
        start, end, status = 0, media.size - 1, 200
    else:
        start, end, status = wanted.start, wanted.end, 206
        headers["Content-Range"] = wanted.content_range(media.size)
    headers["Content-Length"] = str(end - start + 1)

    def body() -> Iterator[bytes]:
        yield from media.stream(start, end)

    return StreamingResponse(body(), status_code=status, media_type=media.content_type, headers=headers)


async def contact_audio(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    doc = await _contact(deps, request)
    locations, refused = _recording_locations(deps, doc)
    if refused:
        raise HTTPException(
            403, "This contact's call recording is outside the recordings bucket: not played."
        )
    if not locations:
        raise HTTPException(404, "This contact has no call recording.")
    media = await run_in_threadpool(_recording_media, deps, locations)
    if media is None:
        raise HTTPException(404, "The call recording is not in S3 (yet).")
    await _audit_playback(deps, account, doc, "audio", request)
    return _ranged(request, media)


async def contact_screen(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    doc = await _contact(deps, request)
    try:
        media = await run_in_threadpool(deps.screen.open, doc)
    except RecordingMismatch as exc:
        log.warning("screen recording refused", contact_id=str(doc["contact_id"]), detail=str(exc))
        raise HTTPException(
            409, "This contact's screen recording is not this contact's: not played."
        ) from None
    except RecordingTooLarge as exc:
        log.warning("screen recording too large to play", contact_id=str(doc["contact_id"]), detail=str(exc))
        raise HTTPException(413, "This screen recording is larger than the console plays.") from None
    if media is None:
        raise HTTPException(404, "This contact has no screen recording.")
    await _audit_playback(deps, account, doc, "screen", request)
    return _ranged(request, media)


async def _audit_playback(
    deps: ConsoleDeps, account: ConsoleAccount, doc: Mapping[str, Any], what: str, request: Request
) -> None:
    # Once per session, contact and medium, whatever the range asked for: a player's seeks
    # add nothing, and no sequence of ranged requests fetches a recording unaudited.
    contact_id = str(doc["contact_id"])
    mark = hashlib.sha256(f"{what}:{contact_id}".encode()).hexdigest()[:12]
    played = request.session.get("played")
    seen = [m for m in played if isinstance(m, str)] if isinstance(played, list) else []
    if mark in seen:
        return
    await _audit(deps, account, f"{what}_played", contact_id)
    request.session["played"] = [*seen, mark][-PLAYED_REMEMBERED:]


# --- JSON API -----------------------------------------------------------------------------------
def _masked(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for name in NUMBER_FIELDS:
        if out.get(name):
            out[name] = mask_phone(out[name])
    out.pop("system_endpoint_raw", None)
    out.pop("customer_endpoint_raw", None)
    return out


async def api_contacts(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    try:
        flt = _filter(deps, request.query_params)
        page = await run_in_threadpool(
            deps.contact_query.page, flt, request.query_params.get("cursor"), deps.settings.console_page_size
        )
    except InvalidInput as exc:
        return JSONResponse({"error": exc.detail}, status_code=422)
    return JSONResponse({"contacts": [_masked(d) for d in page.docs], "next_cursor": page.next_cursor})


async def api_users(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    rows = await run_in_threadpool(deps.users.rows)
    return JSONResponse(
        {
            "users": [
                {
                    **r.user.to_dict(),
                    "synced_at": r.synced_at,
                    "gone_from_connect_at": r.gone_from_connect_at,
                    "desktop_last_seen_at": r.desktop_last_seen_at,
                }
                for r in rows
            ]
        }
    )


async def api_config(request: Request, deps: ConsoleDeps, account: ConsoleAccount) -> Response:
    config = await run_in_threadpool(deps.config.load)
    return JSONResponse(config.__dict__)


# --- the application ----------------------------------------------------------------------------
_CSP = b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"


class SecurityHeaders:
    """No framing, no sniffing, no third-party anything; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": _CSP,
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"same-origin",
                    b"x-frame-options": b"DENY",
                }
                if b"cache-control" not in names:
                    extra[b"cache-control"] = b"no-store"
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


def create_app(deps: ConsoleDeps) -> Starlette:
    s = deps.settings
    secret = (
        s.console_session_secret.get_secret_value() if s.console_session_secret else secrets.token_urlsafe(48)
    )

    def route(path: str, handler: Handler, role: ConsoleRole | None, methods: list[str]) -> Route:
        return Route(path, guarded(deps, role, handler), methods=methods)

    async def login_get(request: Request) -> Response:
        return await login_page(request, deps)

    async def login_post(request: Request) -> Response:
        return await login(request, deps)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if _is_api(request) or request.method == "HEAD":
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return _page(
            request, deps, "error.html", _account(request, deps), status=exc.status_code, message=exc.detail
        )

    routes = [
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        route("/logout", logout, None, ["POST"]),
        route("/", home, None, ["GET"]),
        route("/config", config_get, ADMIN, ["GET"]),
        route("/config", config_post, ADMIN, ["POST"]),
        route("/users", users_get, ADMIN, ["GET"]),
        route("/users/screen-recording", users_screen_recording, ADMIN, ["POST"]),
        route("/users/sync", users_sync, ADMIN, ["POST"]),
        route("/users/os-login", users_os_login, ADMIN, ["POST"]),
        route("/users/import", users_import, ADMIN, ["POST"]),
        route("/contacts", contacts_get, EVALUATOR, ["GET"]),
        route("/contacts/reveal", contacts_reveal, EVALUATOR, ["POST"]),
        route("/contacts/{contact_id}", contact_get, EVALUATOR, ["GET"]),
        route("/contacts/{contact_id}/reveal", contact_reveal, EVALUATOR, ["POST"]),
        route("/contacts/{contact_id}/audio", contact_audio, EVALUATOR, ["GET"]),
        route("/contacts/{contact_id}/screen", contact_screen, EVALUATOR, ["GET"]),
        route("/api/contacts", api_contacts, EVALUATOR, ["GET"]),
        route("/api/users", api_users, ADMIN, ["GET"]),
        route("/api/config", api_config, ADMIN, ["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=s.console_session_minutes * 60,
                same_site="strict",
                https_only=s.console_secure_cookies,
            ),
        ],
        exception_handlers={HTTPException: http_error},
    )
