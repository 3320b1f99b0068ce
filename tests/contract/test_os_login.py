"""An agent's OS login, set on the console's Users page (over HTTP) and by the CLI, and read
back by a desktop through the users table's keys-only index, on the embedded emulator."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from processor.adapters.dynamodb.console_audit_log import DynamoAuditLog
from processor.adapters.dynamodb.users_table import OS_LOGIN_INDEX, DynamoUserDirectory
from processor.core.user_directory import QmUser
from processor.desktop.session import DynamoLoginDirectory
from processor.entrypoints.cli import app
from tests.console_support import ConsoleEnv, csrf_of


def _logins(env: ConsoleEnv) -> DynamoLoginDirectory:
    return DynamoLoginDirectory(env.aws.dynamodb, env.settings.users_table)


def test_the_users_page_maps_an_os_login_to_its_acd_id(console_env: ConsoleEnv) -> None:
    admin = console_env.signed_in("admin")
    csrf = csrf_of(admin.get("/users").text)
    done = admin.post(
        "/users/os-login", data={"csrf_token": csrf, "username": "ana.silva", "os_login": "CORP\\ASilva"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/users"
    page = admin.get("/users").text
    assert "OS login saved for ana.silva." in page and 'data-os-login="corp\\asilva"' in page
    assert "corp\\asilva" in admin.get("/users", params={"q": "asilva"}).text
    # The desktop at the PC she logs on to finds her (whatever the case Windows reports).
    assert _logins(console_env).agent_for("Corp\\ASILVA") == "ana.silva"
    assert _logins(console_env).agent_for("corp\\nobody") is None
    assert (
        DynamoUserDirectory(console_env.aws.dynamodb, console_env.settings.users_table)
        .get("ana.silva")
        .os_login
        == "corp\\asilva"
    )  # type: ignore[union-attr]

    # One login, one agent: Ben cannot be given Ana's.
    taken = admin.post(
        "/users/os-login", data={"csrf_token": csrf, "username": "ben.okafor", "os_login": "corp\\asilva"}
    )
    assert taken.status_code == 409 and "already mapped to ana.silva" in taken.text
    assert _logins(console_env).agent_for("corp\\asilva") == "ana.silva"
    bad = admin.post(
        "/users/os-login", data={"csrf_token": csrf, "username": "ben.okafor", "os_login": "a b"}
    )
    assert bad.status_code == 422
    missing = admin.post("/users/os-login", data={"csrf_token": csrf, "username": "nobody", "os_login": "x"})
    assert missing.status_code == 404

    # Blank unmaps: the PC then serves nobody for that login.
    cleared = admin.post(
        "/users/os-login", data={"csrf_token": csrf, "username": "ana.silva", "os_login": " "}
    )
    assert cleared.status_code == 303
    assert _logins(console_env).agent_for("corp\\asilva") is None
    actions = [
        (e.action, e.target)
        for e in DynamoAuditLog(console_env.aws.dynamodb, console_env.settings.audit_table).recent(
            "2024-06-30", 100
        )
    ]
    assert ("os_login_set", "ana.silva") in actions and ("os_login_removed", "ana.silva") in actions
    # The evaluator may not.
    eva = console_env.signed_in("eva")
    csrf = csrf_of(eva.get("/contacts").text)
    refused = eva.post("/users/os-login", data={"csrf_token": csrf, "username": "ana.silva", "os_login": "x"})
    assert refused.status_code == 403


def test_the_index_a_desktop_reads_holds_keys_only(console_env: ConsoleEnv) -> None:
    table = console_env.aws.dynamodb.describe_table(TableName=console_env.settings.users_table)["Table"]
    index = next(g for g in table["GlobalSecondaryIndexes"] if g["IndexName"] == OS_LOGIN_INDEX)
    assert index["Projection"]["ProjectionType"] == "KEYS_ONLY"


def test_users_import_and_the_cli_set_the_os_login(bootstrapped, aws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "users.csv"
    path.write_text(
        "username,first_name,last_name,screen_recording,os_login\n"
        "ana.silva,Ana,Silva,yes,CORP\\ASilva\n"
        "ben.okafor,Ben,Okafor,yes,\n"
    )
    runner = CliRunner()
    imported = runner.invoke(app, ["users", "import", str(path)])
    assert imported.exit_code == 0, imported.output
    logins = DynamoLoginDirectory(aws.dynamodb, bootstrapped.users_table)
    assert logins.agent_for("corp\\asilva") == "ana.silva"
    assert logins.agent_for("") is None

    assert runner.invoke(app, ["users", "os-login", "ben.okafor", "bokafor"]).exit_code == 0
    assert logins.agent_for("BOkafor") == "ben.okafor"
    taken = runner.invoke(app, ["users", "os-login", "ben.okafor", "corp\\asilva"])
    assert taken.exit_code == 2 and "already mapped" in taken.output
    assert runner.invoke(app, ["users", "os-login", "nobody", "x"]).exit_code == 3
    listed = runner.invoke(app, ["users", "list"])
    assert "os_login=bokafor" in listed.output
    # An import that would give a login taken by another user is refused.
    path.write_text("username,os_login\ncarla.diaz,bokafor\n")
    refused = runner.invoke(app, ["users", "import", str(path)])
    assert refused.exit_code == 2 and "already mapped to ben.okafor" in refused.output
    assert runner.invoke(app, ["users", "os-login", "ben.okafor"]).exit_code == 0
    assert logins.agent_for("bokafor") is None


def test_bootstrap_adds_the_os_login_index_to_an_older_users_table(settings, aws) -> None:  # type: ignore[no-untyped-def]
    from processor.ops.bootstrap import bootstrap

    aws.dynamodb.create_table(  # as an earlier version created it
        TableName=settings.users_table,
        KeySchema=[{"AttributeName": "username", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "username", "AttributeType": "S"},
            {"AttributeName": "agent_arn", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "agent_arn-index",
                "KeySchema": [{"AttributeName": "agent_arn", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    bootstrap(settings, aws)
    table = aws.dynamodb.describe_table(TableName=settings.users_table)["Table"]
    assert {g["IndexName"] for g in table["GlobalSecondaryIndexes"]} == {"agent_arn-index", OS_LOGIN_INDEX}
    DynamoUserDirectory(aws.dynamodb, settings.users_table).put(QmUser("ana", "Ana", "S", os_login="ana.os"))
    assert DynamoLoginDirectory(aws.dynamodb, settings.users_table).agent_for("ana.os") == "ana"
    bootstrap(settings, aws)  # again: nothing to add
