"""Corpus-scale diarization on Ray Data: `run_corpus` and the stages, sink and storage it composes."""

__all__ = ["run_corpus"]


def __getattr__(name: str):
    """`run_corpus` on first use, so that a Ray worker importing one stage module does not import the plan."""
    if name == "run_corpus":
        from pipeline.corpus.plan import run_corpus

        return run_corpus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
