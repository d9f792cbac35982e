"""Helpers for the EuXFEL interop tests: binaries, example runs, comparisons."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def rust_bin(name):
    p = target_dir() / "debug" / name
    if not p.exists():
        raise FileNotFoundError(
            f"{p} not found: build it first with `cargo build --workspace --bins`"
        )
    return str(p)


def py_tool(name):
    p = VENV_BIN / name
    return str(p) if p.exists() else name


def run(cmd, cwd=None, env=None, timeout=600):
    """Run a command, return (exit code, stdout, stderr)."""
    r = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
        errors="replace", timeout=timeout,
    )
    return r.returncode, r.stdout, r.stderr


def lsxfel_both(args, cwd=None):
    """Run EXtra-data's lsxfel and ours (without the run map, so neither sees the
    other's cache) and return both results."""
    ours = run([rust_bin("lsxfel"), "--no-cache", *args], cwd=cwd)
    theirs = run([py_tool("lsxfel"), *args], cwd=cwd)
    return theirs, ours


def make_examples(root):
    """Write the EXtra-data example runs the issue names into `root`."""
    from extra_data.tests import make_examples as me

    root = Path(root)
    paths = {}
    for name, fn, kw in [
        ("fxe05", me.make_fxe_run, {}),
        ("fxe12", me.make_fxe_run, {"format_version": "1.2"}),
        ("spb10", me.make_spb_run, {"format_version": "1.0"}),
    ]:
        d = root / name
        d.mkdir()
        fn(str(d), **kw)
        paths[name] = d
    paths["sa3_13"] = root / "RAW-R0450-DA01-S00001.h5"
    me.make_sa3_da_file(str(paths["sa3_13"]), format_version="1.3")
    paths["agipd_old"] = root / "CORR-R9999-AGIPD07-S00000.h5"
    me.make_agipd_example_file(str(paths["agipd_old"]), format_version="1.0")
    paths["modern_proc"] = root / "modern_proc"
    paths["modern_proc"].mkdir()
    me.make_modern_spb_proc_run(str(paths["modern_proc"]))
    paths["reduced_spb"] = root / "reduced_spb"
    paths["reduced_spb"].mkdir()
    me.make_reduced_spb_run(str(paths["reduced_spb"]))
    return paths


def make_rust_fixture(out, *args):
    code, so, se = run([rust_bin("make-fixtures"), str(out), *args])
    assert code == 0, se
    return Path(out)


def side_by_side(script, args, tmp_path, cwd=None):
    """(EXtra-data's results, photon_daq's): `python SCRIPT IMPL OUT.pkl ARGS...` for both
    implementations, run at the same time, each pickling its results to OUT.pkl."""
    import pickle
    import sys
    outs = [tmp_path / "theirs.pkl", tmp_path / "ours.pkl"]
    procs = [subprocess.Popen([sys.executable, str(script), impl, str(out), *map(str, args)],
                              cwd=cwd)
             for impl, out in zip(["extra_data", "photon_daq"], outs)]
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0], f"exit codes (extra_data, photon_daq): {codes}"
    loaded = []
    for out in outs:
        with open(out, "rb") as f:
            loaded.append(pickle.load(f))
    return loaded
