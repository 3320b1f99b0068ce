"""The ACD Configuration form: parse and validate what a person typed. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from processor.adapters.dynamodb.runtime_config import AcdConfiguration

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ARN = re.compile(r"^arn:aws[a-z-]*:connect:([a-z0-9-]+):\d{12}:instance/[0-9a-fA-F-]{36}$")


def whole_number(text: str) -> int | None:
    """A non-negative integer written in ASCII digits; None otherwise ("²".isdigit() is true,
    and int("²") raises)."""
    stripped = text.strip()
    return int(stripped) if stripped.isascii() and stripped.isdigit() else None


EDITABLE = ("instance_arn", "region", "join_window_minutes", "rte_enabled", "include_acw")


def parse_acd_form(
    form: Mapping[str, str], current: AcdConfiguration
) -> tuple[AcdConfiguration, dict[str, str]]:
    """The configuration the form asks for (on top of ``current``) and a problem per field."""
    problems: dict[str, str] = {}
    arn = (form.get("instance_arn") or "").strip() or None
    region = (form.get("region") or "").strip() or None
    if arn is not None:
        match = _ARN.match(arn)
        if not match:
            problems["instance_arn"] = (
                "an instance ARN looks like arn:aws:connect:us-east-1:123456789012:instance/<instance id>"
            )
        elif region is None:
            region = match.group(1)
        elif match.group(1) != region:
            problems["region"] = f"the instance ARN is in {match.group(1)}, not {region}"
    if region is not None and not _REGION.match(region) and "region" not in problems:
        problems["region"] = "a region looks like us-east-1"
    raw_window = (form.get("join_window_minutes") or "").strip()
    window = current.join_window_minutes
    if whole_number(raw_window) is None:
        problems["join_window_minutes"] = "a whole number of minutes"
    else:
        window = int(raw_window)
        if not 1 <= window <= 24 * 60:
            problems["join_window_minutes"] = "between 1 and 1440 minutes"
    version_text = (form.get("version") or "").strip()
    parsed_version = whole_number(version_text)
    version = parsed_version if parsed_version is not None else current.version
    wanted = replace(
        current,
        instance_arn=arn,
        region=region,
        join_window_minutes=window,
        # An unticked check box is absent from the form.
        rte_enabled=form.get("rte_enabled") == "on",
        include_acw=form.get("include_acw") == "on",
        version=version,
    )
    return wanted, problems


def changes(before: AcdConfiguration, after: AcdConfiguration) -> dict[str, list[object]]:
    """``{field: [old, new]}`` for every editable field that differs (the audit detail)."""
    return {
        name: [getattr(before, name), getattr(after, name)]
        for name in EDITABLE
        if getattr(before, name) != getattr(after, name)
    }
