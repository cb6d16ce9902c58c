"""A server killed with SIGKILL under load: on restart the history opens and holds every answered inspection."""

from __future__ import annotations

import signal
import threading

from conftest import Server, images_of


def test_kill_9_under_load_loses_no_answered_inspection(served_project, tmp_path):
    state = tmp_path / "state"
    server = Server(served_project, state)
    images = images_of(served_project)
    answered: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        n = k
        while not stop.is_set():
            try:
                status, body = server.inspect(images[n % len(images)])
            except OSError:  # the server died mid-request: that one was never answered
                return
            if status == 200:
                answered.append(body["id"])
            n += 1

    clients = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for c in clients:
        c.start()
    while len(answered) < 12:
        assert server.process.poll() is None
        threading.Event().wait(0.05)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)
    stop.set()
    for c in clients:
        c.join(timeout=60)
    (state / "files" / ("0" * 32)).mkdir()  # as if killed after an inspection's files and before its row
    restarted = Server(served_project, state)
    try:
        status, page = restarted.json("GET", "/v1/inspections?limit=500")
        assert status == 200
        kept = {row["id"] for row in page["inspections"]}
        assert set(answered) <= kept, f"{len(set(answered) - kept)} answered inspections lost"
        for ident in answered[-3:]:
            assert restarted.call("GET", f"/v1/inspections/{ident}/heatmap")[0] == 200
        assert sorted(p.name for p in (state / "files").iterdir()) == sorted(kept)  # unfinished folders were swept
        assert restarted.inspect(images[0])[0] == 200
    finally:
        restarted.stop()
