"""Analysis scripts behind the README's and docs' diagnostic numbers (`python -m tools.<name>`)."""
