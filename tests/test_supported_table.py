"""The README's supported-layers table is the registry's (``port.supported_layers``)."""

import pathlib

import pytest

from port import registry
from port import supported_layers

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_table_matches_the_registry():
  text = README.read_text(encoding="utf-8")
  assert supported_layers.replace_section(text) == text, (
    "README.md's supported-layers table is out of date; run: "
    "python -m port.supported_layers --write README.md"
  )


def test_every_converter_has_a_row_and_every_row_a_converter():
  table = supported_layers.markdown()
  listed = {row[0] for row in supported_layers.rows()}
  assert listed == set(registry.supported_classes())
  for name in registry.supported_classes():
    assert f"| `{name}` |" in table or f"| {name} |" in table
  assert "`LeakyReLU` | `ReLU`" in table  # a Keras class converted to another jaxnets layer


def test_check_and_write_commands(tmp_path, capsys):
  stale = tmp_path / "README.md"
  stale.write_text(f"intro\n{supported_layers.START}\nold\n{supported_layers.END}\nend\n")
  assert supported_layers.main(["--check", str(stale)]) == 1
  assert "out of date" in capsys.readouterr().err
  assert supported_layers.main(["--write", str(stale)]) == 0
  assert supported_layers.main(["--check", str(stale)]) == 0
  text = stale.read_text()
  assert text.startswith("intro\n") and text.endswith("\nend\n") and "`Dense`" in text
  with pytest.raises(ValueError, match="expected one"):
    supported_layers.replace_section("no markers here")
