"""Corpora, tokenisation, packing into fixed-length sequences, curation, OntoBook."""
