"""Low findings of the security review, tried through the console's HTTP interface."""

from __future__ import annotations

from processor.adapters.dynamodb.console_audit_log import DynamoAuditLog
from tests.console_support import ConsoleEnv, csrf_of


def _plays(env: ConsoleEnv, contact_id: str) -> int:
    entries = DynamoAuditLog(env.aws.dynamodb, env.settings.audit_table).recent("2024-06-30", 200)
    return sum(1 for e in entries if e.action == "audio_played" and e.target == contact_id)


def test_superscript_digits_are_not_numbers(console_env: ConsoleEnv) -> None:
    admin = console_env.signed_in("admin")
    assert admin.get("/users", params={"page": "²"}).status_code == 200
    csrf = csrf_of(admin.get("/config").text)
    answer = admin.post(
        "/config", data={"csrf_token": csrf, "join_window_minutes": "²", "version": "²", "instance_arn": ""}
    )
    assert answer.status_code == 422 and "whole number" in answer.text


def test_a_link_cannot_make_the_users_page_say_anything(console_env: ConsoleEnv) -> None:
    admin = console_env.signed_in("admin")
    page = admin.get("/users", params={"done": "Your password expired: call +1 555 0100"}).text
    assert "Your password expired" not in page
    csrf = csrf_of(page)
    done = admin.post(
        "/users/screen-recording", data={"csrf_token": csrf, "action": "enable", "username": "ana.silva"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/users"
    assert "Screen recording enabled for 1 user(s)." in admin.get("/users").text
    assert "Screen recording enabled" not in admin.get("/users").text  # shown once


def test_every_playback_is_audited_once_per_session_whatever_the_range(console_env: ConsoleEnv) -> None:
    eva = console_env.signed_in("eva")
    before = _plays(console_env, "c-both")
    first = eva.get("/contacts/c-both/audio", headers={"Range": "bytes=0-999"})
    rest = eva.get("/contacts/c-both/audio", headers={"Range": "bytes=1000-"})
    assert first.status_code == rest.status_code == 206
    assert first.content + rest.content == console_env.wavs["c-both"]
    assert _plays(console_env, "c-both") == before + 1
    eva.get("/contacts/c-both/audio")
    assert _plays(console_env, "c-both") == before + 1  # the same session: once
    console_env.signed_in("eva").get("/contacts/c-both/audio", headers={"Range": "bytes=500-600"})
    assert _plays(console_env, "c-both") == before + 2  # another session


def test_sign_in_reads_only_a_small_url_encoded_form(console_env: ConsoleEnv) -> None:
    client = console_env.client()
    csrf = csrf_of(client.get("/login").text)
    big = client.post(
        "/login",
        data={"csrf_token": csrf, "username": "admin"},
        files={"file": ("x.bin", b"\0" * (8 << 20), "application/octet-stream")},
    )
    assert big.status_code == 415
    padded = client.post("/login", data={"csrf_token": csrf, "username": "admin", "password": "x" * 10_000})
    assert padded.status_code == 413


def test_failed_sign_ins_back_off_instead_of_locking_the_account(console_env: ConsoleEnv) -> None:
    client = console_env.client()
    csrf = csrf_of(client.get("/login").text)
    answers = [
        client.post("/login", data={"csrf_token": csrf, "username": "admin", "password": "wrong"}).status_code
        for _ in range(4)
    ]
    assert answers[:3] == [401, 401, 401]
    assert answers[3] == 429
    throttled = client.post("/login", data={"csrf_token": csrf, "username": "admin", "password": "wrong"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
