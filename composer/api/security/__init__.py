"""Who may call what, and what reaches a browser: API keys and scopes (``keys``, ``access``),
signed page links (``links``), what ``serve`` demands off loopback (``exposure``), security
headers and the CSP (``headers``), rate limits (``limits``), JSON-only bodies
(``content_type``), and what a page's trace tells a caller (``redaction``).

Nothing is imported here: the modules are small and each caller takes the one it needs.
"""
