"""Who may call what, and what reaches a browser: API keys and scopes (``keys``, ``access``),
signed page links (``links``), what ``serve`` demands off loopback (``exposure``), security
headers and the CSP (``headers``), rate limits (``limits``), JSON-only bodies
(``content_type``), and what a page's trace tells a caller (``redaction``).

Nothing is imported here: ``composer.settings`` reads ``keys`` through ``composer.api.config``
and must not pull in Litestar.
"""
