"""``jaxks demo`` end to end at toy size: the real command, with the built-in structures and
label settings swapped for water monomers in STO-3G on grid level 0 and one training step
(``jaxks demo`` has no size option; its full run takes minutes). Checks the exit status, the
files written and the printed tables."""

import pytest

from jaxks.cli import main


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread(one_openmp_thread):
    yield


def test_demo_tiny(monkeypatch, tmp_path, capsys):
    import jaxks.data.datasets as datasets
    import jaxks.data.labels as labels

    builtin_frames = datasets.builtin_frames

    class TinySettings(labels.LabelSettings):  # whatever the demo asks for: STO-3G, grid 0
        def __init__(self, **kw):
            super().__init__(**dict(kw, basis="sto-3g", grid_level=0))

    monkeypatch.setattr(datasets, "builtin_frames", lambda name, **kw: builtin_frames(
        "water_monomers", **dict(kw, basis="sto-3g", grid_level=0)))
    monkeypatch.setattr(labels, "LabelSettings", TinySettings)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "1"]) == 0
    stdout = capsys.readouterr().out
    for name in ("test-monomers", "test-dimers", "test-trimers"):
        assert f"{name} (held out; errors against HSE06)" in stdout
        assert (out / "run" / f"eval-{name}.json").is_file()
        assert (out / "data" / name / "dataset.json").is_file()
    assert stdout.count("| base |") == 3 and stdout.count("| model |") == 3
    assert (out / "run" / "model.npz").is_file() and (out / "run" / "log.jsonl").is_file()
    assert f"model: {out / 'run' / 'model.npz'}" in stdout


def test_demo_bad_input_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--steps", "many"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
