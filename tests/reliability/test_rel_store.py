"""Resource faults around the run store and the output folder: a bad, read-only, full or corrupted
store, a report written to a full disk, racing first opens and held locks. Each gives one clear
error, and what was stored before is intact."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuneoff.errors import TuneoffError
from tuneoff.locks import hold
from tuneoff.store import MIGRATIONS, Store

from .helpers import TALLY

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def filled_store(path: Path) -> Store:
    store = Store(path)
    exp = store.add_experiment("x")
    run = store.start_run("eval", experiment_id=exp)
    store.add_predictions(run, [{"item": i, "example_id": str(i), "input": "a", "target": "b", "output": "b"}
                                for i in range(20)])
    return store


def counts(path: Path) -> tuple:
    db = sqlite3.connect(path)
    try:
        return (db.execute("SELECT count(*) FROM experiments").fetchone()[0],
                db.execute("SELECT count(*) FROM predictions").fetchone()[0],
                db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def test_store_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    TALLY["faults"] += 1
    with pytest.raises(TuneoffError, match="folder"):
        Store(tmp_path / "file" / "child.sqlite")


def test_store_that_is_a_directory_is_a_clear_error(tmp_path):
    TALLY["faults"] += 1
    with pytest.raises(TuneoffError, match="cannot open run store"):
        Store(tmp_path)


@pytest.mark.parametrize("damage", ["junk", "truncated", "scribbled"])
def test_a_damaged_store_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "runs.sqlite"
    filled_store(path).close()
    data = bytearray(path.read_bytes())
    if damage == "junk":
        data = bytearray(os.urandom(len(data)))
    elif damage == "truncated":
        data = data[:len(data) // 3]
    else:
        data[4096:8192] = os.urandom(4096)  # the second page onwards: the tables' own pages
    path.write_bytes(bytes(data))
    TALLY["faults"] += 1
    with pytest.raises(TuneoffError) as info:
        store = Store(path)
        for run in store.runs():
            store.predictions(run["id"])
        store.add_experiment("y")
        raise AssertionError("a damaged store read and wrote as if whole")
    assert str(path) in str(info.value)


def test_a_full_store_refuses_the_write_and_keeps_what_it_had(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = filled_store(path)
    before = counts(path)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full from here on
    TALLY["faults"] += 1
    with pytest.raises(TuneoffError, match="full") as info:
        store.add_predictions(store.runs()[0]["id"], [
            {"item": 100 + i, "example_id": str(i), "input": "x" * 5000, "target": "b", "output": "b"}
            for i in range(50)])
    assert "disk space" in info.value.hint
    store.close()
    assert counts(path) == before  # the failed chunk left nothing half-written


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder mounted read-only (root ignores file modes; a read-only bind mount binds root too)."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here (not root, or no mount permission)")
    try:
        yield src, ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_a_read_only_store_is_a_clear_error(read_only_dir):
    src, ro = read_only_dir
    filled_store(src / "runs.sqlite").close()
    before = counts(src / "runs.sqlite")
    assert subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode == 0
    TALLY["faults"] += 2
    with pytest.raises(TuneoffError) as info:
        store = Store(ro / "runs.sqlite")
        store.add_experiment("y")
    assert "read-only" in (info.value.hint or "") or "readonly" in str(info.value) or "unable to open" in str(info.value)
    proc = subprocess.run([sys.executable, "-c", "from tuneoff.cli import main; main()", "runs", "--store",
                           str(ro / "runs.sqlite")], env=ENV, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0 or proc.stderr.startswith("error:"), proc.stderr
    with hold(ro / "locks" / "x"):  # no lock can be made where nothing can be written: none is needed
        pass
    assert counts(src / "runs.sqlite") == before


def test_a_report_on_a_full_disk_keeps_the_previous_report(tmp_path, monkeypatch):
    from test_compare import arm

    from tuneoff.compare import build_comparison
    from tuneoff.config.prices import Constraints, PriceTable
    from tuneoff.report import write_report

    c = build_comparison("x", "t", "m", [arm("few", "prompt", [1, 0] * 20), arm("lora", "finetune", [1] * 40)],
                         PriceTable(), Constraints(monthly_requests=1000))
    paths = write_report(c, PriceTable(), tmp_path)
    old = {k: p.read_text() for k, p in paths.items()}

    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.endswith(".tmp"):
            real(self, "partial", encoding="utf-8")  # some bytes got out before the disk filled
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    TALLY["faults"] += 1
    with pytest.raises(TuneoffError, match="No space left"):
        write_report(c, PriceTable(), tmp_path)
    monkeypatch.undo()
    assert {k: p.read_text() for k, p in paths.items()} == old
    assert not list(tmp_path.glob(".*.tmp"))


OPEN = "import sys, time; t = float(sys.argv[2]); time.sleep(max(0, t - time.time())); " \
       "from tuneoff.store import Store; Store(sys.argv[1]).close()"


def test_eight_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path):
    """Each used to read user_version 0 and create the tables: 'table experiments already exists'."""
    for attempt in range(2):
        path = tmp_path / f"fresh{attempt}.sqlite"
        start = time.time() + 1.5  # all import first, then open within a few milliseconds
        procs = [subprocess.Popen([sys.executable, "-c", OPEN, str(path), str(start)], env=ENV,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        TALLY["faults"] += 8
        assert all(p.returncode == 0 for p in procs), "\n".join(errors)
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


HOLD = "import sys, time; from pathlib import Path; from tuneoff.locks import hold\n" \
       "with hold(Path(sys.argv[1]), 'busy'):\n    print('held', flush=True); time.sleep(60)"


def test_a_held_lock_is_refused_naming_its_holder_and_freed_by_kill_9(tmp_path):
    lock = tmp_path / "out" / ".run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(TuneoffError, match=f"pid {holder.pid}"):
        with hold(lock, "busy"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    TALLY["faults"] += 1
    with hold(lock, "busy"):  # the kernel dropped the dead process's lock: no stale lock file blocks
        pass
