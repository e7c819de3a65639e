"""Pure helpers: status JSON conversion, Last-Event-ID parsing, SSE formatting, settings."""

from __future__ import annotations

import pytest

from app.progress import job_status_from_hash
from app.settings import Settings, SettingsError, load_settings
from app.sse import BadLastEventId, format_event, parse_last_event_id


def test_status_from_hash_types() -> None:
    s = job_status_from_hash({b"id": b"a" * 32, b"status": b"running", b"steps": b"3", b"step_seconds": b"0.5",
                              b"steps_done": b"1", b"created_at": b"1.5"})
    assert s["steps"] == 3 and s["step_seconds"] == 0.5 and s["steps_done"] == 1 and s["created_at"] == 1.5
    assert s["finished_at"] is None and s["result"] is None


@pytest.mark.parametrize(("header", "query", "expected"), [
    (None, None, 0), ("", None, 0), ("7", None, 7), (None, "3", 3), ("5", "9", 5), (" 4 ", None, 4),
])
def test_parse_last_event_id(header: str | None, query: str | None, expected: int) -> None:
    assert parse_last_event_id(header, query) == expected


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "0-3", "1e3", "9999999999", "1 2"])
def test_parse_last_event_id_rejects(bad: str) -> None:
    with pytest.raises(BadLastEventId):
        parse_last_event_id(bad, None)
    with pytest.raises(BadLastEventId):
        parse_last_event_id(None, bad)


def test_format_event_multiline_data() -> None:
    assert format_event(3, "progress", "a\nb") == "id: 3\nevent: progress\ndata: a\ndata: b\n\n"


def test_settings_defaults_and_errors() -> None:
    assert load_settings({}) == Settings()
    s = load_settings({"ZACHOT_REDIS_URL": "redis://h:1/2", "ZACHOT_BROKER_HEARTBEAT_TIMEOUT_MS": "3000"})
    assert s.redis_url == "redis://h:1/2" and s.heartbeat_timeout_ms == 3000
    for name, value in [("ZACHOT_JOB_TTL_SECONDS", "x"), ("ZACHOT_BROKER_MAINTENANCE_CHANCE", "2000000"),
                        ("ZACHOT_SSE_KEEPALIVE_SECONDS", "nan")]:
        with pytest.raises(SettingsError, match=name):
            load_settings({name: value})
