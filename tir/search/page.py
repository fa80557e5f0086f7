"""The search result page: a query box, the top-k images as a grid with scores, the sentence's scene
graph and the words the model attended to. Plain HTML and CSS, no script and nothing fetched from the
internet; used by ``tir search --html`` (thumbnails inlined) and by ``tir serve`` (images by URL)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from html import escape
from pathlib import Path

from tir.search.searcher import MAX_SENTENCE_CHARS, MAX_TOP, SearchResult

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;background:#fafafa}
form{margin-bottom:1em} input[type=text]{width:60%;font-size:1em;padding:.3em}
.result{display:flex;gap:1.5em;margin-bottom:2em}
.grid{display:flex;flex-wrap:wrap;gap:.6em;flex:3}
figure{margin:0;text-align:center;font-size:.8em}
figure img{height:160px;border:3px solid #bbb;display:block}
.side{flex:1;font-size:.9em;min-width:16em}
.side h3{margin:.2em 0} .attended{background:#ffe08a;padding:0 .1em}
ul{padding-left:1.2em;margin:.2em 0}
"""


def thumbnail_uri(path: Path, height: int = 160) -> str:
    """A JPEG data URI of the image at ``path`` scaled to ``height`` pixels (empty when it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except OSError:
        return ""
    rgb.thumbnail((height * 4, height))
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _marked(sentence: str, attended: list[dict]) -> str:
    """The sentence with its attended words highlighted."""
    out, at = [], 0
    for word in sorted(attended, key=lambda w: w["start"]):
        out.append(escape(sentence[at:word["start"]]))
        out.append(f'<span class="attended" title="{word["weight"]:.3f}">{escape(sentence[word["start"]:word["end"]])}</span>')
        at = word["end"]
    out.append(escape(sentence[at:]))
    return "".join(out)


def _graph(result: SearchResult) -> str:
    if result.graph is None:
        return ""
    objects = {o["id"]: o["head"] for o in result.graph["objects"]}
    attributes: dict[int, list[str]] = {}
    for attribute in result.graph["attributes"]:
        attributes.setdefault(attribute["object"], []).append(attribute["text"])
    items = "".join(f"<li>{escape(head)}" + (f": {escape(', '.join(attributes[i]))}" if i in attributes else "") + "</li>"
                    for i, head in objects.items())
    relations = "".join(f"<li>{escape(objects.get(r['subject'], '?'))} &rarr; {escape(r['predicate'])} &rarr; "
                        f"{escape(objects.get(r['object'], '?'))}</li>" for r in result.graph["relations"])
    return (f"<h3>Scene graph</h3><b>objects and attributes</b><ul>{items or '<li>none</li>'}</ul>"
            f"<b>relations</b><ul>{relations or '<li>none</li>'}</ul>")


def _result(result: SearchResult, image_src: Callable[[str], str]) -> str:
    figures = "".join(
        f'<figure><img src="{escape(image_src(hit.image_path))}" alt="{escape(hit.image_path)}">'
        f"<figcaption>{hit.rank}. {hit.score:.3f}" + (f" &middot; pid {hit.pid}" if hit.pid is not None else "")
        + f"<br>{escape(Path(hit.image_path).name)}</figcaption></figure>"
        for hit in result.hits
    )
    attended = ("<h3>Words attended to</h3><p>" + _marked(result.sentence, result.attended) + "</p>") if result.attended else ""
    return (f'<h2>&ldquo;{escape(result.sentence)}&rdquo;</h2><div class="result"><div class="grid">{figures}</div>'
            f'<div class="side">{_graph(result)}{attended}</div></div>')


def render_page(results: list[SearchResult], image_src: Callable[[str], str], title: str, query: str = "",
                k: int = 10, form: bool = True) -> str:
    """The whole page: optional query form (GET ``/?q=...&k=...``), then one block per result."""
    box = (f'<form method="get" action="/"><input type="text" name="q" value="{escape(query)}" '
           f'maxlength="{MAX_SENTENCE_CHARS}" placeholder="describe a person" autofocus> top '
           f'<input type="number" name="k" value="{k}" min="1" max="{MAX_TOP}"> <button>search</button></form>') if form else ""
    body = "".join(_result(result, image_src) for result in results)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{box}{body}</body></html>")
