"""The web UI: server-rendered pages (Jinja2) served by the API process.

Forms post back to the page that shows them and are re-rendered with the error next to
the field; a little JavaScript (static/app.js) fills the model dropdown, polls a
running run and draws nothing else. Every script, style and font is served from
static/: the UI works with no internet.
"""
