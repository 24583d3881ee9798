"""One refresher per user across processes and hosts, on every store engine."""

from __future__ import annotations

import threading
import time

from personalize.refresh import RefreshConfig


def test_refresh_skips_or_waits_while_another_host_refreshes(open_personalizer):
    p = open_personalizer()
    other = open_personalizer()  # another process or host on the same store
    p.add_messages("ana", [{"role": "user", "content": "I love hiking and I am vegetarian."}], session="s")
    with other.store.user_lock("ana", "refresh", wait=False) as held:
        assert held
        p.refresh_config = RefreshConfig(when_busy="skip")
        report = p.refresh("ana")
        assert report.skipped_busy and report.facts_added == 0
        assert p.persona("ana") == []
        # Another user is not blocked.
        p.add_messages("ben", [{"role": "user", "content": "I love sailing."}], session="s")
        assert not p.refresh("ben").skipped_busy

        p.refresh_config = RefreshConfig(when_busy="wait")
        done: list = []
        waiter = threading.Thread(target=lambda: done.append(p.refresh("ana")))
        waiter.start()
        time.sleep(0.5)
        assert not done  # still waiting for the other host
    waiter.join(60)
    assert done and not done[0].skipped_busy and done[0].facts_added >= 1
