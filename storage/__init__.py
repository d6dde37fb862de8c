"""Storage: the engines and their quirks, prepared statements, the hand-tuned two-dialect queries, search and
migrations. It never imports the web framework, and sits below models.py, which binds its tables to it."""
