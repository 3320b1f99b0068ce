"""Amazon Connect users -> QM users (the seed: "When Calabrio ONE syncs with Amazon Connect,
it imports and syncs agents as Calabrio ONE users who have Amazon Connect user profiles").

Parses the responses of ``ListUsers`` (``UserSummaryList``: Id, Arn, Username) and
``DescribeUser`` (``User``: Id, Arn, Username, IdentityInfo.FirstName/LastName, ...) as the
Amazon Connect API returns them. Only what QM needs is kept: the username (the contact's
ACD ID), first and last name, the user's ARN (agent events name agents by ARN) and id.
A sync never decides screen recording or the desktop: QM administrators set those.
Pure: the caller does the API calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processor.platform.exceptions import InvalidInput

#: Connect's own limit on usernames (``AgentUsername``: 1..100 characters).
MAX_USERNAME = 100


@dataclass(frozen=True, slots=True)
class ConnectUserSummary:
    user_id: str
    arn: str | None
    username: str


@dataclass(frozen=True, slots=True)
class ConnectUser:
    user_id: str
    arn: str | None
    username: str
    first_name: str | None
    last_name: str | None


@dataclass
class SyncOutcome:
    """What one sync did; ``problems`` name users that could not be read (and why)."""

    synced_at: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    #: QM users synced earlier whose Connect user no longer exists (kept, marked).
    gone: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Users whose names changed (among ``updated``): their contacts get the new names.
    renamed: list[str] = field(default_factory=list)

    @property
    def named(self) -> list[str]:
        """The users whose contacts may need names: new ones and renamed ones."""
        return self.created + self.renamed

    @property
    def total(self) -> int:
        return len(self.created) + len(self.updated)


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped or None


def parse_user_summaries(response: Mapping[str, Any]) -> list[ConnectUserSummary]:
    """The users of one ``ListUsers`` page. Entries without an id or username are skipped
    (the API never sends them; a partial response must not create nameless users)."""
    entries = response.get("UserSummaryList")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidInput("schema", "ListUsers: UserSummaryList is not a list")
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        user_id, username = _text(entry.get("Id")), _text(entry.get("Username"))
        if user_id and username and len(username) <= MAX_USERNAME:
            out.append(ConnectUserSummary(user_id, _text(entry.get("Arn")), username))
    return out


def parse_described_user(response: Mapping[str, Any]) -> ConnectUser:
    """The user of a ``DescribeUser`` response. Raises :class:`InvalidInput` without one."""
    user = response.get("User")
    if not isinstance(user, Mapping):
        raise InvalidInput("schema", "DescribeUser: no User in the response")
    user_id, username = _text(user.get("Id")), _text(user.get("Username"))
    if not user_id or not username:
        raise InvalidInput("schema", "DescribeUser: User has no Id or Username")
    identity = user.get("IdentityInfo")
    identity = identity if isinstance(identity, Mapping) else {}
    return ConnectUser(
        user_id=user_id,
        arn=_text(user.get("Arn")),
        username=username,
        first_name=_text(identity.get("FirstName")),
        last_name=_text(identity.get("LastName")),
    )


def gone_users(previously_synced: Iterable[str], seen: Iterable[str]) -> list[str]:
    """QM users that came from an earlier sync and are no longer in Connect."""
    current = set(seen)
    return sorted(u for u in previously_synced if u not in current)
