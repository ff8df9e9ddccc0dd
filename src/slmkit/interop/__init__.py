"""Other projects' formats. The only package that knows Hugging Face weight names and config keys."""

from slmkit.interop.hf_export import export_hf
from slmkit.interop.hf_import import import_hf

__all__ = ["export_hf", "import_hf"]
