"""mcbio: French biomedical long-context encoders (ModernCamemBERT-bio recipe)."""

__version__ = "0.1.0"
