"""Heads shared by methods: the cross-modal MLM module and the token-selection embedding."""
