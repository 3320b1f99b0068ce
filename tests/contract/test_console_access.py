"""The console against the emulator: sign-in, roles, CSRF, masking, audit, streaming."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from processor.adapters.dynamodb.console_audit_log import DynamoAuditLog
from processor.adapters.dynamodb.runtime_config import RuntimeConfigReader, RuntimeConfigStore
from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from tests.console_support import DAY, ConsoleEnv, csrf_of

PAGES_ADMIN = ["/config", "/users", "/api/users", "/api/config"]
PAGES_EVAL = [
    "/contacts",
    "/contacts/c-both",
    "/contacts/c-both/audio",
    "/contacts/c-both/screen",
    "/api/contacts",
]
CHANGES_ADMIN = ["/config", "/users/screen-recording", "/users/sync", "/users/import", "/users/os-login"]
CHANGES_EVAL = ["/contacts/reveal", "/contacts/c-both/reveal"]


def _audit(env: ConsoleEnv) -> list:
    return DynamoAuditLog(env.aws.dynamodb, env.settings.audit_table).recent("2024-06-30", 100)


def test_anonymous_requests_are_refused(console_env: ConsoleEnv) -> None:
    client = console_env.client()
    for path in ["/", *PAGES_ADMIN, *PAGES_EVAL]:
        response = client.get(path)
        if path.startswith("/api/") or path.endswith(("/audio", "/screen")):
            assert response.status_code == 401, path
        else:
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login")
        assert "+1425555012" not in response.text
    for path in [*CHANGES_ADMIN, *CHANGES_EVAL, "/logout"]:
        assert client.post(path, data={"csrf_token": "x"}).status_code == 401, path
    assert client.get("/static/console.css").status_code == 200
    login = client.get("/login")
    assert login.status_code == 200 and 'for="password"' in login.text


def test_wrong_role_is_refused(console_env: ConsoleEnv) -> None:
    admin = console_env.signed_in("admin")
    for path in PAGES_EVAL:
        assert admin.get(path).status_code == 403, path
    csrf = csrf_of(admin.get("/config").text)
    for path in CHANGES_EVAL:
        assert admin.post(path, data={"csrf_token": csrf, "contact_id": "c-both"}).status_code == 403, path
    eva = console_env.signed_in("eva")
    for path in PAGES_ADMIN:
        assert eva.get(path).status_code == 403, path
    csrf = csrf_of(eva.get("/contacts").text)
    for path in CHANGES_ADMIN:
        response = eva.post(path, data={"csrf_token": csrf, "action": "enable", "username": "ana.silva"})
        assert response.status_code == 403, path
    assert (
        DynamoUserDirectory(console_env.aws.dynamodb, console_env.settings.users_table)
        .get("ana.silva")
        .screen_recording
        is False
    )


def test_session_cookie_flags(console_env: ConsoleEnv) -> None:
    client = console_env.client()
    response = client.get("/login")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_wrong_password_and_login_without_csrf(console_env: ConsoleEnv) -> None:
    client = console_env.client()
    csrf = csrf_of(client.get("/login").text)
    bad = client.post("/login", data={"username": "eva", "password": "nope", "csrf_token": csrf})
    assert bad.status_code == 401
    assert client.get("/contacts").status_code == 303
    from tests.console_support import PASSWORD

    no_token = client.post("/login", data={"username": "eva", "password": PASSWORD})
    assert no_token.status_code == 403
    assert client.get("/contacts").status_code == 303


def test_changes_need_the_csrf_token(console_env: ConsoleEnv) -> None:
    admin = console_env.signed_in("admin")
    store = RuntimeConfigStore(console_env.aws.dynamodb, console_env.settings.config_table)
    form = {"join_window_minutes": "30", "include_acw": "on", "version": "0"}  # RTE box unticked
    assert admin.post("/config", data=form).status_code == 403
    assert admin.post("/config", data={**form, "csrf_token": "forged"}).status_code == 403
    assert (
        admin.post("/users/screen-recording", data={"action": "enable", "username": "ana.silva"}).status_code
        == 403
    )
    assert store.load().rte_enabled is True
    # Another session's token is no good either.
    other = csrf_of(console_env.signed_in("boss").get("/config").text)
    assert admin.post("/config", data={**form, "csrf_token": other}).status_code == 403
    assert store.load().rte_enabled is True


def test_rte_off_reaches_the_running_service_without_restart(console_env: ConsoleEnv) -> None:
    store = RuntimeConfigStore(console_env.aws.dynamodb, console_env.settings.config_table)
    reader = RuntimeConfigReader(store, ttl_seconds=0)
    assert reader.get().rte_enabled is True
    admin = console_env.signed_in("admin")
    csrf = csrf_of(admin.get("/config").text)
    form = {"csrf_token": csrf, "join_window_minutes": "20", "include_acw": "on", "version": "0"}
    response = admin.post("/config", data=form)
    assert response.status_code == 303
    config = reader.get()
    assert (config.rte_enabled, config.join_window_minutes, config.updated_by) == (False, 20, "admin")
    entries = [e for e in _audit(console_env) if e.action == "acd_configuration_changed"]
    assert entries and entries[0].detail["changes"]["rte_enabled"] == [True, False]
    # A stale form (version 0 again) is refused, not silently overwriting.
    stale = admin.post("/config", data={**form, "rte_enabled": "on"})
    assert stale.status_code == 409
    assert reader.get().rte_enabled is False
    invalid = admin.post("/config", data={**form, "version": "1", "join_window_minutes": "0"})
    assert invalid.status_code == 422 and "between 1 and 1440" in invalid.text


def test_phone_numbers_absent_until_revealed(console_env: ConsoleEnv) -> None:
    eva = console_env.signed_in("eva")
    page = eva.get("/contacts", params={"from": DAY, "to": DAY})
    assert page.status_code == 200
    assert 'data-contact="c-both"' in page.text
    assert not re.search(r"\+14255550\d{3}", page.text)  # no calling number in clear
    assert "+18005550100" not in page.text
    assert "+*********20" in page.text  # masked, last two digits only
    detail = eva.get("/contacts/c-both")
    assert "+14255550120" not in detail.text and "+18005550100" not in detail.text
    api = eva.get("/api/contacts", params={"from": DAY, "to": DAY}).json()
    assert "+14255550120" not in str(api)
    csrf = csrf_of(page.text)
    revealed = eva.post(
        "/contacts/reveal", data={"csrf_token": csrf, "contact_id": "c-both", "from": DAY, "to": DAY}
    )
    assert revealed.status_code == 200
    assert "+14255550120" in revealed.text  # that row only
    assert "+14255550121" not in revealed.text
    revealed_detail = eva.post("/contacts/c-agent-only/reveal", data={"csrf_token": csrf})
    assert "+14255550121" in revealed_detail.text
    reveals = [e for e in _audit(console_env) if e.action == "phone_numbers_revealed"]
    assert {(e.actor, e.target) for e in reveals} == {("eva", "c-both"), ("eva", "c-agent-only")}
    assert all("+1425" not in str(e.detail) for e in reveals)
    viewer = console_env.signed_in("viewer")
    vpage = viewer.get("/contacts", params={"from": DAY, "to": DAY})
    assert ">Reveal<" not in vpage.text
    denied = viewer.post("/contacts/reveal", data={"csrf_token": csrf_of(vpage.text), "contact_id": "c-both"})
    assert denied.status_code == 403 and "+14255550120" not in denied.text


def test_contact_detail_shows_join_flags_parties_and_players(console_env: ConsoleEnv) -> None:
    eva = console_env.signed_in("eva")
    both = eva.get("/contacts/c-both").text
    assert re.search(r'id="recorded-parties">both', both)
    assert 'id="audio"' in both and 'id="screen"' in both
    assert 'id="screen-coverage">98.0 %' in both
    assert re.search(r'id="duration-check">consistent', both)
    assert re.search(r'id="recorded-parties">agent', eva.get("/contacts/c-agent-only").text)
    assert re.search(r'id="recorded-parties">customer', eva.get("/contacts/c-customer-only").text)
    missing = eva.get("/contacts/c-missing").text
    assert 'id="join-state">recording_missing' in missing and "no call recording" in missing
    assert eva.get("/contacts/nope").status_code == 404


def test_contact_detail_shows_the_parties_stored_at_import(console_env: ConsoleEnv) -> None:
    """A contact imported with its recorded parties shows the stored value; the recording is
    not read again for it (contacts imported before are computed on the page, above)."""
    from processor.console.samples import put_contacts

    bucket = console_env.settings.recordings_bucket
    key = "connect/demo/CallRecordings/2024/06/28/c-stored_20240628T19:00_UTC.wav"
    source = console_env.docs["c-agent-only"]["recording_location"].split("/", 1)[1]
    console_env.aws.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": source})
    location = f"{bucket}/{key}"
    doc = dict(
        console_env.docs["c-agent-only"],
        contact_id="c-stored",
        recorded_parties="agent",
        recording_location=location,
        recordings=[location],
        recording_durations={location: 24.0},
    )
    put_contacts(console_env.aws.dynamodb, console_env.settings.contacts_table, [doc])
    console_env.deps.inspector.last_bytes_read = -1  # set by every inspection of a recording
    page = console_env.signed_in("eva").get("/contacts/c-stored").text
    shown = re.search(
        r'id="recorded-parties">(\w+) <span class="meta">\(read from the recording at import', page
    )
    assert shown is not None and shown.group(1) == "agent"
    assert console_env.deps.inspector.last_bytes_read == -1
    assert 'id="audio"' in page


def test_audio_and_screen_stream_with_ranges(console_env: ConsoleEnv) -> None:
    eva = console_env.signed_in("eva")
    wav = console_env.wavs["c-both"]
    whole = eva.get("/contacts/c-both/audio")
    assert whole.status_code == 200 and whole.content == wav
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "audio/wav"
    part = eva.get("/contacts/c-both/audio", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(wav)}"
    assert part.content == wav[1000:2000]
    tail = eva.get("/contacts/c-both/audio", headers={"Range": "bytes=-10"})
    assert tail.content == wav[-10:]
    beyond = eva.get("/contacts/c-both/audio", headers={"Range": f"bytes={len(wav)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(wav)}"
    mp4 = console_env.mp4
    seek = eva.get("/contacts/c-both/screen", headers={"Range": "bytes=200-"})
    assert seek.status_code == 206 and seek.content == mp4[200:]
    assert seek.headers["content-type"] == "video/mp4"
    assert eva.get("/contacts/c-agent-only/screen").status_code == 404
    assert eva.get("/contacts/c-missing/audio").status_code == 404
    plays = [e for e in _audit(console_env) if e.action in ("audio_played", "screen_played")]
    assert {(e.action, e.target) for e in plays} >= {("audio_played", "c-both")}


def test_bulk_screen_recording_and_import(console_env: ConsoleEnv) -> None:
    users = DynamoUserDirectory(console_env.aws.dynamodb, console_env.settings.users_table, cache_seconds=0)
    admin = console_env.signed_in("admin")
    page = admin.get("/users")
    ben = re.search(r"<tr>\s*<td><input[^>]*value=\"ben.okafor\".*?</tr>", page.text, re.S)
    assert ben is not None
    assert "2024-06-30T11:58:02.000Z (PC-0042)" in ben.group(0)  # the desktop's last contact
    assert "<td>2</td>" in ben.group(0)  # commands waiting on the agent's queue
    ana = re.search(r"<tr>\s*<td><input[^>]*value=\"ana.silva\".*?</tr>", page.text, re.S)
    assert ana is not None and "never" in ana.group(0) and "no queue" in ana.group(0)
    csrf = csrf_of(page.text)
    response = admin.post(
        "/users/screen-recording",
        data={"csrf_token": csrf, "action": "enable", "username": ["ana.silva", "ben.okafor"]},
    )
    assert response.status_code == 303
    assert users.get("ana.silva").screen_recording is True
    admin.post(
        "/users/screen-recording", data={"csrf_token": csrf, "action": "disable", "username": "ben.okafor"}
    )
    ben = users.get("ben.okafor")
    assert ben.screen_recording is False and ben.desktop_id == "PC-0042"
    csv = b"username,first_name,last_name,screen_recording\nzoe.park,Zoe,Park,yes\n"
    imported = admin.post(
        "/users/import", data={"csrf_token": csrf}, files={"file": ("agents.csv", csv, "text/csv")}
    )
    assert imported.status_code == 303
    assert users.get("zoe.park").screen_recording is True
    bad = admin.post(
        "/users/import", data={"csrf_token": csrf}, files={"file": ("bad.csv", b"name\nx\n", "text/csv")}
    )
    assert bad.status_code == 422 and "Nothing imported" in bad.text
    search = admin.get("/users", params={"q": "zoe"}).text
    assert "zoe.park" in search and "ana.silva" not in search
    actions = {e.action for e in _audit(console_env)}
    assert {"screen_recording_enabled", "screen_recording_disabled", "users_imported"} <= actions


@pytest.mark.parametrize("user", ["eva", "admin"])
def test_sign_out_ends_the_session(console_env: ConsoleEnv, user: str) -> None:
    client = console_env.signed_in(user)
    home = client.get("/")
    assert home.status_code == 303
    page = client.get(home.headers["location"])
    assert client.post("/logout", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    assert client.get(home.headers["location"]).status_code == 303


def test_sync_now_button(console_env: ConsoleEnv) -> None:
    from botocore.stub import Stubber

    from processor.adapters.connect.user_listing import BotoConnectUsers
    from tests.connect_fixtures import load
    from tests.contract.test_users_sync import INSTANCE, _stub_full_sync

    admin = console_env.signed_in("admin")
    csrf = csrf_of(admin.get("/users").text)
    no_instance = admin.post("/users/sync", data={"csrf_token": csrf})
    assert no_instance.status_code == 409 and "No Amazon Connect instance" in no_instance.text
    arn = f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE}"
    admin.post(
        "/config", data={"csrf_token": csrf, "instance_arn": arn, "join_window_minutes": "30", "version": "0"}
    )
    client = console_env.aws.client("connect")
    console_env.deps.connect_users = lambda: BotoConnectUsers(client)
    with Stubber(client) as stubber:
        _stub_full_sync(stubber)
        response = admin.post("/users/sync", data={"csrf_token": csrf})
        assert response.status_code == 303
        stubber.assert_no_pending_responses()
    page = admin.get(response.headers["location"]).text
    assert "Synced 3 user(s)" in page and "chloé@example.com" in page
    assert "2024-06-30T12:00:00.000Z by admin" in page  # the last sync time, shown
    with Stubber(client) as stubber:
        stubber.add_client_error("list_users", "AccessDeniedException", http_status_code=403)
        failed = admin.post("/users/sync", data={"csrf_token": csrf})
    assert failed.status_code == 502 and "AccessDeniedException" in failed.text
    assert load("list-users-page2")["UserSummaryList"][0]["Username"] in page


def test_contacts_show_and_filter_by_the_centre_s_local_day(bootstrapped, aws) -> None:  # type: ignore[no-untyped-def]
    # QM_TIME_ZONE=America/New_York: a 21:30 call on 2026-03-04 (02:30 UTC the next day) shows
    # as 2026-03-04 21:30:00, is found on 2026-03-04 and not on 2026-03-05.
    from processor.console.app import create_app
    from processor.console.samples import contact_doc, put_contacts
    from processor.console.server import ConsoleServer, build_deps
    from tests.console_support import ConsoleEnv, accounts

    settings = bootstrapped.model_copy(update={"console_port": 0, "time_zone": "America/New_York"})
    doc = contact_doc(
        "c-evening",
        agent="ana.silva",
        first_name="Ana",
        last_name="Silva",
        connected_at=datetime(2026, 3, 5, 2, 30, tzinfo=UTC),
        duration_seconds=60,
        direction="inbound",
        recording_location=None,
        flags=[],
    )
    put_contacts(aws.dynamodb, settings.contacts_table, [doc])
    deps = build_deps(settings, aws, accounts=accounts(), now=lambda: datetime(2026, 3, 6, 12, tzinfo=UTC))
    server = ConsoleServer(create_app(deps), "127.0.0.1", 0).start()
    env = ConsoleEnv(settings, aws, server.url, {}, {}, b"", server, deps)
    try:
        eva = env.signed_in("eva")
        listed = eva.get("/contacts", params={"from": "2026-03-04", "to": "2026-03-04"}).text
        assert "c-evening" in listed
        assert "<td>2026-03-04</td><td>21:30:00</td>" in listed
        assert "c-evening" not in eva.get("/contacts", params={"from": "2026-03-05", "to": "2026-03-05"}).text
        detail = eva.get("/contacts/c-evening").text
        assert "<dt>Date</dt><dd>2026-03-04</dd>" in detail
        assert "<dt>Time (America/New_York)</dt><dd>21:30:00</dd>" in detail
    finally:
        for client in env.clients:
            client.close()
        server.stop()


def test_the_console_s_import_names_the_agent_s_waiting_contacts(console_env: ConsoleEnv) -> None:
    from processor.adapters.dynamodb.contacts import DynamoContactStore
    from processor.app.wiring import build_joiner
    from tests.contract.test_screen_control import ctr

    record, raw = ctr("c-before-zoe", "zoe.new")
    build_joiner(console_env.settings, console_env.aws).on_ctr(record, raw)
    store = DynamoContactStore(console_env.aws.dynamodb, console_env.settings.contacts_table)
    assert store.get("c-before-zoe").doc["first_name"] is None  # type: ignore[union-attr]
    admin = console_env.signed_in("admin")
    csrf = csrf_of(admin.get("/users").text)
    csv = b"username,first_name,last_name,screen_recording\nzoe.new,Zoe,New,no\n"
    imported = admin.post(
        "/users/import", data={"csrf_token": csrf}, files={"file": ("z.csv", csv, "text/csv")}
    )
    assert imported.status_code == 303
    assert "1 contact(s) got their agent" in admin.get(imported.headers["location"]).text
    doc = store.get("c-before-zoe").doc  # type: ignore[union-attr]
    assert (doc["first_name"], doc["last_name"]) == ("Zoe", "New") and "user_unknown" not in doc["flags"]


def test_a_cookie_kept_after_sign_out_opens_nothing(console_env: ConsoleEnv) -> None:
    eva = console_env.signed_in("eva")
    assert eva.get("/contacts").status_code == 200
    captured = dict(eva.cookies)
    page = eva.get("/contacts")
    assert eva.post("/logout", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    thief = console_env.client()
    thief.cookies.update(captured)  # the cookie as it was before sign-out
    assert thief.get("/contacts").status_code == 303
    assert thief.get("/api/contacts").status_code == 401
    assert "sign_out" in {e.action for e in _audit(console_env)}


@pytest.mark.parametrize("change", ["password", "roles"])
def test_a_password_or_role_change_ends_the_sessions_opened_before(
    console_env: ConsoleEnv, change: str
) -> None:
    from dataclasses import replace

    from processor.console.auth import Authenticator, hash_password
    from tests.console_support import ADMIN_ROLES, accounts

    eva = console_env.signed_in("eva")
    assert eva.get("/contacts").status_code == 200

    def changed_one(account):  # type: ignore[no-untyped-def]
        if account.username != "eva":
            return account
        if change == "password":
            return replace(account, password_hash=hash_password("a-new-password-2026"))
        return replace(account, roles=account.roles | ADMIN_ROLES)

    changed = [changed_one(a) for a in accounts()]
    console_env.deps.auth = Authenticator(changed)  # what a restart with the new settings does
    assert eva.get("/contacts").status_code == 303
    assert eva.get("/api/contacts").status_code == 401
