"""A bounded fuzz run of every command (tests/fuzz.py); `make fuzz` runs
a long one.  Fixed seeds, so a failure here can be replayed."""

import os

import fuzz

SECONDS = float(os.environ.get("MMAUDIT_FUZZ_SECONDS", "40"))


def test_fuzz_every_command(tmp_path):
    cases, problems = fuzz.run(SECONDS, seed=20261125, base=str(tmp_path))
    assert cases >= 10
    assert not problems, "\n".join("%r: %s" % p for p in problems[:5])
