"""The student- and reproduction-facing scripts run and produce what they promise."""

import math

import pytest

from experiments import winograd_error


def test_winograd_error_experiment_rows_and_cli(capsys, tmp_path):
    rows = winograd_error.error_table([(2, "lavin"), (6, "integer")], ("float32",), channels=4, size=8, seeds=1)
    assert [r["m"] for r in rows] == [2, 6]
    assert 0 < rows[0]["relative"] < 1e-5 and rows[1]["relative"] > 10 * rows[0]["relative"]
    winograd_error.main(["--channels", "4", "--size", "8", "--seeds", "1", "--dtypes", "float32",
                         "--custom", "4:0,1,-1,1/2,-2", "--plot", str(tmp_path / "error.png")])
    out = capsys.readouterr().out
    assert "| F(4x4,3x3) | custom | float32 |" in out
    assert (tmp_path / "error.png").stat().st_size > 5000
    winograd_error.main(["--show-matrices", "2"])
    assert "1/2" in capsys.readouterr().out


def test_sd_latency_tiny_run(capsys, tmp_path):
    """The per-switch SD table on tiny networks: every component timed, memory where measurable."""
    from experiments import sd_latency

    rows = sd_latency.main(["--backend", "numpy", "--tiny", "--iterations", "1", "--configs", "none", "winograd4",
                            "--plot", str(tmp_path / "ablation.png")])
    assert (tmp_path / "ablation.png").stat().st_size > 5000
    assert [r["config"] for r in rows] == ["none", "winograd4"]
    assert all(r[f"{c}_s"] > 0 for r in rows for c in ("text_encoder", "unet", "decoder"))
    assert rows[1]["choices"]["conv2d default -> winograd4"] > 0
    assert rows[0]["device"] and rows[0]["commit"]  # what the raw JSON needs to be reproduced
    assert "| winograd4 |" in capsys.readouterr().out
    try:
        import pyopencl  # noqa: F401
    except ImportError:
        return
    (row,) = sd_latency.main(["--backend", "opencl", "--tiny", "--iterations", "1", "--configs", "paper"])
    assert row["unet_peak_mib"] > 0 and row["peak_scope"] == "since reset"


def test_sd_latency_process_per_config(tmp_path):
    """``--process-per-config``: each configuration measured by a process of its own, the rows
    gathered in order into one JSON, with the options (here the configuration's switches and the
    dtype) passed on to every process."""
    import json
    import os

    from experiments import sd_latency

    out = tmp_path / "rows.json"
    rows = sd_latency.main(["--backend", "numpy", "--tiny", "--iterations", "1", "--dtype", "float32",
                            "--configs", "none", "fused_gelu", "--process-per-config", "--json", str(out)])
    assert [r["config"] for r in rows] == ["none", "fused_gelu"] and json.loads(out.read_text()) == rows
    processes = {r["process"] for r in rows}
    assert len(processes) == 2 and os.getpid() not in processes
    assert all(r["unet_s"] > 0 for r in rows)
    assert rows[1]["choices"]["gelu default -> fused"] > 0 and "gelu default -> fused" not in rows[0]["choices"]


def test_sd_latency_counts_compilation_cache_hits(tmp_path):
    """``JaxBackend(compilation_cache=...)`` stores a program for later processes, and a row says
    whether its first call compiled or loaded: the same program compiled again (in-memory caches
    cleared, as in a new process) is a hit, not a miss."""
    jax = pytest.importorskip("jax")
    from backends import get_backend
    from experiments.sd_latency import CompilePhases

    phases = CompilePhases()
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        get_backend("jax", compilation_cache=tmp_path)
        counts = []
        for _ in range(2):
            jax.clear_caches()
            with phases:
                jax.jit(lambda x: x * 3.0 + 1.0)(jax.numpy.arange(5.0)).block_until_ready()
            counts.append(dict(phases.counts))
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
    (cold, warm) = counts  # arange's program and ours
    assert cold["cache_hits"] == 0 and cold["cache_misses"] >= 1
    assert warm == {"cache_hits": cold["cache_misses"], "cache_misses": 0}


def test_sd_latency_rows_count_the_autotuning_results_xla_keeps(tmp_path):
    """A row says how many autotuning results its programs could read: XLA keeps one file per
    result in a subdirectory per GPU description (the H100's committed directory holds
    699b92c0fb30cb16/*.pb), so the files are counted at any depth, not the directory's entries."""
    pytest.importorskip("jax")
    from backends import get_backend
    from experiments.sd_latency import run_context

    (tmp_path / "699b92c0fb30cb16").mkdir()
    for name in ("a.pb", "b.pb", "c.pb"):
        (tmp_path / "699b92c0fb30cb16" / name).write_bytes(b"result")
    context = run_context(get_backend("jax", autotune_results=tmp_path), "jax")
    assert context["autotune_results"] == str(tmp_path)
    assert context["autotune_results_mode"] == "AUTOTUNE_CACHE_MODE_UPDATE"
    assert context["autotune_results_files"] == 3
    assert run_context(get_backend("jax", autotune_results="off"), "jax")["autotune_results_files"] == 0


def test_load_memory_measures_a_real_load(tmp_path, capsys):
    """experiments.load_memory on a tiny VAE folder: our loader holds the file once, and the
    peak it reports is a measured number of the right size (the SD 1.4 run is in
    experiments/results/load_memory/)."""
    import json

    from backends import get_backend
    from experiments import load_memory
    from reference.sd.tiny import TINY_VAE
    from reference.sd.vae import VAEDecoder

    folder = VAEDecoder.random({**TINY_VAE, "block_out_channels": [64, 128], "force_upcast": False},
                               backend=get_backend("numpy")) \
        .save_pretrained(tmp_path / "vae")
    load_memory.main(["--component", "vae", "--folder", str(folder), "--dtypes", "float32", "float16",
                      "--loaders", "ours", "--json", str(tmp_path / "rows.json")])
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["loader"], r["dtype"]) for r in rows] == [("ours", "float32"), ("ours", "float16")]
    assert rows[0]["file_bytes"] == (folder / VAEDecoder.WEIGHTS_NAME).stat().st_size
    # float32 weights from a float32 file: the file less its header; float16: half of that
    assert 0.99 * rows[0]["file_bytes"] < rows[0]["held_bytes"] < rows[0]["file_bytes"]
    assert rows[1]["held_bytes"] * 2 == rows[0]["held_bytes"]
    assert all(r["peak_growth_bytes"] >= 0 and r["seconds"] > 0 for r in rows)
    assert "ours        float16" in capsys.readouterr().out
