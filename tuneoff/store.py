"""The SQLite run store: every model call, prediction, metric and training event, as it happens.

Tables, plots and reports are queries over this file. Schema changes are an ordered list of
migration functions; `PRAGMA user_version` records how many have run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import TuneoffError
from .home import default_store_path


def _statements(db: sqlite3.Connection, script: str) -> None:
    # not executescript(): it COMMITs first, which would break the migration's transaction
    for statement in re.sub(r"--[^\n]*", "", script).split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    _statements(db, """
    CREATE TABLE experiments (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, spec_json TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY, experiment_id INTEGER REFERENCES experiments(id),
        kind TEXT NOT NULL,            -- ask | eval | finetune | ...
        arm TEXT NOT NULL DEFAULT '', task TEXT NOT NULL DEFAULT '', split TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '', spec_json TEXT NOT NULL DEFAULT '{}',
        fingerprint TEXT NOT NULL DEFAULT '',   -- hash of everything that defines the run: same -> resume
        status TEXT NOT NULL DEFAULT 'running', -- running | done | failed
        started_at REAL NOT NULL, finished_at REAL, summary_json TEXT NOT NULL DEFAULT '{}');
    CREATE INDEX runs_fingerprint ON runs(fingerprint);
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),
        cache_key TEXT NOT NULL,       -- model + params + prompt: same key -> same answer (greedy)
        model TEXT NOT NULL, prompt_hash TEXT NOT NULL, prompt TEXT NOT NULL, params_json TEXT NOT NULL,
        output TEXT NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
        latency_s REAL NOT NULL, batch_size INTEGER NOT NULL DEFAULT 1, finish_reason TEXT,
        created_at REAL NOT NULL);
    CREATE INDEX calls_cache_key ON calls(cache_key);
    CREATE TABLE predictions (
        run_id INTEGER NOT NULL REFERENCES runs(id), item INTEGER NOT NULL, example_id TEXT NOT NULL,
        input TEXT NOT NULL, target TEXT NOT NULL, output TEXT NOT NULL, prediction TEXT,
        correct REAL, call_id INTEGER REFERENCES calls(id), extra_json TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, item));
    CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, value REAL,
        ci_low REAL, ci_high REAL, extra_json TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, name));
    CREATE TABLE training_events (
        id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), step INTEGER NOT NULL,
        kind TEXT NOT NULL,            -- train | eval | checkpoint | summary | error
        loss REAL, lr REAL, tokens INTEGER, seconds REAL, payload_json TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL);
    """)


def _m002_experiment_links(db: sqlite3.Connection) -> None:
    _statements(db, """
    ALTER TABLE experiments ADD COLUMN summary_json TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE experiment_runs (
        experiment_id INTEGER NOT NULL REFERENCES experiments(id), run_id INTEGER NOT NULL REFERENCES runs(id),
        role TEXT NOT NULL,            -- arm | finetune | optimise | curve | consistency | flexibility | flexibility_base
        arm TEXT NOT NULL, x INTEGER,  -- x: k demos or n training examples on a learning curve
        PRIMARY KEY (experiment_id, run_id, role, arm));
    """)


def _m003_experiment_units(db: sqlite3.Connection) -> None:
    _statements(db, """
    CREATE TABLE experiment_units (
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        name TEXT NOT NULL,            -- arm:NAME | shots:K | n_train:N | consistency | flexibility
        status TEXT NOT NULL DEFAULT 'running',  -- running | done | failed
        state_json TEXT NOT NULL DEFAULT '{}',   -- what later units need: trained model dirs, tuned choices
        phases_json TEXT NOT NULL DEFAULT '{}',  -- seconds per phase, summed into the experiment's at the end
        error TEXT, started_at REAL NOT NULL, finished_at REAL,
        PRIMARY KEY (experiment_id, name));
    """)


MIGRATIONS = [_m001_initial, _m002_experiment_links, _m003_experiment_units]
"""Ordered; append only. The store's `user_version` is the number already applied."""


NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "fuse.ceph",
                                  "beegfs", "glusterfs", "fuse.glusterfs", "afs", "panfs", "wekafs", "fuse.sshfs", "9p"})
"""Filesystems other machines write to as well: SQLite's WAL index lives in shared memory, which
does not reach across machines, so a store there uses the rollback journal instead."""


def filesystem_type(path: Path, mounts: str | None = None) -> str:
    """The type of the filesystem holding `path`: the deepest mount point above it in /proc/mounts
    (`mounts`: that file's text, for tests); '' where unknown (no /proc, another OS)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    target, best, kind = str(Path(path).expanduser().absolute()), -1, ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), fields[2]
    return kind


def journal_mode(path: Path) -> str:
    """`TUNEOFF_STORE_JOURNAL` (wal or delete) if set; else `delete` on a network filesystem (jobs on
    several machines write it: a Slurm sweep), `wal` elsewhere (readers never block the writer)."""
    chosen = os.environ.get("TUNEOFF_STORE_JOURNAL", "").strip().lower()
    if chosen:
        if chosen not in ("wal", "delete"):
            raise TuneoffError(f"TUNEOFF_STORE_JOURNAL={chosen!r} is not a journal mode tuneoff uses",
                               field="TUNEOFF_STORE_JOURNAL", hint="wal (one machine) or delete (a network filesystem)")
        return chosen
    return "delete" if filesystem_type(path.parent) in NETWORK_FILESYSTEMS else "wal"


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:32]


def cache_key(model: str, prompt: str, params: dict) -> str:
    blob = json.dumps({"model": model, "prompt": prompt, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class _Connection(sqlite3.Connection):
    """A connection whose failures to read or write the file (read-only, disk full, corrupted, locked
    for too long) are project errors: the CLI prints one line instead of a traceback. Integrity errors
    stay what they are: they are our bugs."""

    path = ""

    def execute(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise _store_error(exc, self.path) from None

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executemany(*args)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise _store_error(exc, self.path) from None


class StoreError(TuneoffError):
    """The store file could not be read or written; `reason` is SQLite's own words."""

    def __init__(self, reason: str, path: str, hint: str):
        self.reason = reason
        super().__init__(f"the run store failed: {reason}", file=path, hint=hint)


def _store_error(exc: Exception, path: str) -> StoreError:
    hints = {"readonly": "the store file or its folder is read-only: pass --store PATH to a writable place",
             "disk is full": "free some disk space, or pass --store PATH on another disk",
             "not a database": "the file is not a tuneoff store: pass --store PATH to use another file",
             "malformed": "the store is corrupted: restore a backup, or pass --store PATH to start a new one",
             "unable to open": "the path is a folder, or its folder is read-only: pass --store PATH to another file"}
    hint = next((h for k, h in hints.items() if k in str(exc)), "pass --store PATH to use another file")
    return StoreError(str(exc), path, hint)


class Store:
    """A run store at `path` (default `TUNEOFF_HOME/runs.sqlite`)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, a read-only or full disk
            raise TuneoffError(f"cannot create the run store's folder: {exc.strerror}", file=str(self.path),
                               hint="pass --store PATH to use another file") from None
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, factory=_Connection)
            self.db.path = str(self.path)
            self.db.row_factory = sqlite3.Row
            # WAL: readers (report) never block the writer; the rollback journal on network filesystems
            self.db.execute(f"PRAGMA journal_mode={journal_mode(self.path)}")
            self.db.execute("PRAGMA busy_timeout=30000")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except (sqlite3.DatabaseError, StoreError) as exc:
            raise TuneoffError(f"cannot open run store: {getattr(exc, 'reason', exc)}", file=str(self.path),
                               hint=_store_error(exc, str(self.path)).hint) from None

    def migrate(self) -> int:
        # the version is read inside the write lock: two processes opening a fresh store at once
        # would otherwise both see v0 and both create the tables ("table experiments already exists")
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise TuneoffError(f"store schema v{version} is newer than this tuneoff (v{len(MIGRATIONS)})",
                                   file=str(self.path), hint="upgrade tuneoff")
            for i, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(self.db)
                self.db.execute(f"PRAGMA user_version={i}")
        return len(MIGRATIONS)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; nested inside another, it joins the outer one."""
        if self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def lock_path(self, key: str) -> Path | None:
        """A lock file for work on this store named by `key` (None for an in-memory store)."""
        if str(self.path) == ":memory:":
            return None
        return self.path.parent / f".{self.path.name}.locks" / key

    # -- experiments and runs -----------------------------------------------------------------
    def add_experiment(self, name: str, spec: dict | None = None) -> int:
        cur = self.db.execute("INSERT INTO experiments(name, spec_json, created_at) VALUES (?,?,?)",
                              (name, json.dumps(spec or {}), time.time()))
        return int(cur.lastrowid)

    def experiment(self, experiment_id: int) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM experiments WHERE id=?", (experiment_id,)).fetchone()
        if row is None:
            raise TuneoffError(f"no experiment {experiment_id} in the store", file=str(self.path),
                               hint="`tuneoff runs` lists runs; `tuneoff run FILE` prints its experiment id")
        return row

    def finish_experiment(self, experiment_id: int, summary: dict) -> None:
        self.db.execute("UPDATE experiments SET summary_json=? WHERE id=?",
                        (json.dumps(summary, default=str), experiment_id))

    def link_run(self, experiment_id: int, run_id: int, role: str, arm: str, x: int | None = None) -> None:
        """Record that `run_id` plays `role` for `arm` in an experiment (the report queries these links)."""
        self.db.execute("INSERT OR REPLACE INTO experiment_runs(experiment_id, run_id, role, arm, x) VALUES (?,?,?,?,?)",
                        (experiment_id, run_id, role, arm, x))

    def linked_runs(self, experiment_id: int, role: str | None = None) -> list[sqlite3.Row]:
        query = "SELECT * FROM experiment_runs WHERE experiment_id=?" + (" AND role=?" if role else "") + " ORDER BY rowid"
        return self.db.execute(query, (experiment_id, role) if role else (experiment_id,)).fetchall()

    def start_run(self, kind: str, *, arm: str = "", task: str = "", split: str = "", model: str = "",
                  spec: dict | None = None, fingerprint: str = "", experiment_id: int | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO runs(experiment_id, kind, arm, task, split, model, spec_json, fingerprint, started_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (experiment_id, kind, arm, task, split, model, json.dumps(spec or {}, default=str), fingerprint,
             time.time()))
        return int(cur.lastrowid)

    def find_run(self, fingerprint: str, statuses: Iterable[str] = ("running", "failed", "done")) -> sqlite3.Row | None:
        """The latest run with this fingerprint (to resume or reuse it)."""
        marks = ",".join("?" * len(tuple(statuses)))
        return self.db.execute(
            f"SELECT * FROM runs WHERE fingerprint=? AND status IN ({marks}) ORDER BY id DESC LIMIT 1",
            (fingerprint, *statuses)).fetchone()

    def finish_run(self, run_id: int, status: str = "done", summary: dict | None = None) -> None:
        self.db.execute("UPDATE runs SET status=?, finished_at=?, summary_json=? WHERE id=?",
                        (status, time.time(), json.dumps(summary or {}, default=str), run_id))

    def run(self, run_id: int) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise TuneoffError(f"no run {run_id} in the store", file=str(self.path), hint="see `tuneoff runs`")
        return row

    def runs(self, limit: int = 50, experiment_id: int | None = None) -> list[sqlite3.Row]:
        if experiment_id is None:
            return self.db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return self.db.execute("SELECT * FROM runs WHERE experiment_id=? ORDER BY id", (experiment_id,)).fetchall()

    # -- units of a sweep (`tuneoff run --jobs N`, a Slurm array) ------------------------------
    def start_unit(self, experiment_id: int, name: str) -> None:
        """Mark a unit of an experiment running (a rerun of the unit starts it afresh)."""
        self.db.execute("INSERT OR REPLACE INTO experiment_units(experiment_id, name, status, started_at)"
                        " VALUES (?,?,'running',?)", (experiment_id, name, time.time()))

    def finish_unit(self, experiment_id: int, name: str, status: str, state: dict | None = None,
                    phases: dict | None = None, error: str | None = None) -> None:
        self.db.execute("UPDATE experiment_units SET status=?, state_json=?, phases_json=?, error=?, finished_at=?"
                        " WHERE experiment_id=? AND name=?",
                        (status, json.dumps(state or {}, default=str), json.dumps(phases or {}), error, time.time(),
                         experiment_id, name))

    def units(self, experiment_id: int) -> dict[str, sqlite3.Row]:
        """The experiment's units by name, as far as any has started."""
        rows = self.db.execute("SELECT * FROM experiment_units WHERE experiment_id=? ORDER BY started_at",
                               (experiment_id,))
        return {r["name"]: r for r in rows}

    # -- model calls --------------------------------------------------------------------------
    def cached_call(self, key: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM calls WHERE cache_key=? ORDER BY id LIMIT 1", (key,)).fetchone()

    def add_call(self, *, run_id: int | None, model: str, prompt: str, params: dict, output: str,
                 tokens_in: int, tokens_out: int, latency_s: float, batch_size: int = 1,
                 finish_reason: str | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO calls(run_id, cache_key, model, prompt_hash, prompt, params_json, output, tokens_in,"
            " tokens_out, latency_s, batch_size, finish_reason, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, cache_key(model, prompt, params), model, prompt_hash(prompt), prompt,
             json.dumps(params, sort_keys=True), output, tokens_in, tokens_out, latency_s, batch_size,
             finish_reason, time.time()))
        return int(cur.lastrowid)

    def calls(self, run_id: int) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM calls WHERE run_id=? ORDER BY id", (run_id,)).fetchall()

    # -- predictions and metrics --------------------------------------------------------------
    def add_predictions(self, run_id: int, rows: Iterable[dict[str, Any]]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO predictions(run_id, item, example_id, input, target, output, prediction,"
                " correct, call_id, extra_json) VALUES (:run_id,:item,:example_id,:input,:target,:output,"
                ":prediction,:correct,:call_id,:extra_json)",
                [{"run_id": run_id, "prediction": None, "correct": None, "call_id": None,
                  **r, "extra_json": json.dumps(r.get("extra", {}))} for r in rows])

    def update_prediction_extras(self, run_id: int, extras: Iterable[tuple[int, dict]]) -> None:
        """Rewrite the `extra` of stored predictions (item, extra): checks computed after the run
        (grounding, output constraints) add their per-item flags there."""
        with self.transaction():
            self.db.executemany("UPDATE predictions SET extra_json=? WHERE run_id=? AND item=?",
                                [(json.dumps(e), run_id, item) for item, e in extras])

    def predictions(self, run_id: int) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM predictions WHERE run_id=? ORDER BY item", (run_id,)).fetchall()

    def done_items(self, run_id: int) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT item FROM predictions WHERE run_id=?", (run_id,))}

    def set_metric(self, run_id: int, name: str, value: float | None, ci_low: float | None = None,
                   ci_high: float | None = None, extra: dict | None = None) -> None:
        self.db.execute("INSERT OR REPLACE INTO metrics(run_id, name, value, ci_low, ci_high, extra_json)"
                        " VALUES (?,?,?,?,?,?)", (run_id, name, value, ci_low, ci_high, json.dumps(extra or {})))

    def metrics(self, run_id: int) -> dict[str, sqlite3.Row]:
        return {r["name"]: r for r in self.db.execute("SELECT * FROM metrics WHERE run_id=?", (run_id,))}

    # -- training -----------------------------------------------------------------------------
    def add_training_event(self, run_id: int, step: int, kind: str, *, loss: float | None = None,
                           lr: float | None = None, tokens: int | None = None, seconds: float | None = None,
                           payload: dict | None = None) -> None:
        self.db.execute(
            "INSERT INTO training_events(run_id, step, kind, loss, lr, tokens, seconds, payload_json, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, step, kind, loss, lr, tokens, seconds, json.dumps(payload or {}, default=str), time.time()))

    def training_events(self, run_id: int, kind: str | None = None) -> list[sqlite3.Row]:
        if kind:
            return self.db.execute("SELECT * FROM training_events WHERE run_id=? AND kind=? ORDER BY id",
                                   (run_id, kind)).fetchall()
        return self.db.execute("SELECT * FROM training_events WHERE run_id=? ORDER BY id", (run_id,)).fetchall()

    def delete_training_events(self, run_id: int, after_step: int) -> int:
        """Drop a run's training events past `after_step`: a resumed run replays those steps from its
        last checkpoint, and the loss curve must not hold them twice."""
        cur = self.db.execute("DELETE FROM training_events WHERE run_id=? AND step>?", (run_id, after_step))
        return cur.rowcount

    def reopen_run(self, run_id: int) -> None:
        """Mark a failed or interrupted run as running again (it is being resumed)."""
        self.db.execute("UPDATE runs SET status='running', finished_at=NULL WHERE id=?", (run_id,))

    # -- evaluation reads ---------------------------------------------------------------------
    def call_prediction_extra(self, call_id: int) -> dict | None:
        """The extra of a prediction made from this call: score mode keeps per-label log-probs there."""
        row = self.db.execute("SELECT extra_json FROM predictions WHERE call_id=? LIMIT 1", (call_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def predictions_with_costs(self, run_id: int) -> list[sqlite3.Row]:
        """A run's predictions with the tokens, latency and batch size of the call behind each."""
        return self.db.execute(
            "SELECT p.*, c.tokens_in, c.tokens_out, c.latency_s, c.batch_size, c.finish_reason FROM predictions p"
            " LEFT JOIN calls c ON c.id = p.call_id WHERE p.run_id=? ORDER BY p.item", (run_id,)).fetchall()
