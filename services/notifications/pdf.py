"""The invoice PDF: the same composed content as the email's HTML part (templates.compose),
laid out with fpdf2. The font must cover every language we write (Polish, Vietnamese,
Croatian): DejaVu Sans, from the system's fonts (Debian's fonts-dejavu-core; the container
image installs it). Pure: bytes in memory, no I/O beyond reading the font.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from services.notifications.templates import Composed

FONT_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                   "/usr/share/fonts/TTF/DejaVuSans.ttf")


class NoFont(RuntimeError):
    """No font that covers our languages: the PDF cannot be made (the email then goes without)."""


@cache
def font_path() -> Path:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise NoFont(f"no DejaVuSans.ttf (looked in {', '.join(FONT_CANDIDATES)}); install fonts-dejavu-core")


def render_pdf(c: Composed, font: Path | None = None) -> bytes:
    font = font or font_path()
    bold = font.with_name("DejaVuSans-Bold.ttf")
    pdf = FPDF(format="A4")
    pdf.set_title(c.subject)
    pdf.set_lang(c.lang)
    pdf.set_creator("salesbus")
    pdf.add_font("body", "", str(font))
    pdf.add_font("body", "B", str(bold if bold.is_file() else font))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_font("body", "B", 15)
    pdf.multi_cell(0, 8, c.subject, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("body", "", 10)
    pdf.multi_cell(0, 5, c.greeting, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    for block in c.blocks:
        kind = block[0]
        if kind == "p":
            pdf.multi_cell(0, 5, block[1], new_x="LMARGIN", new_y="NEXT")
        elif kind == "fields":
            with pdf.table(col_widths=(45, 135), first_row_as_headings=False, borders_layout="NONE",
                           line_height=6) as table:
                for label, value in block[1]:
                    row = table.row()
                    row.cell(str(label), style=FontFace(emphasis="BOLD"))
                    row.cell(str(value))
        elif kind == "section":
            pdf.set_font("body", "B", 11)
            pdf.multi_cell(0, 6, block[1], new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("body", "", 10)
            pdf.multi_cell(0, 5, block[2], new_x="LMARGIN", new_y="NEXT")
        elif kind == "table":
            headers, rows, (total_label, total) = block[1], block[2], block[3]
            right = ("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT")
            with pdf.table(col_widths=(60, 30, 25, 32, 33), text_align=right, line_height=6) as table:
                table.row(list(headers))
                for r in rows:
                    table.row([str(v) for v in r])
                total_row = table.row()
                total_row.cell(str(total_label), colspan=len(headers) - 1, align="RIGHT",
                               style=FontFace(emphasis="BOLD"))
                total_row.cell(str(total), style=FontFace(emphasis="BOLD"))
        elif kind == "address":
            pdf.set_font("body", "B", 10)
            pdf.multi_cell(0, 5, block[1], new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("body", "", 10)
            pdf.multi_cell(0, 5, "\n".join(block[2]), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    pdf.multi_cell(0, 5, "\n".join(c.closing), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
