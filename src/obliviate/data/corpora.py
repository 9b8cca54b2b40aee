"""Real English text that ships offline with gensim's test data, as bag-of-words count matrices.

Named corpora (:func:`load_corpus`), with the :func:`count_corpus` defaults (min_df=2, max_df=0.5,
max_features=2000, English stop words, alphabetic words of >= 3 letters); measured on 2 CPU cores, first load in a
fresh process including the gensim import:

===========================  ========  ==========  ============================================================
name                         docs      vocabulary  source, load time
===========================  ========  ==========  ============================================================
``lee``                      300       2000        Lee background corpus (300 ABC news articles), ~2 s
``wikipedia``                106       2000        enwiki sample: non-redirect articles, ~4 s
``wikipedia-paragraphs``     4,558     2000        the same articles split into paragraphs, ~4 s
===========================  ========  ==========  ============================================================

With these defaults no Lee or article document is dropped for having < 2 tokens; 8 of the 4,566 paragraphs
(formula and list blocks) are. Mean tokens per document: Lee ~78, articles ~1,190, paragraphs ~30. The Wikipedia
pages are parsed once per process (cached), so a second Wikipedia load costs only the vectorizer (~0.3 s). The
vocabulary is capped by ``max_features`` on every corpus (uncapped: Lee 3,275 words, articles 13,501, paragraphs
about 15,500).

gensim and scikit-learn are optional: they are imported inside the functions that need them.
"""

from __future__ import annotations

import bz2
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from obliviate.errors import ObliviateError, unknown_name_error

LEE_FILE = "lee_background.cor"
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MIN_TEXT_CHARS = 200  # articles and paragraphs shorter than this are skipped (stubs, headings, captions)
TOKEN_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z]{2,}\b"  # alphabetic words of >= 3 letters: no numbers, no wiki markup
CORPORA = ("lee", "wikipedia", "wikipedia-paragraphs")
UNITS = ("article", "paragraph")
_INSTALL_HINT = "pip install 'obliviate[text]'"


@dataclass
class TextCorpus:
    """Documents as word counts; row i of ``counts`` is ``titles[i]`` / ``texts[i]``."""

    counts: scipy.sparse.csr_matrix  # (m, n) int64
    vocabulary: list[str]  # column j is vocabulary[j]
    titles: list[str]  # one per kept document
    texts: list[str]  # the raw text of each kept document
    dropped: list[str] = field(default_factory=list)  # titles of documents dropped for having < 2 tokens


def _gensim_datapath(filename: str) -> str:
    try:
        from gensim.test.utils import datapath
    except ImportError:
        raise ObliviateError(f"the text corpora need gensim: {_INSTALL_HINT}") from None
    return datapath(filename)


def lee_texts() -> list[str]:
    """The 300 ABC news articles of gensim's ``lee_background.cor``, one per line, in file order."""
    with open(_gensim_datapath(LEE_FILE), encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def _is_redirect(wikitext: str) -> bool:
    return wikitext.lstrip().lower().startswith("#redirect")


@functools.lru_cache(maxsize=1)
def _wikipedia_articles() -> tuple[tuple[str, str], ...]:
    """(title, plain text) of every main-namespace, non-redirect page with >= MIN_TEXT_CHARS characters."""
    path = _gensim_datapath(WIKI_FILE)
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    articles = []
    with bz2.open(path, "rb") as fh:
        # namespace "0" is the article namespace; other pages come back with empty text and are skipped below
        for title, wikitext, _pageid in extract_pages(fh, filter_namespaces=("0",)):
            if _is_redirect(wikitext):
                continue
            text = filter_wiki(wikitext).strip()
            if len(text) >= MIN_TEXT_CHARS:
                articles.append((title, text))
    return tuple(articles)


_HEADING = re.compile(r"^\s*=+[^=\n]*=+\s*$", re.MULTILINE)  # a "==History==" line


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks of ``text`` with >= MIN_TEXT_CHARS characters.

    Section heading lines are removed first: filter_wiki sometimes glues a heading to the paragraph below it, and a
    heading is not part of that paragraph's prose. Short blocks (stubs, captions, lone headings) are skipped.
    """
    blocks = (block.strip() for block in re.split(r"\n\s*\n", _HEADING.sub("", text)))
    return [block for block in blocks if len(block) >= MIN_TEXT_CHARS]


def wikipedia_texts(unit: str = "article") -> tuple[list[str], list[str]]:
    """(titles, texts) of gensim's shortened enwiki dump, in file order.

    ``unit="article"``: one document per non-redirect article with >= 200 characters of text (after
    ``filter_wiki``). ``unit="paragraph"``: each article split into its blank-line separated paragraphs of >= 200
    characters, titled ``"Title #k"`` with k = 1, 2, ... counting the kept paragraphs of that article.
    """
    if unit not in UNITS:
        raise unknown_name_error("wikipedia unit", str(unit), UNITS)
    titles: list[str] = []
    texts: list[str] = []
    for title, text in _wikipedia_articles():
        if unit == "article":
            titles.append(title)
            texts.append(text)
            continue
        for k, para in enumerate(_paragraphs(text), start=1):
            titles.append(f"{title} #{k}")
            texts.append(para)
    return titles, texts


def count_corpus(
    texts: Sequence[str],
    titles: Sequence[str] | None = None,
    min_df: float = 2,
    max_df: float = 0.5,
    max_features: int | None = 2000,
    stop_words: str | list[str] | None = "english",
) -> TextCorpus:
    """Bag-of-words counts of ``texts`` with sklearn's ``CountVectorizer`` (lowercased, ``TOKEN_PATTERN``).

    Documents left with < 2 tokens are dropped (an anchor-word topic model needs two tokens per document) and
    listed in ``dropped``; words that then occur in no kept document are removed from the vocabulary, so every
    column of ``counts`` is non-empty. ``titles`` defaults to ``doc-0000``, ``doc-0001``, ... As in sklearn, an int
    ``min_df`` / ``max_df`` is a document count and a float one a fraction of the documents.
    """
    texts = list(texts)
    if not texts:
        raise ObliviateError("count_corpus needs at least one text, got an empty list")
    titles = [f"doc-{i:04d}" for i in range(len(texts))] if titles is None else list(titles)
    if len(titles) != len(texts):
        raise ObliviateError(f"titles has {len(titles)} entries but texts has {len(texts)}; give one title per text")
    from sklearn.feature_extraction.text import CountVectorizer  # a core dependency

    vectorizer = CountVectorizer(
        lowercase=True,
        stop_words=stop_words,
        token_pattern=TOKEN_PATTERN,
        min_df=min_df,
        max_df=max_df,
        max_features=max_features,
        dtype=np.int64,
    )
    try:
        counts = vectorizer.fit_transform(texts).tocsr()
    except (ValueError, TypeError) as exc:  # sklearn's parameter and empty-vocabulary errors
        raise ObliviateError(
            f"cannot build a vocabulary with min_df={min_df!r}, max_df={max_df!r}, max_features={max_features!r}, "
            f"stop_words={stop_words!r} over {len(texts)} texts: {exc}"
        ) from None
    vocabulary = [str(w) for w in vectorizer.get_feature_names_out()]
    return _drop_short(counts, vocabulary, titles, texts)


def _drop_short(
    counts: scipy.sparse.csr_matrix, vocabulary: list[str], titles: list[str], texts: list[str]
) -> TextCorpus:
    """Remove documents with < 2 tokens, then words no kept document uses."""
    keep = np.flatnonzero(np.asarray(counts.sum(axis=1)).ravel() >= 2)
    kept = set(keep.tolist())
    dropped = [t for i, t in enumerate(titles) if i not in kept]
    counts = counts[keep]
    used = np.flatnonzero(np.asarray(counts.sum(axis=0)).ravel() > 0)
    if used.size < counts.shape[1]:
        counts = counts[:, used]
        vocabulary = [vocabulary[j] for j in used]
    counts = scipy.sparse.csr_matrix(counts, dtype=np.int64)
    return TextCorpus(counts, vocabulary, [titles[i] for i in keep], [texts[i] for i in keep], dropped)


def load_corpus(name: str, **kwargs: object) -> TextCorpus:
    """A named corpus (see the module docstring); ``kwargs`` go to :func:`count_corpus`."""
    if name == "lee":
        texts = lee_texts()
        titles = [f"lee-{i:04d}" for i in range(len(texts))]
    elif name == "wikipedia":
        titles, texts = wikipedia_texts("article")
    elif name == "wikipedia-paragraphs":
        titles, texts = wikipedia_texts("paragraph")
    else:
        raise unknown_name_error("corpus", str(name), CORPORA)
    return count_corpus(texts, titles, **kwargs)
