"""Thin Click commands: each parses options, calls one stage function and reports."""
