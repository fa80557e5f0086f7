"""Captions to scene graphs to mask plans; noisy-correspondence indices."""
