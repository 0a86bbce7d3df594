"""Text from a PDF knowledge document, the same for validation and generation.

InstructLab accepts PDF documents. The default backend is pypdfium2 (PDFium's text layer, page by page,
pages separated by a blank line): a maintained library with wheels for every platform and no models to
download. docling, when it is installed, gives Markdown with tables and headings: choose it with
`LABTAX_PDF_BACKEND=docling`; labtax runs it offline (`HF_HUB_OFFLINE=1`), so it uses the models already
on the machine and never downloads one at run time. Both are optional dependencies: the extra `pdf`
(`pip install 'labtax[pdf]'`) installs pypdfium2, and a missing backend is a clear error naming it.
"""

from __future__ import annotations

import os

from labtax.errors import LabtaxError

PDF_INSTALL_HINT = "pip install 'labtax[pdf]'"


class PdfError(LabtaxError):
    """The PDF cannot be read as text; the message says why."""


def pdf_backend() -> str:
    backend = os.environ.get("LABTAX_PDF_BACKEND", "pypdfium2").strip().lower() or "pypdfium2"
    if backend not in ("pypdfium2", "docling"):
        raise PdfError(f"LABTAX_PDF_BACKEND={backend!r}: use pypdfium2 (the default) or docling")
    return backend


def pdf_text(data: bytes) -> str:
    """The text of a PDF given as bytes. Raises PdfError when the backend is missing or the file is broken."""
    if pdf_backend() == "docling":
        return _docling_text(data)
    try:
        import pypdfium2
    except ImportError:
        raise PdfError(f"reading PDF documents needs pypdfium2, which is not installed: {PDF_INSTALL_HINT}") from None
    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise PdfError(f"this PDF cannot be read ({exc}); check the file or convert it to Markdown") from None
    try:
        pages = []
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range().replace("\r\n", "\n").strip())
            textpage.close()
            page.close()
    finally:
        document.close()
    return "\n\n".join(page for page in pages if page) + "\n"


def _docling_text(data: bytes) -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models already on the machine, never a download
    try:
        from io import BytesIO

        from docling.datamodel.base_models import DocumentStream
        from docling.document_converter import DocumentConverter
    except ImportError:
        raise PdfError("LABTAX_PDF_BACKEND=docling, but docling is not installed: pip install docling") from None
    try:
        result = DocumentConverter().convert(DocumentStream(name="document.pdf", stream=BytesIO(data)))
    except Exception as exc:  # docling raises many kinds; any of them means no text
        raise PdfError(f"docling could not convert this PDF ({type(exc).__name__}: {exc})") from None
    return str(result.document.export_to_markdown())
