"""Corpus-scale diarization on Ray Data: `run_corpus` and the stages, sink and storage it composes."""

from .plan import run_corpus

__all__ = ["run_corpus"]
