"""Data tools that catch problems before money is spent: detection, validation, stats, conversion, splits.

Everything here streams: a file is read one record at a time, so a 200k-line file costs no more memory
than a small one (apart from a few bytes per row for duplicate and length statistics).
"""

from anytune.data.formats import DataFormat, detect_record
from anytune.data.validate import Issue, ValidationReport, iter_valid_records, validate_file

__all__ = ["DataFormat", "Issue", "ValidationReport", "detect_record", "iter_valid_records", "validate_file"]
