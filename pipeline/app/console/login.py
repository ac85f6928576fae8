"""The console's sign-in page (asked for when a token is set), in the configured language."""

from __future__ import annotations

import html

from pipeline.common.i18n import catalogue

__all__ = ["login_page"]

_LOGIN_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/static/console.css"></head><body class="login"><form method="get" action="/">
<h1>{heading}</h1><p>{text}</p>
<input type="password" name="token" placeholder="{placeholder}" autofocus required>
<button type="submit">{button}</button></form></body></html>"""


def login_page(language: str) -> str:
    """The sign-in page in ``language`` (catalogue strings, HTML-escaped)."""
    cat = catalogue(language)
    return _LOGIN_PAGE.format(lang=language, **{k: html.escape(cat.t(f"login.{k}")) for k in
                                                ("title", "heading", "text", "placeholder", "button")})
