"""Fail unless every package installed in this interpreter's environment is pinned, at its version, in the given
constraints file (pip, setuptools, wheel and snnconv itself aside): the lock is the whole set, so a new dependency
shows up here as a missing line instead of as a floating version.

Usage: python scripts/check_lock.py constraints/lock.txt
"""

import importlib.metadata
import re
import sys


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock: str) -> int:
    pins = {}
    with open(lock) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, _, version = line.partition("==")
                pins[norm(name)] = version.strip()
    off = sorted(
        f"{d.metadata['Name']}=={d.version} (pinned: {pins.get(norm(d.metadata['Name']), 'no')})"
        for d in importlib.metadata.distributions()
        if norm(d.metadata["Name"]) not in ("pip", "setuptools", "wheel", "snnconv")
        and pins.get(norm(d.metadata["Name"])) != d.version
    )
    if off:
        print(f"installed packages that {lock} does not pin at their version: {', '.join(off)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
