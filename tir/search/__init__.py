"""Using a trained run: a gallery index (``index``), ranking sentences against it (``searcher``), a
self-contained result page (``page``) and a local web server (``server``).

It reads training's method API and knowledge's scene-graph parser; nothing below imports it.
"""
