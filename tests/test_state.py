"""StateStore: outbox order, atomic batches (also under SIGKILL), threads, persistence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pipeline.frames.keys import InvalidCameraId
from pipeline.state.store import OutboxMessage, StateError, StateStore


def msg(i: int, topic: str = "citywatch/alerts/fire/cam-1") -> OutboxMessage:
    return OutboxMessage(topic, f'{{"n":{i}}}'.encode())


def test_outbox_keeps_order_and_deletes(tmp_path):
    store = StateStore(tmp_path / "state.db")
    store.commit_batch("cam-1", "cam-1/a.jpg", [msg(0), msg(1)], None)
    store.commit_batch("cam-2", "cam-2/a.jpg", [msg(2, "citywatch/alerts/flood/cam-2")], None)
    store.commit_batch("cam-1", "cam-1/b.jpg", [msg(3)], None)
    rows = store.pending(10)
    assert [r.payload for r in rows] == [f'{{"n":{i}}}'.encode() for i in range(4)]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert rows[2].topic == "citywatch/alerts/flood/cam-2" and rows[0].qos == 1 and rows[0].retain is False
    assert [r.id for r in store.pending(2)] == [rows[0].id, rows[1].id]
    assert [r.id for r in store.pending(10, after_id=rows[1].id)] == [rows[2].id, rows[3].id]
    assert store.delete([rows[0].id, rows[2].id, 999999]) == 2
    assert [r.id for r in store.pending(10)] == [rows[1].id, rows[3].id]
    assert store.outbox_size() == 2
    assert store.counters() == {"alerts_enqueued": 4, "alerts_delivered": 2}


def test_checkpoint_and_tracker_state_persist(tmp_path):
    path = tmp_path / "sub" / "state.db"
    with StateStore(path) as store:
        assert store.checkpoint("cam-1") is None and store.tracker_state("cam-1") is None
        store.commit_batch("cam-1", "cam-1/k1.jpg", [], {"fire": {"hits": [1, 0, 1]}})
        store.commit_batch("cam-1", None, [msg(1)], None)  # None leaves both as they are
    with StateStore(path) as store:
        assert store.checkpoint("cam-1") == "cam-1/k1.jpg"
        assert store.tracker_state("cam-1") == {"fire": {"hits": [1, 0, 1]}}
        assert store.outbox_size() == 1
        store.commit_batch("cam-1", "cam-1/k2.jpg", [], {"fire": None})
        assert store.checkpoints() == {"cam-1": "cam-1/k2.jpg"}
        assert store.tracker_state("cam-1") == {"fire": None}
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_input_is_refused(tmp_path):
    store = StateStore(tmp_path / "state.db")
    with pytest.raises(InvalidCameraId):
        store.commit_batch("cam/+", "x", [], None)
    with pytest.raises(ValueError, match="wildcard"):
        OutboxMessage("citywatch/alerts/#", b"{}")
    with pytest.raises(TypeError, match="bytes"):
        OutboxMessage("citywatch/alerts/fire/c", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="OutboxMessage"):
        store.commit_batch("cam-1", "k", [("t", b"p")], None)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="limit"):
        store.pending(0)
    assert store.outbox_size() == 0 and store.checkpoint("cam-1") is None
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StateError, match="dir.db"):
        StateStore(tmp_path / "dir.db")


def test_failure_inside_transaction_rolls_back_everything(tmp_path):
    store = StateStore(tmp_path / "state.db")
    store.commit_batch("cam-1", "k0", [msg(0)], {"v": 0})
    store._db.execute("CREATE TRIGGER boom BEFORE INSERT ON tracker_state "
                      "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    store._db.execute("DELETE FROM tracker_state")
    with pytest.raises(Exception, match="disk says no"):
        store.commit_batch("cam-1", "k1", [msg(1), msg(2)], {"v": 1})
    assert store.checkpoint("cam-1") == "k0" and store.outbox_size() == 1


def test_dead_letter_keeps_refused_message(tmp_path):
    store = StateStore(tmp_path / "state.db")
    store.commit_batch("cam-1", "k", [msg(0), msg(1)], None)
    first = store.pending(1)[0]
    store.move_to_dead_letter(first.id, "Not authorized (135)")
    assert store.outbox_size() == 1
    assert store.dead_letters() == [(first.id, first.topic, "Not authorized (135)")]


def test_threads_share_one_store(tmp_path):
    store = StateStore(tmp_path / "state.db")
    errors: list[BaseException] = []

    def writer(cam: str) -> None:
        try:
            for i in range(50):
                store.commit_batch(cam, f"{cam}/{i:03d}", [msg(i, f"citywatch/alerts/fire/{cam}")], {"i": i})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def deleter() -> None:
        try:
            for _ in range(100):
                store.delete([r.id for r in store.pending(5)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"cam-{n}",)) for n in range(4)]
    threads.append(threading.Thread(target=deleter))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    counters = store.counters()
    assert counters["alerts_enqueued"] == 200
    assert counters["alerts_delivered"] + store.outbox_size() == 200
    assert store.checkpoints() == {f"cam-{n}": f"cam-{n}/049" for n in range(4)}


_WRITER = textwrap.dedent("""
    import sys
    from pipeline.state.store import OutboxMessage, StateStore
    store = StateStore(sys.argv[1])
    start = int(sys.argv[2])
    print("ready", flush=True)
    for b in range(start, start + 100000):
        msgs = [OutboxMessage("citywatch/alerts/fire/cam-1", f"{b}-{j}".encode()) for j in range(5)]
        store.commit_batch("cam-1", f"{b:08d}", msgs, {"batch": b})
""")


def test_sigkill_mid_commit_leaves_all_or_nothing(tmp_path):
    """kill -9 a process committing batches of 5 at random moments: checkpoint, tracker state
    and outbox always agree (every batch up to the checkpoint complete, nothing beyond it)."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    db = tmp_path / "state.db"
    next_batch = 0
    for delay in (0.15, 0.3, 0.45):
        proc = subprocess.Popen([sys.executable, str(script), str(db), str(next_batch)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with StateStore(db) as store:
            last = int(store.checkpoint("cam-1"))
            assert last >= next_batch, "the writer committed nothing"
            assert store.tracker_state("cam-1") == {"batch": last}
            payloads = [r.payload.decode() for r in store.pending(10**7)]
            assert payloads == [f"{b}-{j}" for b in range(last + 1) for j in range(5)]
        next_batch = last + 1


def test_commit_latency_is_small(tmp_path):
    store = StateStore(tmp_path / "state.db")
    t0 = time.perf_counter()
    for i in range(50):
        store.commit_batch("cam-1", f"k{i}", [msg(i), msg(i + 1)], {"i": i})
    per_commit_ms = (time.perf_counter() - t0) / 50 * 1000
    print(f"commit_batch with synchronous=FULL: {per_commit_ms:.2f} ms")
    assert per_commit_ms < 250, "an fsync per batch should cost milliseconds, not a quarter second"
