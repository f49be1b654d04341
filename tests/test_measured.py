"""The measured files (data/measured/*.json, written by notebooks/build/measureNN.py and loaded by notebooks 02, 05
and 06) record the shipped models they were measured on, and `zoo.load_measured` refuses one whose models differ."""
import json
import shutil

import pytest

from diffnb import zoo


@pytest.mark.parametrize("name", list(zoo.MEASURED))
def test_every_measured_file_matches_the_shipped_models(name):
    data = zoo.load_measured(name)                   # raises ManifestError if measured on other models
    assert data["measured_on"] == zoo.measured_on(name)
    assert set(data["measured_on"]) == set(zoo.MEASURED[name])


def test_every_measured_file_is_registered():
    folder = zoo.default_root().parent / "measured"
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(zoo.MEASURED)


@pytest.fixture
def copied_data(tmp_path):
    """A copy of the manifest and the measured files (not the weights): (models root, measured folder)."""
    models, measured = tmp_path / "models", tmp_path / "measured"
    models.mkdir()
    shutil.copy(zoo.default_root() / "manifest.json", models / "manifest.json")
    shutil.copytree(zoo.default_root().parent / "measured", measured)
    return models, measured


def test_a_retrained_model_is_refused_naming_it_both_digests_and_the_command(copied_data):
    models, _ = copied_data
    name = "05_stylediffusion"
    recorded = zoo.load_measured(name, root=models)["measured_on"]["toy-t2i"]
    manifest = json.loads((models / "manifest.json").read_text())
    weights = next(rel for rel in manifest["toy-t2i"]["files"] if rel.endswith(".safetensors"))
    manifest["toy-t2i"]["files"][weights] = "0" * 64                  # toy-t2i reinstalled with other weights
    (models / "manifest.json").write_text(json.dumps(manifest))
    shipped = zoo.entry_digest(manifest["toy-t2i"])
    assert shipped != recorded
    with pytest.raises(zoo.ManifestError) as e:
        zoo.load_measured(name, root=models)
    message = str(e.value)
    for part in ("toy-t2i", recorded, shipped, "notebooks/build/measure05.py", zoo.measure_command(name)):
        assert part in message, (part, message)


def test_a_card_edit_is_not_a_retrained_model(copied_data):
    models, _ = copied_data
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["toy-t2i"]["files"]["card.md"] = "0" * 64
    (models / "manifest.json").write_text(json.dumps(manifest))
    zoo.load_measured("06_p2plus", root=models)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("measured_on"), "does not record the models"),
    (lambda d: d["measured_on"].pop("toy-seg"), "another toy-seg (recorded None"),
    (lambda d: d["measured_on"].update({"toy-ddpm": "0" * 16}), "another toy-ddpm (recorded 0000000000000000, "
                                                                  "shipped None)"),
], ids=["no record", "a model missing", "an extra model"])
def test_a_file_recording_other_models_is_refused(copied_data, edit, message):
    models, measured = copied_data
    path = measured / "06_p2plus.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(zoo.ManifestError, match="measure06.py") as e:
        zoo.load_measured("06_p2plus", root=models)
    assert message in str(e.value)


def test_unknown_and_missing_measured_files(copied_data):
    models, measured = copied_data
    with pytest.raises(ValueError, match="02_inversion"):
        zoo.load_measured("09_nothing", root=models)
    (measured / "02_inversion.json").unlink()
    with pytest.raises(zoo.ManifestError, match="measure02.py"):
        zoo.load_measured("02_inversion", root=models)
