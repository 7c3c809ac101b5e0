"""HTTP surface: webhook intake (``intake``), the read API (``reads``), the admin API
(``admin``), health, readiness, metrics and the OpenAPI document (``ops``); the route table
(``routes``), the middlewares (``middleware``), the auth checks (``auth``) and what they all
share (``common``)."""
