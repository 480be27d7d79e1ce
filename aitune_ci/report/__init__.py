"""Rendering results for people: terminal tables, markdown, HTML."""
