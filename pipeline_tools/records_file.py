"""Records files for ``send``: a JSON array, one JSON object, or NDJSON, read strictly."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


class RecordFileError(ValueError):
    """A records file that cannot be read, naming the file and the problem."""


def records_argument(text: str) -> list[Any]:
    """An argparse type: the records of the file ``text``, so a bad file is a one-line usage
    error before any AWS call or deploy."""
    try:
        return read_records(text)
    except RecordFileError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def read_records(path: str | Path) -> list[Any]:
    """The records of a JSON array, a single JSON object, or NDJSON (one record per line).

    :raises RecordFileError: naming the file and the problem, in one line.
    """
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RecordFileError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise RecordFileError(f"{file}: is a directory, not a records file") from None
    except UnicodeDecodeError as error:
        raise RecordFileError(f"{file}: not UTF-8 text (byte {error.start})") from None
    if not text.strip():
        raise RecordFileError(f"{file}: empty; expected a JSON array, a JSON object or NDJSON")
    try:
        whole = _strict_json(text)
    except ValueError as whole_error:
        lines = [line for line in text.splitlines() if line.strip()]
        # NDJSON is one object a line; anything else (a pretty-printed array cut off, one
        # object over several lines) is a JSON document with its error where it is.
        if len(lines) < 2 or not _is_json_object(lines[0]):
            raise RecordFileError(f"{file}: not valid JSON: {whole_error}") from None
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(_strict_json(line))
                except ValueError as error:
                    raise RecordFileError(
                        f"{file}: line {number} is not valid JSON (NDJSON): {error}"
                    ) from None
        return records
    return whole if isinstance(whole, list) else [whole]


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(_strict_json(line), dict)
    except ValueError:
        return False


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)
