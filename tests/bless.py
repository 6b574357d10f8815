#!/usr/bin/python3
"""Regenerate the expected outputs of every fixture; review with git diff.

Refuses to run while a rule in cocci/ is not what cocci/src/ gives (run
`make cocci` first): expectations blessed from a stale rule would pass
against that rule and fail against the real one."""

import os
import subprocess
import sys

import support

check = subprocess.run([sys.executable, os.path.join(support.ROOT, "scripts", "gen-cocci"),
                        "--check"], capture_output=True, text=True)
if check.returncode != 0:
    sys.exit(check.stderr.strip() or "gen-cocci --check failed")
for (name, mode), out in sorted(support.all_rule_outputs().items()):
    with open(support.expected_path(name, mode), "w") as f:
        f.write(out)
for name, out in sorted(support.all_fix_outputs().items()):
    with open(support.expected_path(name, "fix"), "w") as f:
        f.write(out)
import test_put_in_completion_rule as completion  # noqa: E402
for name in completion.fixtures():
    for mode in completion.MODES:
        with open(completion.expected_path(name, mode), "w") as f:
            f.write(completion.output(name, mode))
for name in support.audit_fixtures():
    with open(os.path.join(support.AUDIT_FIXTURES, name, "expected.json"), "w") as f:
        f.write(support.audit_fixture_json(name))
print("blessed %d rule fixtures and %d audit fixtures; review with `git diff tests/`"
      % (len(support.rule_fixtures()), len(support.audit_fixtures())))
