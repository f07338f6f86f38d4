"""Start-up: what attncomp-codec answers without importing torch, and what CompressAI's import leaves out.

Each check runs in a fresh interpreter (this one has torch and compressai loaded long ago) and reads
``sys.modules``; timings are benchmarks/startup.py's business, not a test's.
"""

import ctypes
import json
import subprocess
import sys
import textwrap

import pytest

from attncomp import compressai_adapter
from attncomp.catalog import CATALOG
from attncomp.codec.container import Stream, pack


def fresh_python(code: str, *args) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object as its last line."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


# runs attncomp-codec's main for each argv given as JSON, noting after each whether torch was imported
RUN_CLI = """
    import contextlib, io, json, sys
    from attncomp.cli.codec import main
    report = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse: --help, usage errors
                status = exc.code
        report.append([argv, status, err.getvalue().strip(), "torch" in sys.modules])
    print(json.dumps(report))
"""


def test_help_info_and_user_mistakes_are_answered_without_torch(tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(b"not looked at: every case below stops before reading it")
    existing = tmp_path / "out.atc"
    existing.write_bytes(b"keep me")
    corrupt = tmp_path / "bad.atc"
    corrupt.write_bytes(b"ATNC" + bytes(40))
    stream = tmp_path / "s.atc"
    stream.write_bytes(pack(Stream("attn-hyperprior", 3, bytes(range(8)), 96, 64, "RGB", 1024, tiles=[((1, 2), [b"abc", b"de"])])))
    cases = {  # argv → (exit status, what stderr says)
        ("--help",): (0, ""),
        ("info", str(stream)): (0, ""),
        ("encode", "--help"): (0, ""),
        ("encode", str(tmp_path / "missing.png"), str(tmp_path / "a.atc")): (1, "no such file"),
        ("encode", str(image), str(existing)): (1, "exists; use --force to overwrite it"),
        ("encode", str(image), str(tmp_path / "no" / "a.atc")): (1, "does not exist"),
        ("encode", str(image), str(tmp_path / "a.atc"), "--model", "nonsense"): (2, "invalid choice: 'nonsense'"),
        ("encode", str(image), str(tmp_path / "a.atc"), "--weights", "w.pt", "--quality", "3"): (1, "weights file not found: w.pt"),
        ("encode", str(image), "-o", str(tmp_path / "nowhere")): (1, "nowhere does not exist"),
        ("encode", str(image), str(tmp_path / "a.atc"), "--max-bytes", "900", "--quality", "3"): (1, "drop --quality"),
        ("encode", str(image), str(tmp_path / "a.atc"), "--max-bytes", "900", "--model", "attn-hyperprior"): (
            1, "--max-bytes needs a variable-rate model"),
        ("decode", str(corrupt), str(tmp_path / "b.png")): (1, "corrupted or truncated"),  # refused by the container
        ("decode", str(corrupt), str(tmp_path / "b.xyz")): (1, "cannot tell the image format of"),
        ("info", str(corrupt)): (1, "corrupted or truncated"),
        ("frobnicate",): (2, "invalid choice: 'frobnicate'"),
    }
    report = fresh_python(RUN_CLI, json.dumps([list(argv) for argv in cases]))
    for argv, status, err, torch_loaded in report:
        expected_status, says = cases[tuple(argv)]
        assert not torch_loaded, f"attncomp-codec {' '.join(argv)} imported torch"
        assert status == expected_status and says in err, (argv, status, err)
        if status == 1:
            assert err.startswith("attncomp-codec: error:") and "\n" not in err, err


def test_every_model_the_cli_offers_without_torch_can_be_built():
    """The catalog's settings are valid constructor arguments of the class its kind names."""
    from attncomp.models import ZOO, create

    for name in CATALOG:
        assert isinstance(create(name), ZOO[name].cls)


def test_compressai_imports_without_torch_geometric_and_its_deferred_parts_still_work():
    """The guard of attncomp/compressai_adapter.py, against the installed CompressAI.

    If this fails after a CompressAI upgrade, the adapter fell back to normal imports (slower start-up,
    nothing wrong): see which module it no longer finds in DEFERRED there.
    """
    heavy = ["torch_geometric", "torchvision"]
    adapted = fresh_python(f"""
        import json, sys
        import attncomp.codec.codec, compressai.models
        from attncomp.compressai_adapter import deferred
        loaded = [name for name in {heavy!r} if name in sys.modules]
        scipy_deferred = deferred(sys.modules["scipy.stats"])
        import compressai, compressai.registry as registry, scipy.stats
        from compressai.transforms import RandomSample
        print(json.dumps(dict(loaded=loaded, scipy_deferred=scipy_deferred,
                              image_folder=compressai.datasets.ImageFolder.__name__,
                              norm=round(float(scipy.stats.norm.ppf(0.975)), 4),
                              transforms=sorted(registry.TRANSFORMS), datasets=sorted(registry.DATASETS))))
    """)
    assert not adapted["loaded"], (
        f"import attncomp.codec imported {adapted['loaded']}: attncomp/compressai_adapter.py no longer keeps "
        "CompressAI's point-cloud and dataset modules out (its layout changed?)"
    )
    assert adapted["scipy_deferred"], "compressai.entropy_models' scipy.stats import is no longer deferred"
    assert adapted["image_folder"] == "ImageFolder" and adapted["norm"] == 1.96
    plain = fresh_python("""
        import json, sys
        import compressai.registry as registry
        print(json.dumps(dict(transforms=sorted(registry.TRANSFORMS), datasets=sorted(registry.DATASETS))))
    """)
    assert adapted["transforms"] == plain["transforms"] and "RandomSample" in plain["transforms"]
    assert adapted["datasets"] == plain["datasets"]


@pytest.fixture
def deferrable(tmp_path, monkeypatch):
    """A package ``fakeai`` whose submodules say whether their body ran, deferred like CompressAI's."""
    package = tmp_path / "fakeai"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "data.py").write_text("import builtins\nbuiltins.fakeai_ran = True\nVALUE = 42\n")
    (package / "broken.py").write_text("raise ImportError('needs a package that is not installed')\n")
    (package / "registry.py").write_text("TABLE = {}\n")  # not the TRANSFORMS/register_transform we know
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(compressai_adapter, "DEFERRED", ("fakeai.data", "fakeai.broken", "fakeai.registry"))
    monkeypatch.setattr(compressai_adapter, "_REGISTRY", "fakeai.registry")
    compressai_adapter.install()
    yield
    for name in [name for name in sys.modules if name.startswith("fakeai")]:
        del sys.modules[name]
    import builtins

    vars(builtins).pop("fakeai_ran", None)


def test_a_deferred_module_runs_at_its_first_use(deferrable):
    import builtins

    import fakeai.data

    assert compressai_adapter.deferred(fakeai.data) and not hasattr(builtins, "fakeai_ran")
    assert fakeai.data.__file__.endswith("data.py")  # probes such as inspect's do not load it
    assert fakeai.data.VALUE == 42 and builtins.fakeai_ran
    assert not compressai_adapter.deferred(fakeai.data)


def test_dir_of_a_deferred_module_lists_its_names(deferrable):
    import fakeai.data

    assert "VALUE" in dir(fakeai.data)


def test_a_deferred_module_that_fails_raises_at_each_use(deferrable):
    import fakeai.broken

    for _ in range(2):
        with pytest.raises(ImportError, match="not installed"):
            fakeai.broken.anything  # noqa: B018


def test_a_registry_module_of_another_layout_is_imported_normally(deferrable):
    import fakeai.registry

    assert not compressai_adapter.deferred(fakeai.registry) and fakeai.registry.TABLE == {}


HAS_MALLINFO2 = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallinfo2")

# allocates and frees a 64 MB block, with glibc's defaults or after the CLI's reuse_freed_memory()
ALLOCATE_AND_FREE = """
    import ctypes, json, sys
    from attncomp.cli import reuse_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    reused = reuse_freed_memory() if sys.argv[1] == "reuse" else None
    block = libc.malloc(64 << 20)
    mapped = libc.mallinfo2().hblkhd
    libc.free(block)
    print(json.dumps({"reused": reused, "mapped": mapped, "kept": libc.mallinfo2().fordblks}))
"""


@pytest.mark.skipif(not HAS_MALLINFO2, reason="glibc ≥ 2.33 only")
def test_the_cli_keeps_freed_tile_activations_for_reuse_instead_of_unmapping_them():
    default = fresh_python(ALLOCATE_AND_FREE, "default")
    assert default["mapped"] >= 64 << 20  # glibc maps a block this large afresh and unmaps it when freed
    reuse = fresh_python(ALLOCATE_AND_FREE, "reuse")
    assert reuse["reused"] is True
    assert reuse["mapped"] < 64 << 20 and reuse["kept"] >= 64 << 20  # from the heap, and kept there once freed
