"""The docs hold together: every relative link points at a file (and heading) that
exists, and the README stays a front door."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    ROOT / "bench" / "README.md",
    ROOT / "kernels" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
README_MAX_LINES = 150


def prose(text: str) -> str:
    """The text outside fenced code blocks (code may contain brackets and parentheses)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+\s+(.*)$", prose(path.read_text()), flags=re.M)}


def relative_links(doc: Path) -> list[str]:
    return [t for t in LINK.findall(prose(doc.read_text())) if not re.match(r"[a-z]+:", t)]


def broken(doc: Path, target: str) -> str:
    """Why `target`, linked from `doc`, does not resolve ("" when it does)."""
    path, _, anchor = target.partition("#")
    resolved = (doc.parent / path).resolve() if path else doc
    if not resolved.exists():
        return f"{doc.relative_to(ROOT)}: {target} -> {resolved} does not exist"
    if anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
        return (
            f"{doc.relative_to(ROOT)}: {target}: no heading '#{anchor}' in {resolved.relative_to(ROOT)}; "
            f"it has {sorted(anchors(resolved)) if resolved.suffix == '.md' else 'no headings'}"
        )
    return ""


def test_every_relative_link_points_at_an_existing_file_and_heading():
    links = [(doc, target) for doc in DOCS for target in relative_links(doc)]
    assert len(links) > 50  # the scan finds the links at all
    assert [why for doc, target in links if (why := broken(doc, target))] == []


def test_readme_is_a_front_door_of_at_most_150_lines():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the limit is {README_MAX_LINES}"


def test_every_docs_page_is_linked_from_the_readme():
    readme = set(relative_links(ROOT / "README.md"))
    for page in [
        *(ROOT / "docs").glob("*.md"),
        ROOT / "CONTRIBUTING.md",
        ROOT / "bench" / "README.md",
        ROOT / "kernels" / "README.md",
    ]:
        assert page.relative_to(ROOT).as_posix() in {t.partition("#")[0] for t in readme}, page


def test_slug_follows_github():
    assert slug("Limits: overload, cancellation, deadlines") == "limits-overload-cancellation-deadlines"
    assert slug("Front doors: gRPC, OpenAI HTTP, `ray job submit`") == "front-doors-grpc-openai-http-ray-job-submit"
