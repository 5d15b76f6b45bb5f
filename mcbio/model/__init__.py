"""ModernBERT attention switch, CLM/MLM objectives, layer freezing, HF build and export."""
