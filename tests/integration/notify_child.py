"""A delivering process for the crash tests: records N incidents (opened, then resolved for every other
one) and delivers them to a webhook until killed. Re-running it re-submits the same notices."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rules.notify import Notifier, sample_event
from rules.notify.settings import WebhookSettings


def events(n: int) -> list[dict[str, object]]:
    t0 = datetime(2026, 7, 1, tzinfo=UTC)
    out: list[dict[str, object]] = []
    for i in range(n):
        opened = sample_event(site=f"site-{i:03d}", at=t0 + timedelta(minutes=i))
        opened["incident"]["id"] = f"episode-{i:03d}"
        out.append(opened)
        if i % 2 == 0:
            end = (t0 + timedelta(hours=2, minutes=i)).isoformat()
            incident = {**opened["incident"], "state": "resolved", "ended_at": end}
            out.append({**opened, "change": "resolved", "at": end, "incident": incident})
    return out


def main() -> None:
    state, url, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    hook = WebhookSettings(name="hook", type="webhook", url=url, group_wait="0s", group_interval="0s",  # type: ignore[arg-type]
                           timeout="2s", retry={"backoff_base": "50ms", "backoff_cap": "200ms"})  # type: ignore[arg-type]
    notifier = Notifier([hook], state, poll=0.02).start()
    for e in events(n):
        notifier.submit(e)
    print("submitted", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
