"""Cleaners on real-looking text, composition in a pipeline, and the cleaning report."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmkit
from llmkit.data.cleaners import HTML_ELEMENTS, add_stopwords, symbol_ratio
from llmkit.data.pipeline import CleaningPipeline, format_report, load_report, save_report
from llmkit.data.records import Record
from llmkit.errors import RegistryError, UsageError


def run(name: str, texts: list[str | None], **params: object) -> list[str | None]:
    """Texts after cleaner `name`; None where the record was dropped."""
    cleaner = llmkit.create("cleaner", name, **params)
    out = cleaner.apply([Record(t, source=f"r{i}") for i, t in enumerate(texts)])
    return [None if r is None else r.text for r in out]


def test_unicode_normalisation() -> None:
    text = "ﬁle ① ＡＢＣ cafe\u0301"
    assert run("nfc", [text]) == ["ﬁle ① ＡＢＣ café"]
    assert run("nfkc", [text]) == ["file 1 ABC café"]


def test_whitespace_and_control_characters() -> None:
    text = "Title\u00a0 \t here  \r\n\r\n\r\n\r\n    indented   code\x07\u200b\n\x00end  "
    cleaned = run("control_chars", [text])[0]
    assert cleaned is not None
    assert "\x07" not in cleaned and "\x00" not in cleaned and "\u200b" not in cleaned
    assert run("whitespace", [cleaned]) == ["Title here\n\n    indented code\nend"]
    assert run("whitespace", [cleaned], keep_newlines=False) == ["Title here indented code end"]


def test_lowercase() -> None:
    assert run("lowercase", ["ÉCOLE Normale"]) == ["école normale"]


def test_strip_html_tags_scripts_and_entities() -> None:
    page = (
        "<html><head><style>p {color: red}</style><script>var a = 1 < 2;</script></head>"
        "<body><!-- nav --><p>Fish &amp; chips&nbsp;cost &pound;5.</p><br/>Since 3 < 4 and "
        "5 > 2, <b>bold</b> <a href='x.html'>link</a>.</body></html>"
    )
    out = run("strip_html", [page])[0]
    assert out is not None
    assert "<" not in out.replace("3 < 4", "") and "color" not in out and "var a" not in out
    assert "Fish & chips\u00a0cost £5." in out
    assert "Since 3 < 4 and 5 > 2, bold link." in out


def test_strip_html_keeps_angle_brackets_that_are_not_html() -> None:
    text = (
        "Fill in the <mask> token; load the <plugin> named in <config>.\n"
        '  File "<stdin>", line 1, in <module>\n'
        "Types look like <class 'int'>; and a < b > c holds."
    )
    assert run("strip_html", [text]) == [text]
    page = (
        '<!DOCTYPE html><?xml version="1.0"?><DIV class="x">Use <code>&lt;mask&gt;</code> '
        "<a title=\"a > b\" href='y'>here</a><noscript>enable JS</noscript></DIV>"
    )
    assert run("strip_html", [page]) == ["\nUse <mask> here\n"]


_HTML_NAMES = sorted(HTML_ELEMENTS - {"script", "style", "noscript"})  # these drop their text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="<")))
def test_strip_html_only_decodes_entities_in_text_without_tags(text: str) -> None:
    assert run("strip_html", [text]) == [html.unescape(text)]
    if "&" not in text:
        assert run("strip_html", [text]) == [text]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_characters="<&")),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,11}", fullmatch=True).filter(
        lambda w: w.lower() not in HTML_ELEMENTS
    ),
    st.sampled_from(_HTML_NAMES),
    st.text(alphabet=st.characters(blacklist_characters="<&")),
)
def test_strip_html_keeps_a_non_html_word_tag(before: str, word: str, tag: str, after: str) -> None:
    out = run("strip_html", [f"{before}<{word}><{tag}>{after}</{tag}></{word}>"])[0]
    assert out is not None
    assert f"<{word}>" in out and f"</{word}>" in out
    assert f"<{tag}>" not in out and after in out


def test_urls_and_emails() -> None:
    text = (
        "See https://docs.kernel.org/admin-guide/README.html, or www.python.org. "
        "Mail torvalds@linux-foundation.org (or x.y+z@mail.example.co.uk)."
    )
    assert run("urls", [text]) == [
        "See , or . Mail torvalds@linux-foundation.org (or x.y+z@mail.example.co.uk)."
    ]
    assert run("emails", [text], replacement="<email>")[0].endswith(  # type: ignore[union-attr]
        "Mail <email> (or <email>)."
    )


def test_boilerplate_lines() -> None:
    page = (
        ".. SPDX-License-Identifier: GPL-2.0\n"
        "Memory Management\n"
        "We use cookies to improve your experience. Accept cookies?\n"
        "The allocator keeps a privacy policy of its own for pages, which is a long sentence "
        "that mentions the privacy policy but is real content nonetheless.\n"
        "Copyright 2023 Example Corp. All rights reserved.\n"
        "Share on Twitter\n"
    )
    out = run("boilerplate", [page])[0]
    assert out is not None
    assert out.splitlines() == [
        "Memory Management",
        "The allocator keeps a privacy policy of its own for pages, which is a long sentence "
        "that mentions the privacy policy but is real content nonetheless.",
    ]
    kernel = "Register the driver with the bus core.\nTCP SYN cookies use a keyed hash.\n"
    assert run("boilerplate", [kernel]) == [kernel]
    assert run("boilerplate", ["Intro\nPowered by Foo\n"], patterns=["^powered by"]) == ["Intro\n"]
    with pytest.raises(UsageError, match="bad pattern"):
        llmkit.create("cleaner", "boilerplate", patterns=["(unclosed"])


def test_punctuation_and_stopwords() -> None:
    assert run("punctuation", ["Wait—what?! «Yes», (really)."]) == ["Waitwhat Yes really"]
    assert run("punctuation", ["a,b"], replacement=" ") == ["a b"]
    out = run("stopwords", ["The cat is on the mat, and it isn't moving."])
    assert out == ["cat mat, moving."]


def test_stopwords_other_languages_and_errors(tmp_path: Path) -> None:
    add_stopwords("xx-test", ["der", "die", "das"])
    assert run("stopwords", ["Das Haus und der Baum"], language="xx-test") == ["Haus und Baum"]
    words = tmp_path / "sw.txt"
    words.write_text("haus\n")
    assert run("stopwords", ["Das Haus"], words_file=str(words)) == ["Das"]
    with pytest.raises(UsageError, match=r"no stop-word list for language 'zz'.*available: .*en"):
        llmkit.create("cleaner", "stopwords", language="zz")


def test_missing_values_drop_or_fill() -> None:
    recs = [Record("ok", label="pos"), Record(None, label="neg"), Record("  ", label=None)]
    dropped = llmkit.create("cleaner", "missing").apply(list(recs))
    assert [r is None for r in dropped] == [False, True, True]
    cleaner = llmkit.create("cleaner", "missing", fields=["label"], action="fill", fill="unknown")
    filled = cleaner.apply([Record("x", label=None), Record("y", label="")])
    assert [r.label for r in filled if r] == ["unknown", "unknown"]
    with pytest.raises(RegistryError, match="action"):
        llmkit.create("cleaner", "missing", action="explode")


def test_text_cleaners_leave_missing_text_alone() -> None:
    for name in ("nfc", "whitespace", "strip_html", "lowercase", "symbol_ratio", "stopwords"):
        assert run(name, [None]) == [None] or run(name, [None])[0] is None


def test_length_filter() -> None:
    texts = ["short", "a sentence with exactly six words", "x" * 50]
    assert run("length", texts, min_chars=10) == [None, texts[1], texts[2]]
    assert run("length", texts, min_words=2, max_words=6) == [None, texts[1], None]
    assert run("length", texts, max_chars=40) == [texts[0], texts[1], None]


def test_symbol_ratio_lines_and_records() -> None:
    rst = "Heading\n=======\n\nSome prose here.\n+---+---+\n| 1 | 2 |\n"
    assert run("symbol_ratio", [rst]) == ["Heading\n\nSome prose here.\n| 1 | 2 |\n"]
    assert symbol_ratio("=====") == 1.0 and symbol_ratio("abc") == 0.0
    assert run("symbol_ratio", ["#### $$$ !!!", "fine text"], unit="record") == [None, "fine text"]
    with pytest.raises(UsageError, match="max_ratio"):
        llmkit.create("cleaner", "symbol_ratio", max_ratio=2.0)


def test_pipeline_report_counts_and_examples(tmp_path: Path) -> None:
    names = ["strip_html", "whitespace", "missing", "length", "dedup_exact"]
    cleaners = [
        llmkit.create("cleaner", n, **({"min_words": 3} if n == "length" else {})) for n in names
    ]
    pipeline = CleaningPipeline(cleaners, batch_size=2)
    records = [
        Record("<p>The   page allocator</p> hands out pages.", source="a:1"),
        Record("<br>", source="a:2"),
        Record("The page allocator hands out pages.", source="a:3"),
        Record("Too short", source="a:4"),
        Record("Slab caches sit on top of it.", source="a:5"),
    ]
    out = list(pipeline.run(records))
    assert [r.source for r in out] == ["a:1", "a:5"]
    report = pipeline.report()
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["strip_html"]["changed"] == 2 and steps["strip_html"]["records_out"] == 5
    assert steps["missing"]["dropped"] == 1
    assert steps["length"]["dropped"] == 1
    assert steps["dedup_exact"]["dropped"] == 1
    assert steps["dedup_exact"]["examples"][0]["why"] == "same as a:1"
    # block tags become line breaks: "<p>", "</p>" and "<br>" each leave one "\n"
    assert steps["strip_html"]["chars_in"] - steps["strip_html"]["chars_out"] == 7 - 2 + 4 - 1
    assert report["records_in"] == 5 and report["records_out"] == 2
    save_report(report, tmp_path / "r.json")
    text = format_report(load_report(tmp_path / "r.json"))
    assert "dedup_exact" in text and "same as a:1" in text
    with pytest.raises(UsageError, match="no such report"):
        load_report(tmp_path / "none.json")


_LINE_WORDS = [
    *[
        "Share",
        "on",
        "Twitter",
        "cookies",
        "we",
        "use",
        "the",
        "kernel",
        "Copyright",
        "2024",
        "All",
        "rights",
        "reserved",
    ],
    *[
        "search",
        "|",
        "docs",
        "page",
        "SPDX-License-Identifier:",
        "Subscribe",
        "newsletter",
        "now",
        "Click",
        "here",
    ],
    *[
        "Home",
        ">",
        "Privacy",
        "Policy",
        "(c)",
        "©",
        "Log",
        "in",
        "to",
        "your",
        "account",
        "Back",
        "top",
    ],
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(_LINE_WORDS), max_size=20).map(" ".join), max_size=8),
    st.booleans(),
)
def test_boilerplate_fast_path_matches_a_line_by_line_filter(lines: list[str], final: bool) -> None:
    from llmkit.data.cleaners import BOILERPLATE_PATTERNS, Boilerplate

    text = "\n".join(lines) + ("\n" if final else "")
    regex = re.compile("|".join(f"(?:{p})" for p in BOILERPLATE_PATTERNS), re.I | re.M)
    expected = "\n".join(
        line for line in text.split("\n") if len(line.split()) > 16 or not regex.search(line)
    )
    assert Boilerplate().transform(text) == expected


def test_replace_and_match_for_dictionary_style_pairs() -> None:
    recs = [
        Record("Haus {n} [arch.]", target="house [Br.]"),
        Record("Wie geht es dir heute?", target="How are you today?"),
        Record("Wie geht es dir heute?", target="how are you today"),
    ]
    replace = llmkit.create("cleaner", "replace", pattern=r"\s*(\{[^}]*\}|\[[^\]]*\])")
    out = replace.apply(list(recs))
    assert (out[0].text, out[0].target) == ("Haus", "house")  # type: ignore[union-attr]
    both = llmkit.create("cleaner", "match", pattern=r"[.?!]$", field="both")
    assert [r is not None for r in both.apply(list(recs))] == [False, True, False]
    drop = llmkit.create("cleaner", "match", pattern="^wie", drop=True, ignore_case=True)
    assert [r is not None for r in drop.apply(list(recs))] == [True, False, False]
    longer = llmkit.create("cleaner", "length", min_words=4, target=True)
    assert [r is not None for r in longer.apply(list(recs))] == [False, True, True]
    with pytest.raises(UsageError, match="bad pattern"):
        llmkit.create("cleaner", "replace", pattern="(")
