"""The full latency distributions of a harness run, for the percentile spectrum.

The harness keeps each sweep row's distribution as `latency/<config>-<size>-<iteration>.hgrm`
(named by results.csv's `latency_file` column): HdrHistogram's percentile-distribution
text, as loadgen's `--hdr-out` and wrk2's `--u_latency` print it, values in ms:

    # loadgen latency; values in milliseconds
           Value     Percentile TotalCount 1/(1-Percentile)

           0.042 0.000000000000          1           1.00
           ...
           9.871 1.000000000000      12345
    #[Mean    = ...

This module reads those files and picks, for each series and size, the row whose
distribution is drawn. plot.py draws; it has no HdrHistogram decoder to need, as the file
is text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


class HgrmError(Exception):
    """A file that is not a percentile distribution; the message names it and says why."""


def read(path: Path) -> "pd.DataFrame":
    """The file's rows: `value_ms`, `percentile` (0 to 1), `total_count` and `inverse`
    (1/(1-percentile); NaN on the last row, where the percentile is 1)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise HgrmError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise HgrmError(f"{path}: not a text file") from None
    header = next((i for i, line in enumerate(lines) if line.split()[:2] == HEADER), None)
    if header is None:
        raise HgrmError(
            f"{path}: no `Value Percentile TotalCount` header: not an HdrHistogram "
            "percentile distribution"
        )
    rows = []
    for number, line in enumerate(lines[header + 1 :], start=header + 2):
        fields = line.split()
        if not fields or line.startswith("#"):
            continue
        try:
            if len(fields) not in (3, 4):
                raise ValueError
            value, percentile, count = float(fields[0]), float(fields[1]), int(fields[2])
        except ValueError:
            raise HgrmError(f"{path}: line {number}: {line.strip()!r} is not a percentile row")
        if not 0.0 <= percentile <= 1.0:
            raise HgrmError(f"{path}: line {number}: percentile {percentile} is not in 0..1")
        rows.append((value, percentile, count))
    if not rows:
        raise HgrmError(f"{path}: no percentile rows (an empty histogram)")
    frame = pd.DataFrame(rows, columns=["value_ms", "percentile", "total_count"])
    below = frame["percentile"] < 1.0
    frame["inverse"] = (1.0 / (1.0 - frame["percentile"])).where(below)
    return frame


def representative(rows: "pd.DataFrame", by: str = "p99") -> "pd.DataFrame":
    """Of each series and size, the row of the median iteration by `by` (the lower of the
    two middle ones for an even count, so it is a real run, not an average of two)."""

    def middle(group: "pd.DataFrame") -> "pd.DataFrame":
        ordered = group.sort_values([by, "iteration"], kind="stable")
        return ordered.iloc[[(len(ordered) - 1) // 2]]

    groups = rows.groupby(["series", "size"], sort=False, group_keys=False)
    return pd.concat([middle(group) for _, group in groups]) if len(rows) else rows


# The first two words of the header line of a percentile distribution.
HEADER = ["Value", "Percentile"]
