"""The README is a front page that links into docs/: every link resolves, the fresh-machine commands stay, and the
counts the docs quote are the ones planning computes."""
import re
from pathlib import Path

import pytest

from conftest import ROOT, load_config
from pipeline_lib.config import cohort_plan, trained_victims

PAGES = [ROOT / "README.md", ROOT / "DEVELOPING.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """A markdown file without its code blocks and code spans, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return re.sub(r"`[^`]*`", "", re.sub(r"^    .*$", "", text, flags=re.M))


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", prose(path), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def docs_text() -> str:
    """README.md and every docs page, whitespace collapsed."""
    return re.sub(r"\s+", " ", " ".join(p.read_text() for p in PAGES))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_and_its_heading(page):
    for link in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", link):
            continue
        file, _, anchor = link.partition("#")
        target = (page.parent / file).resolve() if file else page
        assert target.is_file(), f"{page.name}: link {link!r}: no file {target}"
        assert not anchor or anchor in anchors(target), f"{page.name}: link {link!r}: no such heading"


def test_the_readme_is_a_front_page_that_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 160 and max(map(len, lines)) <= 110
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in LINK.findall(prose(ROOT / "README.md"))}
    assert set((ROOT / "docs").glob("*.md")) <= linked


def test_the_readme_shows_the_fresh_machine_commands_make_and_ci_run():
    readme = (ROOT / "README.md").read_text()
    assert "\n    make demo\n" in readme and "\n    make test\n" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert "--configfile config/demo.yaml" in makefile.split("\ndemo:")[1].split("\n\n")[0]
    assert "pytest" in makefile.split("\ntest:")[1].split("\n\n")[0]
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_the_counts_the_docs_quote_are_the_ones_planning_computes():
    text = docs_text()
    full, demo = load_config("config.yaml"), load_config("config/demo.yaml")
    cohorts = {name: len(set(cohort_plan(cfg | changes).values())) for name, cfg, changes in [
        ("full", full, {}), ("full_whole", full, {"cohort_by_figure": False}),
        ("full_64", full, {"cohort_size": 64, "cohort_by_figure": False}),
        ("demo", demo, {}), ("demo_by_figure", demo, {"cohort_by_figure": True})]}
    clean = {n: sum(cfg["attacks"][v.attack]["method"] == "none" for v in trained_victims(cfg))
             for n, cfg in [("full", full), ("demo", demo)]}
    seeds = sum(c["source"][:3] in ("001", "003", "004") for c in full["claims"].values())
    quoted = [
        f"draws all {len(demo['figures'])} figures",
        f"{len(trained_victims(demo))} victims ({clean['demo']} of them clean)",
        f"in {cohorts['demo']} cohorts",
        f"{cohorts['demo']} fuller cohorts instead of {cohorts['demo_by_figure']}",
        f"The demo's scorecard ({len(demo['claims'])} claims",
        f"{len(full['surrogates'])} surrogates",
        f"{len(trained_victims(full))} victims in {cohorts['full']} cohorts ({clean['full']} of them clean",
        f"{cohorts['full']} cohorts instead of {cohorts['full_whole']}",
        f"| `cohort_size: 64`, `cohort_by_figure: false` | {cohorts['full_64']} |",
        f"{len(full['claims'])} claims on the scorecard ({seeds} of the seeds, {len(full['claims']) - seeds} of",
    ]
    assert [q for q in quoted if q not in text] == []
