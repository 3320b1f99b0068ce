"""QM users: the directory that gives a contact its agent's first and last name.

A QM user's ACD ID is the agent's Amazon Connect username. Users come from a file
(JSON array or CSV with the headers ``username,first_name,last_name,screen_recording``,
optionally ``os_login``)
or from Amazon Connect (``ListUsers`` + ``DescribeUser``). Pure parsing only.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import orjson

from processor.core.schemas import SchemaViolation, validate
from processor.platform.exceptions import InvalidInput

_TRUE = frozenset({"1", "true", "yes", "y", "on", "enabled"})
_FALSE = frozenset({"0", "false", "no", "n", "off", "disabled", ""})


@dataclass(frozen=True, slots=True)
class QmUser:
    username: str
    first_name: str | None
    last_name: str | None
    screen_recording: bool = False
    agent_arn: str | None = None
    desktop_id: str | None = None
    #: The agent's operating-system login (normalised, see ``normalise_os_login``): the
    #: desktop of the PC she logs on to serves her queue.
    os_login: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "screen_recording": self.screen_recording,
            "agent_arn": self.agent_arn,
            "desktop_id": self.desktop_id,
            "os_login": self.os_login,
        }


def normalise_os_login(value: str | None) -> str | None:
    """The form an OS login is stored and looked up in: trimmed and case-folded (Windows
    logins are case-insensitive; ``DOMAIN\\user`` keeps its domain), None when blank."""
    if value is None:
        return None
    text = value.strip().casefold()
    if not text:
        return None
    if len(text) > 256 or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise InvalidInput("schema", "an OS login has no spaces or control characters (at most 256)")
    return text


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInput("schema", f"{where}.screen_recording: not a yes/no value: {value!r}")


def user_from_object(obj: Any, where: str = "user") -> QmUser:
    try:
        validate("qm-user", obj)
    except SchemaViolation as exc:
        raise InvalidInput("schema", f"{where}: {exc}") from None
    username = obj["username"].strip()
    return QmUser(
        username=username,
        first_name=(obj.get("first_name") or None),
        last_name=(obj.get("last_name") or None),
        screen_recording=_bool(obj.get("screen_recording"), where),
        agent_arn=obj.get("agent_arn") or None,
        desktop_id=obj.get("desktop_id") or None,
        os_login=normalise_os_login(obj.get("os_login")),
    )


def parse_users(data: bytes) -> list[QmUser]:
    """Users from a JSON array or a CSV file (detected by the first non-blank character)."""
    text = data.decode("utf-8-sig", errors="strict")
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            loaded = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("bad_json", f"users file is not valid JSON ({exc})") from None
        if isinstance(loaded, dict):
            loaded = [loaded]
        if not isinstance(loaded, list):
            raise InvalidInput("schema", "users file must hold a JSON array of users")
        users = [user_from_object(item, f"user {i + 1}") for i, item in enumerate(loaded)]
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "username" not in reader.fieldnames:
            raise InvalidInput("schema", "users CSV needs a header row with at least 'username'")
        users = []
        for i, row in enumerate(reader):
            obj = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
            for key in ("first_name", "last_name", "agent_arn", "desktop_id", "os_login"):
                if obj.get(key) == "":
                    obj[key] = None
            users.append(user_from_object(obj, f"CSV row {i + 2}"))
    _check_unique(users)
    return users


def _check_unique(users: list[QmUser]) -> None:
    """One user per username, one user per OS login."""
    seen: set[str] = set()
    logins: set[str] = set()
    for user in users:
        if user.username in seen:
            raise InvalidInput("schema", f"username {user.username!r} appears twice")
        seen.add(user.username)
        if user.os_login is not None:
            if user.os_login in logins:
                raise InvalidInput("schema", f"OS login of {user.username!r} is given to another user too")
            logins.add(user.os_login)
