"""``report.html`` and ``index.html`` read back with the standard library's HTML parser: the
elements a page holds, their attributes, its text and its embedded pictures."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser

from PIL import Image


@dataclass
class Element:
    """One start tag: its name, attributes and, for table cells and links, its text."""

    tag: str
    attrs: dict[str, str]
    text: str = ""


@dataclass
class Page:
    """Every element in document order, the whole text, and the tables' rows as text."""

    elements: list[Element] = field(default_factory=list)
    text: str = ""
    tables: dict[str, list[list[str]]] = field(default_factory=dict)

    def find(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]

    def images(self) -> list[Image.Image]:
        """Each ``<img>``'s picture, decoded from its ``data:`` URI."""
        pictures = []
        for element in self.find("img"):
            head, _, data = element.attrs["src"].partition(",")
            assert head == "data:image/png;base64", head[:40]
            pictures.append(Image.open(io.BytesIO(base64.b64decode(data, validate=True))))
        return pictures


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.chunks: list[str] = []
        self.open: list[Element] = []
        self.table: str | None = None
        self.row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.page.elements.append(element)
        if tag == "table":
            self.table = element.attrs.get("id", f"table{len(self.page.tables)}")
            self.page.tables[self.table] = []
        elif tag == "tr" and self.table is not None:
            self.row = []
            self.page.tables[self.table].append(self.row)
        elif tag in ("td", "th", "a"):
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "a") and self.open:
            element = self.open.pop()
            if tag in ("td", "th") and self.row is not None:
                self.row.append(element.text.strip())
        elif tag == "table":
            self.table = None

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)
        for element in self.open:
            element.text += data


def read_page(html: str) -> Page:
    """``html`` parsed (the parser keeps going through anything malformed)."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    reader.page.text = "".join(reader.chunks)
    return reader.page


UNSAFE_TAGS = frozenset(
    {"script", "iframe", "object", "embed", "link", "base", "form", "frame", "meta-refresh"}
)


def unsafe_markup(page: Page) -> list[str]:
    """What a self-contained, script-free page must not hold: script or embedding tags, event
    handler attributes, ``<img>`` or ``<style>`` sources other than ``data:``, or an
    ``<a href>`` that leaves the folder (a scheme or an absolute path)."""
    found = []
    for element in page.elements:
        if element.tag in UNSAFE_TAGS:
            found.append(f"<{element.tag}>")
        for name, value in element.attrs.items():
            if name.startswith("on"):
                found.append(f"<{element.tag} {name}=...>")
            if name == "style" and "url(" in value:
                found.append(f"<{element.tag} style=url(...)>")
        if element.tag == "img" and not element.attrs.get("src", "").startswith("data:image/"):
            found.append(f"<img src={element.attrs.get('src', '')[:40]!r}>")
        href = element.attrs.get("href", "")
        if element.tag == "a" and (":" in href.split("/")[0] or href.startswith("/")):
            found.append(f"<a href={href[:40]!r}>")
    return found
