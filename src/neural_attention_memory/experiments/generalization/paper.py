"""The paper's published numbers and labels for the length-generalisation experiment.

Table 2 of Nam & Seo (docs/paper.md §5): sequence accuracy (%) of 22–40M-parameter models trained
for up to 200 epochs.
"""

from __future__ import annotations

__all__ = ["MODEL_LABELS", "NSP_TASKS", "PAPER_TABLE2", "SPLIT_LABELS", "TASKS", "TASK_LABELS"]

TASKS: tuple[str, ...] = ("fib", "palin", "reduce", "dyck4", "copy", "repeat-copy", "scan")
NSP_TASKS: tuple[str, ...] = ("fib", "palin")  # the paper's number-sequence-prediction tasks

# Column labels of Table 2 and the models behind them.
MODEL_LABELS: dict[str, str] = {
    "transformer": "TF",
    "lstm": "LSTM",
    "ut": "UT",
    "dnc": "DNC",
    "lsam": "LSAM",
    "nam-tm": "NAM-TM",
    "nam-tm-nojump": "NAM-TM no jump",
    "nam-tm-2023": "NAM-TM 2023",
    "stack-rnn": "Stack-RNN",
}

SPLIT_LABELS = {
    "id": "ID",
    "od_easy": "OD-easy",
    "od_hard": "OD-hard",
    "test": "Test 17-22",
}
TASK_LABELS = {
    "fib": "Fib",
    "palin": "Palin",
    "reduce": "Reduce",
    "scan": "SCAN",
    "dyck4": "4-DYCK",
    "copy": "Copy",
    "repeat-copy": "Repeat-copy",
}

# Keys: (task label, split label, column label).
_T2_COLS = ("TF", "LSTM", "UT", "DNC", "LSAM", "NAM-TM", "NAM-TM no jump")
_T2_ROWS = {
    ("Palin", "ID"): (100, 100, 100, 100, 100, 100, 100),
    ("Palin", "OD-easy"): (65.6, 100, 99.2, 100, 100, 100, 100),
    ("Palin", "OD-hard"): (19.0, 100, 5.2, 100, 100, 100, 100),
    ("Fib", "ID"): (98.9, 46.2, 99.1, 46.9, 100, 97.4, 40.4),
    ("Fib", "OD-easy"): (0.4, 8.3, 21.3, 1.8, 39.9, 89.7, 19.8),
    ("Fib", "OD-hard"): (0.0, 0.0, 0.1, 0.0, 2.9, 71.5, 1.1),
    ("Reduce", "ID"): (99.6, 99.5, 98.7, 100, 99.9, 100, 100),
    ("Reduce", "OD-easy"): (0.2, 91.5, 15.7, 95.7, 96.8, 100, 100),
    ("Reduce", "OD-hard"): (0.0, 63.6, 0.0, 60.1, 77.6, 100, 100),
    ("SCAN", "Train"): (99.8, 99.9, 99.6, 99.3, 99.5, 99.6, 99.9),
    ("SCAN", "Test"): (0.0, 14.5, 4.5, 8.6, 14.9, 11.2, 9.6),
}
PAPER_TABLE2: dict[tuple[str, str, str], float] = {
    (*row, col): v for row, vals in _T2_ROWS.items() for col, v in zip(_T2_COLS, vals, strict=True)
}
