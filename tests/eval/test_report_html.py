"""The one Markdown -> HTML converter both reports use (data/report_html.py)."""

from lightcoder.data.report_html import html_page, inline, markdown_to_html


def test_tables_headings_bullets_images_and_inline_markup():
    text = ("# Title\n\n| model | EM |\n|---|---:|\n| **trained** | 1 < 2 |\n\n- a `x<y` b\n"
            "![plot](plots/em.png)\nplain & text\n")
    out = markdown_to_html(text).splitlines()
    assert out == [
        "<h1>Title</h1>",
        "<table><tr><th>model</th><th>EM</th></tr><tr><td><b>trained</b></td><td>1 &lt; 2</td></tr></table>",
        "<li>a <code>x&lt;y</code> b</li>",
        "<p><img src='plots/em.png' style='max-width:100%'></p>",
        "<p>plain &amp; text</p>",
    ]


def test_code_block_in_a_list_item_keeps_its_own_indentation():
    text = "- rejected\n\n  ```\n  def f():\n      return '<s>'\n  ```\nafter"
    assert markdown_to_html(text) == ("<li>rejected</li>\n<pre>def f():\n    return &#x27;&lt;s&gt;&#x27;</pre>\n"
                                      "<p>after</p>")


def test_a_table_at_the_end_is_closed_and_the_page_wraps_the_fragment():
    assert markdown_to_html("| a |\n|---|\n| 1 |") == "<table><tr><th>a</th></tr><tr><td>1</td></tr></table>"
    page = html_page("A & B", "<p>x</p>")
    assert page.startswith("<!doctype html>") and "<title>A &amp; B</title>" in page and "<p>x</p>" in page
    assert inline("**a** and **b**") == "<b>a</b> and <b>b</b>"
