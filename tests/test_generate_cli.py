"""experiments.generate refuses bad options with exit status 2 and a message naming the option,
before any model is built or any work is done; a good --tiny run still writes its files."""

import json
import os

import pytest

from experiments import generate


def refused(capsys, argv) -> str:
    """Parse ``argv``; it must exit with status 2. Returns argparse's error message."""
    with pytest.raises(SystemExit) as exc:
        generate.parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("option, text, expected", [
    ("--guidance-scale", "nan", "expected a finite number >= 0, got 'nan'"),
    ("--guidance-scale", "inf", "expected a finite number >= 0, got 'inf'"),
    ("--guidance-scale", "-1", "expected a finite number >= 0, got '-1'"),
    ("--guidance-scale", "lots", "expected a finite number >= 0, got 'lots'"),
    ("--seed", "-1", r"expected an int in [0, 2**64), got '-1'"),
    ("--seed", str(2**64), rf"expected an int in [0, 2**64), got '{2**64}'"),
    ("--seed", "1.5", r"expected an int in [0, 2**64), got '1.5'"),
    ("--steps", "0", "expected a positive int, got '0'"),
    ("--steps", "-3", "expected a positive int, got '-3'"),
    ("--steps", "two", "expected a positive int, got 'two'"),
    ("--height", "0", "expected a positive int, got '0'"),
    ("--width", "-512", "expected a positive int, got '-512'"),
    ("--width", "512.0", "expected a positive int, got '512.0'"),
])
def test_bad_values_exit_2_naming_the_option(capsys, tmp_path, option, text, expected):
    err = refused(capsys, ["--tiny", "--out", str(tmp_path / "x.png"), f"{option}={text}"])
    assert f"error: argument {option}: {expected}" in err


def test_edge_values_are_accepted(tmp_path):
    args = generate.parse_args(["--tiny", "--out", str(tmp_path / "x.png"), "--guidance-scale", "0",
                                "--seed", str(2**64 - 1), "--steps", "1", "--height", "8"])
    assert (args.guidance_scale, args.seed, args.steps, args.height) == (0.0, 2**64 - 1, 1, 8)
    assert generate.parse_args(["--tiny", "--out", str(tmp_path / "x.png"), "--guidance-scale", "1"]).guidance_scale == 1


def test_seed_minus_one_without_equals(capsys, tmp_path):
    """"--seed -1" reaches the seed's check, not argparse's "expected one argument"."""
    err = refused(capsys, ["--tiny", "--out", str(tmp_path / "x.png"), "--seed", "-1"])
    assert "argument --seed: expected an int in [0, 2**64), got '-1'" in err


@pytest.mark.parametrize("out, expected", [
    ("missing/x.png", "argument --out: expected a file in an existing folder, got '{d}/missing/x.png' "
                      "(no folder '{d}/missing'; create it first)"),
    ("x.jpg", "argument --out: expected a file name ending in .png, got '{d}/x.jpg'"),
    ("x", "argument --out: expected a file name ending in .png, got '{d}/x'"),
    ("a-file/x.png", "argument --out: expected a file in a folder, got '{d}/a-file/x.png' ('{d}/a-file' is not a folder)"),
    ("folder.png", "argument --out: expected a file name, got the directory '{d}/folder.png'"),
])
def test_bad_out(capsys, tmp_path, out, expected):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "folder.png").mkdir()
    err = refused(capsys, ["--tiny", "--out", str(tmp_path / out)])
    assert expected.format(d=tmp_path) in err


def test_bad_json(capsys, tmp_path):
    out = str(tmp_path / "x.png")
    err = refused(capsys, ["--tiny", "--out", out, "--json", str(tmp_path / "missing" / "t.json")])
    assert f"argument --json: expected a file in an existing folder, got '{tmp_path}/missing/t.json'" in err
    err = refused(capsys, ["--tiny", "--out", out, "--json", str(tmp_path)])
    assert f"argument --json: expected a file name, got the directory '{tmp_path}'" in err
    err = refused(capsys, ["--tiny", "--out", out, "--json", out])
    assert "argument --json: expected a file other than --out's" in err


def test_unwritable_out_folder(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:  # root may write anywhere: let os.access say no for this folder
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(folder) and access(path, mode))
    try:
        err = refused(capsys, ["--tiny", "--out", str(folder / "x.png")])
    finally:
        folder.chmod(0o700)
    assert f"argument --out: expected a writable file, got '{folder}/x.png' (permission denied)" in err


def test_device_only_with_opencl(capsys, tmp_path):
    err = refused(capsys, ["--tiny", "--out", str(tmp_path / "x.png"), "--backend", "numpy", "--device", "0:0"])
    assert "argument --device: only the opencl backend takes a device, got --backend numpy" in err


def test_compilation_cache_only_with_jax(capsys, tmp_path):
    err = refused(capsys, ["--tiny", "--out", str(tmp_path / "x.png"), "--backend", "numpy",
                           "--compilation-cache", str(tmp_path / "cache")])
    assert "argument --compilation-cache: only the jax backend compiles programs, got --backend numpy" in err


def test_every_preset_is_offered(tmp_path):
    """--optimizations takes every preset, the GPU's measured one (best) included (on a device
    without measurements best stops: the next test)."""
    for preset in ("none", "paper", "best"):
        args = generate.parse_args(["--tiny", "--out", str(tmp_path / "x.png"), "--optimizations", preset])
        assert args.optimizations == preset
        if preset != "best":
            assert generate.make_backend(args).optimizations == generate.Optimizations.named(preset)


def test_best_without_measurements_stops_before_the_model(tmp_path):
    """best on a device with no measured rule ends with the rule's message, not a traceback from
    the first op."""
    args = generate.parse_args(["--tiny", "--out", str(tmp_path / "x.png"), "--backend", "numpy",
                                "--optimizations", "best"])
    with pytest.raises(SystemExit, match="--optimizations best: .* has no measurements for the numpy backend"):
        generate.make_backend(args)


@pytest.fixture
def no_model(monkeypatch):
    """Building a model (or a backend) fails the test: the checks must come first."""
    def load_pipeline(args):
        raise AssertionError("a model was built before the options were checked")

    monkeypatch.setattr(generate, "load_pipeline", load_pipeline)
    monkeypatch.setattr(generate, "make_backend", load_pipeline)


@pytest.mark.parametrize("bad", [["--out", "{d}/missing/x.png"], ["--json", "{d}/missing/t.json"],
                                 ["--seed", "-1"], ["--guidance-scale", "nan"], ["--steps", "0"]])
def test_main_fails_before_building_a_model(capsys, tmp_path, no_model, bad):
    argv = ["--tiny", "--out", str(tmp_path / "x.png"), "--no-progress"] + [a.format(d=tmp_path) for a in bad]
    with pytest.raises(SystemExit) as exc:
        generate.main(argv)
    assert exc.value.code == 2 and f"argument {bad[0]}: expected" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_height_not_a_multiple_is_refused_before_generation(capsys, tmp_path, monkeypatch):
    from reference.sd.pipeline import StableDiffusionPipeline

    def no_generation(*args, **kwargs):
        raise AssertionError("generation started")

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", no_generation)
    with pytest.raises(SystemExit) as exc:
        generate.main(["--tiny", "--out", str(tmp_path / "x.png"), "--height", "18"])
    assert exc.value.code == 2
    assert "height, width: expected multiples of 4, got 18 x 16 (--height, --width)" in capsys.readouterr().err


def test_tiny_run_writes_png_and_json(capsys, tmp_path):
    out, timings = tmp_path / "x.PNG", tmp_path / "t.json"
    assert generate.main(["--tiny", "--steps", "1", "--guidance-scale", "0.5", "--seed", str(2**64 - 1),
                          "--out", str(out), "--json", str(timings), "--no-progress"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(timings.read_text())["unet_evaluations"] >= 1
    assert "batch 1" in capsys.readouterr().out  # guidance <= 1: no classifier-free guidance
