"""Datasets over artifacts, models, methods (heads + losses), the engine and evaluation."""
