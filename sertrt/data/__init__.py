"""Corpus preparation: synthetic data and adapters that turn corpora into manifests."""
