from __future__ import annotations

from dataclasses import replace

import pytest

from processor.adapters.dynamodb.runtime_config import (
    AcdConfiguration,
    ConfigConflict,
    RuntimeConfigReader,
    RuntimeConfigStore,
)


def test_defaults_save_conflict_and_reader(bootstrapped, aws) -> None:
    store = RuntimeConfigStore(aws.dynamodb, bootstrapped.config_table)
    loaded = store.load()
    assert loaded == AcdConfiguration()
    saved = store.save(
        replace(loaded, rte_enabled=False), updated_by="admin", updated_at="2026-01-01T00:00:00.000Z"
    )
    assert saved.version == 1
    with pytest.raises(ConfigConflict):
        store.save(replace(loaded, join_window_minutes=5), updated_by="other", updated_at="x")
    with pytest.raises(ValueError, match="join window"):
        store.save(replace(saved, join_window_minutes=0), updated_by="admin", updated_at="x")
    reader = RuntimeConfigReader(store, ttl_seconds=0)
    assert reader.get().rte_enabled is False
    assert reader.get().updated_by == "admin"
