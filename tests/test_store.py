import sqlite3

import pytest

from tuneoff.errors import TuneoffError
from tuneoff.store import MIGRATIONS, Store, cache_key


def test_migrations_run_once_and_record_version(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    store = Store(path)  # second open: nothing to migrate, nothing lost
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(TuneoffError, match="newer"):
        Store(path)


def test_not_a_database_is_a_user_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_text("this is not sqlite" * 100)
    with pytest.raises(TuneoffError, match="cannot open run store") as info:
        Store(path)
    assert info.value.file == str(path)
    assert path.read_text().startswith("this is not sqlite")  # nothing stored is lost


def test_calls_predictions_metrics_events_roundtrip(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    run = store.start_run("eval", arm="zero-shot", task="sst2", split="dev", model="m", fingerprint="fp1")
    params = {"max_new_tokens": 4}
    call = store.add_call(run_id=run, model="m", prompt="p", params=params, output="positive",
                          tokens_in=10, tokens_out=1, latency_s=0.5, batch_size=4)
    assert store.cached_call(cache_key("m", "p", params))["id"] == call
    assert store.cached_call(cache_key("m", "p", {"max_new_tokens": 5})) is None
    store.add_predictions(run, [{"item": 0, "example_id": "a:1", "input": "x", "target": "positive",
                                 "output": "positive", "prediction": "positive", "correct": 1.0, "call_id": call}])
    assert store.done_items(run) == {0}
    store.set_metric(run, "accuracy", 1.0, 0.9, 1.0)
    assert store.metrics(run)["accuracy"]["ci_low"] == 0.9
    store.add_training_event(run, 1, "train", loss=2.5, tokens=100)
    assert store.training_events(run, "train")[0]["loss"] == 2.5
    store.finish_run(run, summary={"n": 1})
    assert store.find_run("fp1")["status"] == "done"
    assert [r["id"] for r in store.runs()] == [run]


def test_unknown_run_names_the_store(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(TuneoffError, match="no run 42"):
        store.run(42)
