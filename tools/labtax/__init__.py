"""labtax: a git-native taxonomy repository and its tooling for LAB-style alignment of language models."""

__version__ = "0.1.0"
