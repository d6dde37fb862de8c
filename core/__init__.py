"""The leaf every layer may use: error types, user-name rules and times. It imports no web framework and nothing
else of this package but data files."""
