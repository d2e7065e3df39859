"""``jaxks train`` and ``jaxks eval`` through the command line, on three labelled water monomers
(STO-3G, grid level 0): exit status, the files written, the printed table, and the base
functional's errors against values computed here from the label files; bad input exits with 2.

These tests use only the CLI's observable behaviour (the trainer's internals may change).
"""

import json
import os

import numpy as np
import pytest

from jaxks.cli import main
from jaxks.units import EV_PER_HARTREE

N_FRAMES = 3


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread(one_openmp_thread):
    yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_train") / "w1"
    rc = main(["label", "builtin:water_monomers", "--frames", f"0:{N_FRAMES}", "--basis",
               "sto-3g", "--grid-level", "0", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """One ``jaxks train`` run with its captured stdout: 2 steps of a small network in the
    cheaper fixed-density mode without the force loss (the end-to-end mode's gradients are
    tested in tests/train)."""
    import io
    from contextlib import redirect_stdout

    folder = tmp_path_factory.mktemp("cli_train_run")
    config = folder / "config.toml"
    run = folder / "run"
    config.write_text(f"""
[data]
train = ["{dataset}"]
test = ["{dataset}"]

[model]
hidden = [8, 8]

[loss]
force = 0.0

[train]
mode = "fixed"
steps = 2
batch_size = 2
out = "{run}"
""")
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["train", str(config)])
    return rc, run, buf.getvalue()


def label_arrays(dataset):
    """(base energy, target energy, n_atoms) of every frame, read from the npz files."""
    rows = []
    for root, _, files in os.walk(dataset):
        for name in sorted(files):
            if name.startswith("frame_") and name.endswith(".npz"):
                with np.load(os.path.join(root, name)) as z:
                    rows.append((float(z["base/energy"]), float(z["target/energy"]),
                                 len(z["atomic_numbers"])))
    assert len(rows) == N_FRAMES
    return rows


def table_rows(text):
    """{method: [cells]} of the markdown table printed by train/eval."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in ("base", "model"):
            rows[cells[0]] = cells[1:]
    return rows


def test_train_writes_run_folder_and_prints_table(trained):
    rc, run, stdout = trained
    assert rc == 0
    for name in ("config.toml", "log.jsonl", "model.npz"):
        assert (run / name).is_file(), name
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
    assert [line["step"] for line in log] == [0, 1, 2]  # step 0: the initial model
    assert "trained 2 steps" in stdout and str(run / "model.npz") in stdout
    rows = table_rows(stdout)
    assert set(rows) == {"base", "model"}
    # the written config is complete and reads back: it runs again as it is
    import tomllib

    written = tomllib.loads((run / "config.toml").read_text())
    assert written["train"]["steps"] == 2 and written["model"]["hidden"] == [8, 8]
    import jaxks

    model = jaxks.load_model(run / "model.npz")
    assert model.config.hidden == (8, 8) and set(model.config.elements) == {"H", "O"}


def test_eval_writes_metrics_and_base_errors_match_labels(trained, dataset, tmp_path, capsys):
    _, run, _ = trained
    out = tmp_path / "eval"
    rc = main(["eval", str(run / "model.npz"), str(dataset), "--out", str(out)])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert set(table_rows(stdout)) == {"base", "model"}
    data = json.loads((out / "eval.json").read_text())
    assert "meV" in data["units"]
    assert (out / "eval.md").read_text().strip() in stdout
    base, model = data["metrics"]["base"], data["metrics"]["model"]
    # base (PBE) energy error against the target (HSE06), from the label files themselves
    expected = np.mean([abs(b - t) / n for b, t, n in label_arrays(dataset)]) * 1000 * EV_PER_HARTREE
    assert abs(base["energy_mae_mev_per_atom"] - expected) < 1e-6 * expected
    assert model["scf_converged"] == 1.0 and model["frames"] == N_FRAMES
    assert np.isfinite(model["energy_mae_mev_per_atom"])


@pytest.mark.parametrize("config_text,message", [
    ("[data]\ntrain = []\n", "no training data"),
    ("[nonsense]\nx = 1\n", "unknown config section"),
    ("[train]\nsteps = \"many\"\n", "steps"),
    ("not toml at all [[[", ""),
])
def test_train_bad_config_exits_2(tmp_path, capsys, config_text, message):
    config = tmp_path / "config.toml"
    config.write_text(config_text)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxks: error:") and message in err and "Traceback" not in err


def test_train_missing_config_exits_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert "jaxks: error:" in capsys.readouterr().err


def test_eval_bad_input_exits_2(trained, dataset, tmp_path, capsys):
    _, run, _ = trained
    not_a_model = tmp_path / "model.npz"
    not_a_model.write_bytes(b"garbage")
    assert main(["eval", str(not_a_model), str(dataset)]) == 2
    assert "jaxks: error:" in capsys.readouterr().err
    assert main(["eval", str(run / "model.npz"), str(tmp_path / "no_such_data")]) == 2
    assert "jaxks: error:" in capsys.readouterr().err
