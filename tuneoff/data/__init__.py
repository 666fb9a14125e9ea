"""Examples in: readers for JSON array / JSONL / chat / CSV-TSV, checks, splits.

    from tuneoff.data import ColumnMapping, load_dataset, split_examples
    mapping = ColumnMapping("sentence|content", "label", {"0": "negative", "1": "positive"})
    splits = split_examples(load_dataset("sst2/train.tsv", mapping), test=0.1, dev=0.1, seed=0)

    example.py   `Example` (the one form every file becomes), `ColumnMapping`, `digest`
    records.py   one JSON/CSV record -> one `Example` (flat and chat records)
    readers.py   a file -> records: encodings, JSON array, JSONL, CSV/TSV; `load_examples`, `load_dataset`
    checks.py    problems across records (duplicates, labels, token budget); length summaries
    validate.py  the body of `tuneoff validate` (the CLI prints it)
    labels.py    label sets and maps given as text or files
    splits.py    seeded, stratified, nested splits and subsamples

Problem kinds and `DataError` are in `tuneoff.errors`. Nothing here imports a higher room.
"""

from .checks import LengthStats, Summary, Tokenizer, check_examples, check_lengths, lengths_of, summarize
from .example import DEFAULT_INPUT, DEFAULT_TARGET, ColumnMapping, Example, digest, looks_like_labels
from .labels import parse_label_map, parse_labels
from .readers import LoadResult, load_dataset, load_examples
from .records import ROLES
from .splits import Splits, load_splits, split_examples, stratified_order, subsample
from .validate import Validation, validate_file

__all__ = [
    "DEFAULT_INPUT", "DEFAULT_TARGET", "ROLES", "ColumnMapping", "Example", "LengthStats", "LoadResult", "Splits",
    "Summary", "Tokenizer", "Validation", "check_examples", "check_lengths", "digest", "lengths_of",
    "load_dataset", "load_examples", "load_splits", "looks_like_labels", "parse_label_map", "parse_labels",
    "split_examples", "stratified_order", "subsample", "summarize", "validate_file",
]
