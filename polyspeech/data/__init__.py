"""Data: manifests, Kaldi folders, the synthetic corpus."""
