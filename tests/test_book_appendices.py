"""The glossary and the bibliography are complete and well formed.

The glossary (``book/glossary.md``) must define, in alphabetical order, every term the
chapters define; the bibliography files must give every work a DOI, an arXiv identifier
or a publisher's address, with well-formed identifiers and keys unique across files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "glossary.md"
BIB_FILES = [
    ROOT / "book" / "references.bib",
    *sorted((ROOT / "book" / "references").glob("*.bib")),
]

# Terms the chapters define (bold at their definition), each of which a reader may look
# up.
REQUIRED_TERMS = [
    "Q/K/V",
    "query",
    "key",
    "value",
    "attention",
    "self-attention",
    "cross-attention",
    "multi-head attention",
    "scaled dot-product attention",
    "additive attention",
    "causal mask",
    "padding mask",
    "attention mask",
    "pre-LN",
    "post-LN",
    "warm-up",
    "RoPE",
    "ALiBi",
    "T5 relative bias",
    "sinusoidal encoding",
    "relative position representations",
    "weight tying",
    "beam search",
    "greedy decoding",
    "KV cache",
    "label smoothing",
    "BPE",
    "perplexity",
    "bits per character",
    "teacher forcing",
    "top-k sampling",
    "top-p sampling",
    "temperature",
    "residual connection",
    "layer normalization",
    "exposure bias",
    "scheduled sampling",
    "free running",
    "edit distance",
    "hidden state",
    "cell state",
    "gate",
    "LSTM",
    "GRU",
    "backpropagation through time",
    "spectral radius",
    "context vector",
    "bottleneck",
    "leave-one-out",
    "permutation equivariance",
    "path length",
    "bidirectional attention",
    "feed-forward network",
    "Transformer block",
    "search error",
    "model error",
    "length penalty",
    "n-gram model",
    "Kneser-Ney smoothing",
    "language model",
    "decoder-only model",
    "exact match",
    "dropout",
    "gradient clipping",
]


def glossary_entries() -> list[tuple[list[str], str]]:
    """(terms, definition) for each entry of the glossary directive, in page order."""
    text = GLOSSARY.read_text(encoding="utf-8")
    body = re.search(r"```\{glossary\}\n(.*?)\n```", text, re.DOTALL)
    assert body, "book/glossary.md has no {glossary} block"
    entries: list[tuple[list[str], str]] = []
    for block in re.split(r"\n\s*\n", body.group(1).strip("\n")):
        lines = block.splitlines()
        terms = [ln.strip() for ln in lines if not ln.startswith(" ")]
        definition = " ".join(ln.strip() for ln in lines if ln.startswith(" "))
        assert terms and definition, f"malformed glossary entry: {block!r}"
        entries.append((terms, definition))
    return entries


def test_glossary_defines_every_required_term():
    defined = {t.lower() for terms, _ in glossary_entries() for t in terms}
    missing = [t for t in REQUIRED_TERMS if t.lower() not in defined]
    assert not missing, f"the glossary lacks {missing}"


def test_glossary_is_alphabetical_and_has_no_duplicate():
    firsts = [terms[0].lower() for terms, _ in glossary_entries()]
    assert firsts == sorted(firsts), "glossary entries are out of alphabetical order"
    every = [t.lower() for terms, _ in glossary_entries() for t in terms]
    assert len(every) == len(set(every)), "a term is defined twice"


def test_glossary_definitions_are_short():
    for terms, definition in glossary_entries():
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z$])", definition) if s]
        assert 1 <= len(sentences) <= 3, f"{terms[0]}: {len(sentences)} sentences"
        assert definition.endswith("."), (
            f"{terms[0]}: definition does not end a sentence"
        )


def bib_entries():
    for path in BIB_FILES:
        for key, entry in parse_file(path).entries.items():
            yield path.relative_to(ROOT).as_posix(), key, entry


@pytest.mark.parametrize(
    "where, key, entry", list(bib_entries()), ids=lambda v: str(v)[:40]
)
def test_every_bibliography_entry_links_to_the_work(where, key, entry):
    fields = {k.lower(): v for k, v in entry.fields.items()}
    assert fields.keys() & {"doi", "eprint", "url"}, (
        f"{key} ({where}) has no DOI, arXiv or URL"
    )
    if "doi" in fields:
        assert re.fullmatch(r"10\.\d{4,9}/\S+", fields["doi"]), (
            f"{key}: bad DOI {fields['doi']}"
        )
    if "eprint" in fields:
        assert fields.get("archiveprefix", "").lower() == "arxiv", (
            f"{key}: eprint without arXiv"
        )
        assert re.fullmatch(r"\d{4}\.\d{4,5}", fields["eprint"]), f"{key}: bad arXiv id"
        year = int(fields["year"])
        assert 2000 + int(fields["eprint"][:2]) <= year + 1, (
            f"{key}: arXiv id after its year"
        )
    if "url" in fields:
        assert re.fullmatch(r"https://\S+", fields["url"]), f"{key}: URL is not https"


def test_bibliography_keys_are_unique_across_files():
    keys = [key.lower() for _, key, _ in bib_entries()]
    assert len(keys) == len(set(keys)), "a citation key appears in two .bib files"
