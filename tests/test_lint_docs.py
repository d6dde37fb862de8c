"""tests/lint_docs.py: broken relative links and anchors are reported, and the repository has none."""

from pathlib import Path

from tests.lint_docs import anchor, broken_links


def test_a_missing_file_and_a_missing_anchor_are_reported(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Chat API server\n\n"
        "See [the index](docs/README.md) and [options](docs/configuration.md#options).\n"
        "A [missing page](docs/missing.md), a [wrong anchor](docs/configuration.md#no-such-heading),\n"
        "a [missing anchor here](#nowhere), [this page](#chat-api-server) and [the web](https://example.com/x.md).\n"
        "```sh\n[not a link](inside/a/fence.md)\n```\n"
        "`[not a link](inside/a/code/span.md)`\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "README.md").write_text("# Index\n\n![a picture](web-client.png)\n", encoding="utf-8")
    (tmp_path / "docs" / "configuration.md").write_text(
        "# Configuration\n\n## Options\n\nBack to [the README](../README.md#chat-api-server).\n", encoding="utf-8"
    )

    assert broken_links(tmp_path) == [
        "README.md:4: docs/missing.md",
        "README.md:4: docs/configuration.md#no-such-heading",
        "README.md:5: #nowhere",
        "docs/README.md:3: web-client.png",
    ]


def test_anchors_are_made_as_on_github():
    assert anchor("Rehearsing it: `tox -e cluster`") == "rehearsing-it-tox--e-cluster"
    assert anchor("Search at a million messages (issue 12)") == "search-at-a-million-messages-issue-12"
    assert anchor("2026-11-27: throughput against the floor, and scale-out") == (
        "2026-11-27-throughput-against-the-floor-and-scale-out"
    )


def test_the_repository_has_no_broken_links():
    assert broken_links() == []
