"""Fetching only the COG tiles a job needs from where scenes and embeddings live (STAC API + HTTP range
requests): app.fetch.core is the one HTTP path of `app.season fetch` and `app.emb fetch`."""
