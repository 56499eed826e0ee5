import platform
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_platform_is_the_standard_library():
    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert platform.python_version()


def test_platform_dir_is_a_source_root_not_a_package():
    assert (ROOT / "platform" / "shardline" / "__init__.py").is_file()
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_shardline_imports_from_the_source_root():
    import shardline

    assert Path(shardline.__file__).resolve().parent == ROOT / "platform" / "shardline"
