"""A custom dataset's CSV (one caption per row) as the JSON list of records `tir prepare` reads.

Rows are grouped into one record per (image path, person id, split), in order of first appearance, with
the captions in row order; a second group for the same image then becomes a ``duplicate_image`` reject.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tir.errors import UserError
from tir.pipeline.datasets import DatasetSpec
from tir.pipeline.raw_json import read_text


def read_csv_as_json(path: Path, spec: DatasetSpec) -> str:
    """The CSV at ``path`` (header row naming the spec's keys) as the JSON text of a list of records."""
    text = read_text(path)
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as error:
        raise UserError(f"not a readable CSV file ({error}); fix it or pass the right one with --annotations", path=path) from None
    if not rows:
        raise UserError("the CSV file is empty; it needs a header row and one row per caption", path=path)
    header = [name.strip() for name in rows[0]]
    keys = (spec.image_key, spec.id_key, spec.split_key, spec.captions_key)
    absent = [key for key in keys if key not in header]
    if absent:
        raise UserError(f"the CSV header ({', '.join(header)}) lacks {', '.join(absent)}; name the columns with "
                        "--image-key, --id-key, --split-key and --captions-key", path=path)
    columns = [header.index(key) for key in keys]
    records: dict[tuple[str, str, str], dict] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            raise UserError(f"line {number} has {len(row)} fields, the header {len(header)}; fix the row", path=path)
        image, pid, split, caption = (row[k] for k in columns)
        record = records.setdefault((image, pid, split), {spec.image_key: image, spec.id_key: pid, spec.split_key: split,
                                                          spec.captions_key: []})
        record[spec.captions_key].append(caption)
    return json.dumps(list(records.values()), ensure_ascii=False)
