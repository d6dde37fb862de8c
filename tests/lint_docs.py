"""Check every relative link in the Markdown documentation: `python tests/lint_docs.py`.

The files checked are README.md, BENCHMARKS.md and docs/**/*.md. A link is a Markdown link `[text](target)` or
image `![alt](target)`; links with a scheme (https:, http:, mailto:, ...) are skipped, and so is anything inside a
fenced code block or a code span. The target's file must exist relative to the linking file, and a `#fragment` must
be the GitHub-style anchor of a heading in the target (in the linking file itself for a bare `#fragment`). Each
broken link is printed as `file:line: target`, and the exit status is 1 when there is any. Standard library only.
"""

import re
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent

# [text](target) and ![alt](target), with an optional "title"; the text may hold one level of brackets
# (a code span such as [`x[0]`](...)).
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def documents(root: Path = ROOT) -> list[Path]:
    """The Markdown files whose links are checked."""
    found = [root / name for name in ("README.md", "BENCHMARKS.md") if (root / name).is_file()]
    docs = root / "docs"
    if docs.is_dir():
        found += sorted(docs.rglob("*.md"))
    return found


def _prose_lines(text: str):
    """(line number, line) for each line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) <= {fence[0]}:
                fence = None
            continue
        yield number, line


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation dropped, spaces as hyphens."""
    text = CODE_SPAN.sub(lambda match: match.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps only its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = anchor(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path):
    """(line number, target) for each link in a Markdown file, code excluded."""
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(CODE_SPAN.sub(lambda span: " " * len(span.group(0)), line)):
            yield number, match.group(1)


def broken_links(root: Path = ROOT) -> list[str]:
    """Every broken relative link under root, as "file:line: target" with the file relative to root."""
    root = Path(root)
    cache: dict[Path, set[str]] = {}
    broken = []
    for document in documents(root):
        for number, target in links(document):
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue
            address, _, fragment = target.partition("#")
            address = unquote(address.split("?", 1)[0])
            destination = (document.parent / address).resolve() if address else document
            ok = destination.exists()
            if ok and fragment:
                if destination.is_file() and destination.suffix.lower() == ".md":
                    if destination not in cache:
                        cache[destination] = anchors(destination)
                    ok = unquote(fragment).lower() in cache[destination]
                else:
                    ok = False  # a fragment into a folder or a non-Markdown file cannot be checked
            if not ok:
                broken.append(f"{document.relative_to(root).as_posix()}:{number}: {target}")
    return broken


def main() -> int:
    found = documents()
    if not found:
        print("lint_docs: no Markdown files found; is this the project's root?", file=sys.stderr)
        return 1
    broken = broken_links()
    for entry in broken:
        print(entry)
    if broken:
        print(f"lint_docs: {len(broken)} broken link(s) in {len(found)} files", file=sys.stderr)
        return 1
    print(f"lint_docs: every relative link in {len(found)} files works")
    return 0


if __name__ == "__main__":
    sys.exit(main())
