"""Bad-input policy shared by all readers: raise a `DataError` or skip and count.

Every problem has a short reason code (e.g. "malformed_json", "missing_key") and a location
("file.jsonl:12", "file.parquet row 3", "tfds:name/train index 7"). With `on_error="error"` the
first problem raises; with `on_error="skip"` the record is dropped, counted per reason, and the
reader goes on with the next record (records are parsed independently, so a skipped record
never shifts or corrupts its neighbours).
"""

from __future__ import annotations

import collections
import dataclasses

ON_ERROR_POLICIES = ("error", "skip")


class DataError(ValueError):
    """A record (or file) that cannot be used; `reason` is a short code, `where` a location."""

    def __init__(self, reason: str, message: str, where: str = ""):
        self.reason = reason
        self.where = where
        self.detail = message
        super().__init__(f"{where}: {message}" if where else message)


def check_policy(on_error: str) -> str:
    if on_error not in ON_ERROR_POLICIES:
        raise ValueError(f"on_error must be one of {ON_ERROR_POLICIES}, got {on_error!r}")
    return on_error


@dataclasses.dataclass
class SkipReport:
    """Counts of skipped records per reason, with the first few locations of each."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    samples: dict = dataclasses.field(default_factory=dict)
    max_samples: int = 5

    def add(self, error: DataError) -> None:
        self.counts[error.reason] += 1
        bucket = self.samples.setdefault(error.reason, [])
        if len(bucket) < self.max_samples:
            bucket.append(str(error))

    def merge(self, other: "SkipReport") -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            bucket = self.samples.setdefault(reason, [])
            bucket.extend(other.samples.get(reason, [])[: self.max_samples - len(bucket)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "counts": dict(self.counts),
            "samples": {k: list(v) for k, v in self.samples.items()},
        }

    def summary(self) -> str:
        if not self.total:
            return "no records skipped"
        parts = [f"{reason}={n}" for reason, n in sorted(self.counts.items())]
        return f"skipped {self.total} records: " + ", ".join(parts)


def handle(error: DataError, *, on_error: str, report: SkipReport) -> None:
    """Apply the policy: raise under "error", count under "skip"."""
    if on_error == "error":
        raise error
    report.add(error)
