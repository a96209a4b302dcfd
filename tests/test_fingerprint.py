"""Tests for crystallize.fingerprint: canonical encoding, code, environment and file hashes.

Code tests write small user modules into ``tmp_path``, import them, edit the
file, ``importlib.reload`` and fingerprint again.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import hashlib
import importlib
import json
import math
import os
import platform
import struct
import sys
import textwrap
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd
import pytest
from blake3 import blake3

import crystallize.fingerprint as fingerprint
from crystallize.errors import FingerprintError, UnhashableValueError
from crystallize.fingerprint import (
    CodeFingerprint,
    FileHashCache,
    canonical,
    clear_code_cache,
    code_fingerprint,
    environment_fingerprint,
    resolve_declared_files,
    tagged_digest,
    value_digest,
)
from crystallize.fingerprint import files as files_module

WriteModule = Callable[[str, str], types.ModuleType]


@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """``write(name, source)`` writes ``tmp_path/name.py`` and imports (or reloads) it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    written: list[str] = []

    def write(name: str, source: str) -> types.ModuleType:
        path = tmp_path / f"{name}.py"
        previous = path.stat().st_mtime_ns if path.exists() else None
        path.write_text(textwrap.dedent(source))
        if previous is not None:  # make sure linecache and the import system see a new file
            os.utime(path, ns=(previous + 10**9, previous + 10**9))
        importlib.invalidate_caches()
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        written.append(name)
        return importlib.import_module(name)

    yield write
    for name in written:
        sys.modules.pop(name, None)


def digest_of(module: types.ModuleType, name: str = "step") -> str:
    return code_fingerprint(getattr(module, name)).digest


# -- canonical encoding ---------------------------------------------------------------------------


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass(frozen=True)
class Params:
    lr: float
    layers: tuple[int, ...] = (1, 2)


class Hooked:
    def __init__(self, token: bytes | str | int) -> None:
        self.token = token

    def __crystallize_fingerprint__(self) -> bytes | str | int:
        return self.token


class TestCanonical:
    def test_dict_order_does_not_matter(self) -> None:
        assert canonical({"a": 1, "b": [2, 3]}) == canonical({"b": [2, 3], "a": 1})
        assert canonical(OrderedDict(a=1, b=2)) == canonical({"b": 2, "a": 1})
        assert canonical({"a": 1}) != canonical({"a": 2})

    def test_list_and_tuple_differ(self) -> None:
        assert canonical([1, 2]) != canonical((1, 2))
        assert canonical([]) != canonical(())

    def test_numbers_of_different_types_differ(self) -> None:
        encodings = {canonical(1), canonical(1.0), canonical(True), canonical("1"), canonical(1 + 0j)}
        assert len(encodings) == 5
        assert canonical(0) != canonical(False)

    def test_float_details(self) -> None:
        assert canonical(0.0) != canonical(-0.0)
        other_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000123))[0]
        assert math.isnan(other_nan)
        assert canonical(float("nan")) == canonical(-float("nan")) == canonical(other_nan)
        assert canonical(0.1 + 0.2) != canonical(0.3)

    def test_containers_do_not_run_together(self) -> None:
        assert canonical(["ab", "c"]) != canonical(["a", "bc"])
        assert canonical([[1], [2]]) != canonical([[1, 2]])
        assert canonical(b"x") != canonical("x")

    def test_big_integers_beyond_the_str_digit_limit(self) -> None:
        big = 10**5000
        assert canonical(big) != canonical(big + 1)
        assert canonical(-1) != canonical(255)

    def test_sets_are_order_free(self) -> None:
        assert canonical({3, 1, 2}) == canonical({1, 2, 3}) == canonical(frozenset({2, 3, 1}))
        assert canonical({1, 2}) != canonical([1, 2])

    def test_paths_enums_dataclasses(self) -> None:
        assert canonical(Path("a/b")) == canonical(PurePosixPath("a/b"))
        assert canonical(PurePosixPath("a/b")) != canonical(PureWindowsPath("a/b"))
        assert canonical(Path("a/b")) != canonical("a/b")
        assert canonical(Color.RED) != canonical(Color.BLUE)
        assert canonical(Level.LOW) != canonical(1)
        assert canonical(Params(0.1)) == canonical(Params(0.1, (1, 2)))
        assert canonical(Params(0.1)) != canonical(Params(0.2))

    def test_dates_and_decimals(self) -> None:
        day = datetime.date(2024, 1, 2)
        assert canonical(day) != canonical(datetime.datetime(2024, 1, 2))
        assert canonical(datetime.timedelta(days=1)) == canonical(datetime.timedelta(hours=24))
        assert canonical(decimal.Decimal("1.10")) != canonical(decimal.Decimal("1.1"))

    def test_nested_unencodable_names_the_key_path(self) -> None:
        with pytest.raises(UnhashableValueError, match=r"'params\.model\[2\]'") as info:
            canonical({"model": [1, 2, object()]}, key="params")
        assert info.value.key == "params.model[2]"
        with pytest.raises(UnhashableValueError, match=r"'cfg\.inner\.x'"):
            canonical({"inner": {"x": object()}}, key="cfg")

    def test_unencodable_dataclass_field_and_top_level(self) -> None:
        with pytest.raises(UnhashableValueError, match=r"'p\.lr'"):
            canonical(Params(object()), key="p")  # type: ignore[arg-type]
        with pytest.raises(UnhashableValueError, match="type object"):
            canonical(object())

    def test_numpy_arrays_by_content(self) -> None:
        a = np.arange(12, dtype=np.float64).reshape(3, 4)
        assert canonical(a) == canonical(a.copy())
        assert canonical(a) != canonical(a + 1)
        assert canonical(a) != canonical(a.reshape(4, 3))
        assert canonical(a) != canonical(a.astype(np.float32))
        assert canonical(np.asfortranarray(a)) == canonical(a)
        assert canonical(a.astype(">f8")) == canonical(a)
        assert canonical(np.array(["x", None], dtype=object)) == canonical(np.array(["x", None], dtype=object))

    def test_numpy_scalars(self) -> None:
        assert canonical(np.float32(1.5)) != canonical(np.float64(1.5))
        assert canonical(np.int64(3)) == canonical(np.int64(3))
        assert canonical(np.int64(3)) != canonical(3)
        assert canonical({"k": np.str_("a")}) == canonical({"k": "a"})

    def test_pandas_by_content(self) -> None:
        frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        assert canonical(frame) == canonical(frame.copy())
        assert canonical(frame) != canonical(frame.assign(a=[1, 3]))
        assert canonical(frame) != canonical(frame.rename(columns={"a": "c"}))
        assert canonical(frame["a"]) != canonical(frame["a"].rename("z"))

    def test_hook_objects(self) -> None:
        assert canonical(Hooked(b"v1")) == canonical(Hooked("v1"))
        assert canonical(Hooked(b"v1")) != canonical(Hooked(b"v2"))
        with pytest.raises(FingerprintError, match="must return bytes or str"):
            canonical(Hooked(3))

    def test_functions_encode_their_code(self) -> None:
        def double(x: int) -> int:
            return 2 * x

        def triple(x: int) -> int:
            return 3 * x

        assert canonical(double) == canonical(double)
        assert canonical(double) != canonical(triple)
        assert canonical(functools.partial(double, 1)) != canonical(functools.partial(double, 2))
        assert canonical({"agg": len}) == canonical({"agg": len})

    def test_function_without_source_is_unhashable_at_its_key(self) -> None:
        namespace: dict[str, object] = {}
        exec("def made(): return 1", namespace)
        with pytest.raises(UnhashableValueError, match=r"'treat\.fn'"):
            canonical({"fn": namespace["made"]}, key="treat")


class TestDigests:
    def test_tagged_digest_domains_and_boundaries(self) -> None:
        assert len(tagged_digest("value", b"x")) == 64
        assert tagged_digest("value", b"x") != tagged_digest("step", b"x")
        assert tagged_digest("t", "ab", "c") != tagged_digest("t", "a", "bc")
        assert tagged_digest("t", "x") != tagged_digest("t", b"x")
        with pytest.raises(TypeError, match="bytes or str"):
            tagged_digest("t", 1)  # type: ignore[arg-type]

    def test_value_digest(self) -> None:
        assert value_digest({"a": 1}) == tagged_digest("value", canonical({"a": 1}))
        with pytest.raises(UnhashableValueError, match="'ctx'"):
            value_digest(object(), key="ctx")


# -- code fingerprints ----------------------------------------------------------------------------

STEP = '''
def step(data, factor=2):
    """Scale the data."""
    total = 0  # running sum
    for x in data:
        total += x * factor
    return total
'''

STEP_REWORDED = '''
def step(data,
         factor=2):
    # a new comment; the docstring is gone
    total = 0


    for x in data: total += x * factor
    return (total)
'''

STEP_CHANGED = STEP.replace("total += x * factor", "total += x * factor + 1")


class TestCodeFingerprintSource:
    def test_comment_docstring_and_formatting_edits_keep_the_digest(self, user_modules: WriteModule) -> None:
        before = digest_of(user_modules("steps_fmt", STEP))
        after = digest_of(user_modules("steps_fmt", STEP_REWORDED))
        assert before == after

    def test_body_edit_changes_the_digest(self, user_modules: WriteModule) -> None:
        before = digest_of(user_modules("steps_body", STEP))
        assert digest_of(user_modules("steps_body", STEP_CHANGED)) != before

    def test_default_value_edit_changes_the_digest(self, user_modules: WriteModule) -> None:
        before = digest_of(user_modules("steps_default", STEP))
        assert digest_of(user_modules("steps_default", STEP.replace("factor=2", "factor=3"))) != before

    def test_result_shape(self, user_modules: WriteModule) -> None:
        fp = code_fingerprint(user_modules("steps_shape", STEP).step)
        assert isinstance(fp, CodeFingerprint)
        assert len(fp.digest) == 64 and int(fp.digest, 16) >= 0
        assert fp.packages == () and fp.modules == ("steps_shape",)
        assert code_fingerprint(user_modules("steps_shape", STEP).step) == fp
        with pytest.raises(dataclasses.FrozenInstanceError):
            fp.digest = "x"  # type: ignore[misc]

    def test_decorators_are_stripped(self, user_modules: WriteModule) -> None:
        source = """
        def tag(label):
            return lambda fn: fn

        @tag("v1")
        def step(x):
            return x
        """
        before = digest_of(user_modules("steps_deco", source))
        assert digest_of(user_modules("steps_deco", source.replace('"v1"', '"v2"'))) == before

    def test_source_retrieval_is_cached_per_code_object(self, user_modules: WriteModule) -> None:
        module = user_modules("steps_cache", STEP)
        clear_code_cache()
        first = code_fingerprint(module.step)
        cached = fingerprint.code.function_static(module.step)
        assert code_fingerprint(module.step) == first
        assert fingerprint.code.function_static(module.step) is cached
        reloaded = user_modules("steps_cache", STEP_CHANGED)
        assert fingerprint.code.function_static(reloaded.step) is not cached


HELPERS = """
OFFSET = 10

def scale(x):
    return x * 2

def unrelated():
    return "not used by the step"
"""

STEP_WITH_HELPERS = """
import helpers_mod
from helpers_mod import scale

def local_helper(x):
    return x + 1

def step(x):
    return local_helper(scale(x)) + helpers_mod.OFFSET
"""


class TestCodeFingerprintReferences:
    def test_helper_in_same_module(self, user_modules: WriteModule) -> None:
        user_modules("helpers_mod", HELPERS)
        before = digest_of(user_modules("steps_same", STEP_WITH_HELPERS))
        edited = STEP_WITH_HELPERS.replace("return x + 1", "return x + 2")
        assert digest_of(user_modules("steps_same", edited)) != before

    def test_helper_in_another_user_module(self, user_modules: WriteModule) -> None:
        user_modules("helpers_mod", HELPERS)
        steps = user_modules("steps_other", STEP_WITH_HELPERS)
        before = digest_of(steps)
        assert code_fingerprint(steps.step).modules == ("helpers_mod", "steps_other")
        user_modules("helpers_mod", HELPERS.replace("x * 2", "x * 3"))
        steps = user_modules("steps_other", STEP_WITH_HELPERS)  # rebinds `from helpers_mod import scale`
        assert digest_of(steps) != before

    def test_attribute_access_sees_a_reloaded_module_without_reloading_the_step(
        self, user_modules: WriteModule
    ) -> None:
        user_modules("helpers_attr", "def compute(x):\n    return x\n")
        steps = user_modules("steps_attr", "import helpers_attr\n\ndef step(x):\n    return helpers_attr.compute(x)\n")
        before = digest_of(steps)
        user_modules("helpers_attr", "def compute(x):\n    return -x\n")
        assert digest_of(steps) != before

    def test_unrelated_edit_in_helper_module_keeps_the_digest(self, user_modules: WriteModule) -> None:
        user_modules("helpers_mod", HELPERS)
        steps = user_modules("steps_unrel", STEP_WITH_HELPERS)
        before = digest_of(steps)
        user_modules("helpers_mod", HELPERS.replace("not used by the step", "still unused"))
        assert digest_of(user_modules("steps_unrel", STEP_WITH_HELPERS)) == before

    def test_module_constant(self, user_modules: WriteModule) -> None:
        source = "THRESHOLD = 0.5\nLIMITS = {'lo': 1, 'hi': [2, 3]}\n\n"
        source += "def step(x):\n    return x > THRESHOLD and LIMITS\n"
        before = digest_of(user_modules("steps_const", source))
        assert digest_of(user_modules("steps_const", source.replace("0.5", "0.25"))) != before
        assert digest_of(user_modules("steps_const", source.replace("[2, 3]", "[2, 4]"))) != before
        module = user_modules("steps_const", source)
        assert digest_of(module) == before
        module.THRESHOLD = 0.75  # rebinding at run time is seen too: globals are read on every call
        assert digest_of(module) != before

    def test_mutable_global_is_fingerprinted_by_its_defining_statement(self, user_modules: WriteModule) -> None:
        source = "CALLS = {'n': 0}\nTABLE = {'lo': 1}\n\ndef step(x):\n    CALLS['n'] += 1\n    return x + TABLE['lo']\n"
        module = user_modules("steps_mutable", source)
        before = digest_of(module)
        module.step(1)
        module.step(2)  # the counter changes at run time: not an edit
        assert module.CALLS == {"n": 2}
        assert digest_of(module) == before
        assert digest_of(user_modules("steps_mutable", source.replace("'lo': 1", "'lo': 2"))) != before

    def test_constant_in_another_module(self, user_modules: WriteModule) -> None:
        user_modules("helpers_mod", HELPERS)
        steps = user_modules("steps_oconst", STEP_WITH_HELPERS)
        before = digest_of(steps)
        user_modules("helpers_mod", HELPERS.replace("OFFSET = 10", "OFFSET = 11"))
        assert digest_of(steps) != before

    def test_class_methods_and_helpers_they_call(self, user_modules: WriteModule) -> None:
        source = """
        def norm(x):
            return abs(x)

        class Model:
            def fit(self, x):
                return norm(x)

        def step(x):
            return Model().fit(x)
        """
        before = digest_of(user_modules("steps_cls", source))
        assert digest_of(user_modules("steps_cls", source.replace("abs(x)", "abs(x) + 1"))) != before
        assert digest_of(user_modules("steps_cls", source.replace("return norm(x)", "return -norm(x)"))) != before
        module = user_modules("steps_cls", source)
        assert code_fingerprint(module.Model).digest != code_fingerprint(module.step).digest

    def test_mutual_recursion_and_self_reference(self, user_modules: WriteModule) -> None:
        source = """
        def even(n):
            return True if n == 0 else odd(n - 1)

        def odd(n):
            return False if n == 0 else even(n - 1)

        TABLE = {"even": even}

        def step(n):
            return TABLE["even"](n) and step
        """
        module = user_modules("steps_cycle", source)
        before = digest_of(module)
        assert digest_of(user_modules("steps_cycle", source.replace("even(n - 1)", "even(n - 2)"))) != before

    def test_wrapped_helper_is_followed(self, user_modules: WriteModule) -> None:
        source = """
        import functools

        @functools.lru_cache(maxsize=None)
        def cached(x):
            return x + 1

        def step(x):
            return cached(x)
        """
        before = digest_of(user_modules("steps_wrapped", source))
        assert digest_of(user_modules("steps_wrapped", source.replace("x + 1", "x + 2"))) != before

    def test_unencodable_globals_are_noted_not_fatal(self, user_modules: WriteModule) -> None:
        source = "import threading\nLOCK = threading.Lock()\n\ndef step(x):\n    with LOCK:\n        return x\n"
        fp = code_fingerprint(user_modules("steps_lock", source).step)
        assert fp.packages == ()

    def test_instances_of_user_classes_contribute_class_and_state(self, user_modules: WriteModule) -> None:
        source = """
        import threading

        class Scaler:
            def __init__(self, factor):
                self.factor = factor
                self.lock = threading.Lock()

            def __call__(self, x):
                return x * self.factor

        SCALER = Scaler(2)

        def step(x):
            return SCALER(x)
        """
        module = user_modules("steps_inst", source)
        before = digest_of(module)
        assert code_fingerprint(module.Scaler(2)) == code_fingerprint(module.Scaler(2))
        assert code_fingerprint(module.Scaler(2)) != code_fingerprint(module.Scaler(3))
        assert digest_of(user_modules("steps_inst", source.replace("Scaler(2)", "Scaler(3)"))) != before
        assert digest_of(user_modules("steps_inst", source.replace("x * self", "x + self"))) != before

    def test_long_helper_chain_edit_at_the_far_end(self, user_modules: WriteModule) -> None:
        source = "".join(f"def f{i}(x):\n    return f{i + 1}(x)\n\n" for i in range(200))
        source += "def f200(x):\n    return x\n"
        before = digest_of(user_modules("chain_short", source), "f0")
        edited = source.replace("def f200(x):\n    return x", "def f200(x):\n    return -x")
        assert digest_of(user_modules("chain_short", edited), "f0") != before

    def test_ten_thousand_function_chain_needs_no_recursion(self, user_modules: WriteModule) -> None:
        count = 10_000
        source = "".join(f"def f{i}(x):\n    return f{i + 1}(x)\n" for i in range(count))
        module = user_modules("chain_long", source + f"def f{count}(x):\n    return x\n")
        fp = code_fingerprint(module.f0)
        assert fp.modules == ("chain_long",)
        assert code_fingerprint(module.f0) == fp


LAMBDAS = """
def make(value):
    return lambda ctx: ctx + value

CLOSURES = [make(v) for v in (1, 2, 1)]
SAME_LINE = [(lambda v: lambda ctx: ctx * v)(v) for v in (1, 2, 1)]
DEFAULTS = [lambda ctx, v=v: ctx - v for v in (1, 2, 1)]
"""


class TestCodeFingerprintLambdas:
    @pytest.mark.parametrize("name", ["CLOSURES", "SAME_LINE", "DEFAULTS"])
    def test_loop_of_lambdas_differs_by_captured_value(self, user_modules: WriteModule, name: str) -> None:
        one, two, one_again = (code_fingerprint(f).digest for f in getattr(user_modules("lambdas", LAMBDAS), name))
        assert one != two
        assert one == one_again

    def test_lambda_body_edit_and_comment(self, user_modules: WriteModule) -> None:
        source = "STEP = lambda x: x + 1\n"
        before = code_fingerprint(user_modules("lambda_edit", source).STEP).digest
        commented = "# comment\nSTEP = lambda x: x + 1  # trailing\n"
        assert code_fingerprint(user_modules("lambda_edit", commented).STEP).digest == before
        assert code_fingerprint(user_modules("lambda_edit", "STEP = lambda x: x + 2\n").STEP).digest != before

    def test_same_line_lambdas_with_different_bodies(self, user_modules: WriteModule) -> None:
        module = user_modules("lambda_pair", "PAIR = (lambda x: x + 1, lambda x: x + 2)\n")
        first, second = (code_fingerprint(f).digest for f in module.PAIR)
        assert first != second


class TestCodeFingerprintVersion:
    def test_version_overrides_source(self, user_modules: WriteModule) -> None:
        before = code_fingerprint(user_modules("steps_ver", STEP).step, version="1")
        after = code_fingerprint(user_modules("steps_ver", STEP_CHANGED).step, version="1")
        assert before == after
        assert before.packages == () and before.modules == ()
        assert code_fingerprint(user_modules("steps_ver", STEP).step, version="2") != before
        assert before.digest != code_fingerprint(user_modules("steps_ver", STEP).step).digest

    def test_version_makes_sourceless_code_fingerprintable(self) -> None:
        namespace: dict[str, object] = {}
        exec("def made(x):\n    return x\n", namespace)
        assert len(code_fingerprint(namespace["made"], version="1").digest) == 64  # type: ignore[arg-type]
        assert code_fingerprint(len, version="1") != code_fingerprint(len, version="2")


class TestCodeFingerprintOutside:
    def test_third_party_contributes_package_not_code(self, user_modules: WriteModule) -> None:
        source = """
        import numpy as np
        from numpy.linalg import norm

        def step(x):
            return np.mean(x) + norm(x) + np.random.default_rng(0).random()
        """
        started = time.perf_counter()
        fp = code_fingerprint(user_modules("steps_np", source).step)
        elapsed = time.perf_counter() - started
        assert fp.packages == (("numpy", np.__version__),)
        assert fp.modules == ("steps_np",)
        assert elapsed < 2.0  # numpy's own source is never read

    def test_package_upgrade_does_not_change_the_code_digest(
        self, user_modules: WriteModule, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        module = user_modules("steps_np2", "import numpy as np\n\ndef step(x):\n    return np.mean(x)\n")
        before = code_fingerprint(module.step)
        monkeypatch.setitem(fingerprint.environment.CODE_CACHE.packages, "numpy", ("numpy", "0.0.1"))
        after = code_fingerprint(module.step)
        assert after.digest == before.digest
        assert after.packages == (("numpy", "0.0.1"),)

    def test_stdlib_contributes_nothing(self, user_modules: WriteModule) -> None:
        source = "import json, os\nfrom math import sqrt\n\n"
        source += "def step(x):\n    return json.dumps(os.path.join('a', str(sqrt(x))))\n"
        fp = code_fingerprint(user_modules("steps_std", source).step)
        assert fp.packages == () and fp.modules == ("steps_std",)

    def test_function_made_by_exec_needs_version(self) -> None:
        namespace: dict[str, object] = {}
        exec("def made(x):\n    return x\n", namespace)
        with pytest.raises(FingerprintError, match="version="):
            code_fingerprint(namespace["made"])  # type: ignore[arg-type]

    def test_helper_made_by_exec_needs_version(self, user_modules: WriteModule) -> None:
        source = "NS = {}\nexec('def made(x):\\n    return x\\n', NS)\nmade = NS['made']\n\n"
        source += "def step(x):\n    return made(x)\n"
        with pytest.raises(FingerprintError, match=r"version=.*referenced by steps_exec\.step"):
            digest_of(user_modules("steps_exec", source))

    def test_builtins_and_non_callables(self) -> None:
        with pytest.raises(FingerprintError, match="version="):
            code_fingerprint(len)
        with pytest.raises(FingerprintError, match="expects a function"):
            code_fingerprint(3)  # type: ignore[arg-type]

    def test_stdlib_function_as_root(self) -> None:
        assert code_fingerprint(json.dumps).packages == ()


class TestEnvironment:
    def test_python_then_sorted_packages(self) -> None:
        env = environment_fingerprint([("scipy", "1.0"), ("numpy", "2.0"), ("numpy", "2.0")])
        assert env == {"python": platform.python_version(), "numpy": "2.0", "scipy": "1.0"}
        assert list(env) == ["python", "numpy", "scipy"]

    def test_from_code_fingerprint(self, user_modules: WriteModule) -> None:
        module = user_modules("steps_env", "import numpy as np\n\ndef step(x):\n    return np.sum(x)\n")
        env = environment_fingerprint(code_fingerprint(module.step).packages)
        assert env["numpy"] == np.__version__


# -- input files ----------------------------------------------------------------------------------


@pytest.fixture
def read_counter(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every file FileHashCache actually reads."""
    reads: list[Path] = []
    real = files_module.file_digest

    def counting(path: Path) -> str:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(files_module, "file_digest", counting)
    return reads


def age(path: Path, seconds: float = 10.0) -> None:
    """Set a file's mtime into the past, so its hash is not racy."""
    stamp = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(stamp, stamp))


class TestFileHashCache:
    def test_digest_is_blake3_of_content(self, tmp_path: Path) -> None:
        data = tmp_path / "data.bin"
        data.write_bytes(b"x" * (3 * (1 << 20) + 7))
        assert FileHashCache(None).digest(data) == blake3(data.read_bytes()).hexdigest()

    def test_content_change_gives_a_new_digest(self, tmp_path: Path) -> None:
        data = tmp_path / "data.csv"
        data.write_text("a\n1\n")
        age(data)
        cache = FileHashCache(None)
        before = cache.digest(data)
        data.write_text("a\n2\n")
        assert cache.digest(data) != before

    def test_unchanged_aged_file_is_not_reread(self, tmp_path: Path, read_counter: list[Path]) -> None:
        data = tmp_path / "data.csv"
        data.write_text("a\n1\n")
        age(data)
        cache = FileHashCache(tmp_path / "cache.json")
        first = cache.digest(data)
        assert cache.digest(data) == first
        assert len(read_counter) == 1
        cache.save()
        assert FileHashCache(tmp_path / "cache.json").digest(data) == first
        assert len(read_counter) == 1  # the saved entry is trusted by a new process too

    def test_mtime_only_change_keeps_the_digest(self, tmp_path: Path, read_counter: list[Path]) -> None:
        data = tmp_path / "data.csv"
        data.write_text("a\n1\n")
        age(data, 20)
        cache = FileHashCache(None)
        before = cache.digest(data)
        age(data, 10)  # touched, same bytes
        assert cache.digest(data) == before
        assert len(read_counter) == 2  # the stat changed, so it was read once more
        assert cache.digest(data) == before
        assert len(read_counter) == 2  # and the refreshed entry is trusted again

    def test_racy_entry_is_rehashed(self, tmp_path: Path, read_counter: list[Path]) -> None:
        data = tmp_path / "data.csv"
        data.write_text("value=1\n")
        stat = data.stat()
        cache = FileHashCache(None)
        before = cache.digest(data)  # hashed within 2 s of the file's mtime: racy
        data.write_text("value=2\n")  # same size; now restore the very same mtime
        os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert data.stat().st_size == stat.st_size
        assert cache.digest(data) != before
        assert len(read_counter) == 2

    def test_aged_entry_trusts_the_stat(self, tmp_path: Path, read_counter: list[Path]) -> None:
        # the other side of the racy rule: outside the window an identical stat is believed
        data = tmp_path / "data.csv"
        data.write_text("value=1\n")
        age(data)
        stat = data.stat()
        cache = FileHashCache(None)
        before = cache.digest(data)
        data.write_text("value=2\n")
        os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert cache.digest(data) == before
        assert len(read_counter) == 1

    def test_missing_file_is_named(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.csv"
        with pytest.raises(FileNotFoundError, match=r"nope\.csv") as info:
            FileHashCache(None).digest(missing)
        assert info.value.filename == str(missing)

    def test_a_cache_of_sha256_digests_is_not_trusted(self, tmp_path: Path, read_counter: list[Path]) -> None:
        data = tmp_path / "data.csv"
        data.write_text("x")
        age(data)
        stat = data.stat()
        cache_file = tmp_path / "hashes.json"
        old = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino,
               "digest": hashlib.sha256(b"x").hexdigest(), "recorded_ns": time.time_ns()}
        cache_file.write_text(json.dumps({"schema": 1, "files": {str(data.resolve()): old}}))
        assert FileHashCache(cache_file).digest(data) == blake3(b"x").hexdigest()
        assert read_counter == [data.resolve()]

    def test_save_writes_json_atomically(self, tmp_path: Path) -> None:
        data = tmp_path / "data.csv"
        data.write_text("x")
        cache_file = tmp_path / "state" / "hashes.json"
        cache = FileHashCache(cache_file)
        digest = cache.digest(data)
        cache.save()
        saved = json.loads(cache_file.read_text())
        assert saved["schema"] == 2
        assert saved["files"][str(data.resolve())]["digest"] == digest
        assert sorted(p.name for p in cache_file.parent.iterdir()) == ["hashes.json"]

    def test_save_merges_with_other_writers(self, tmp_path: Path) -> None:
        first, second = tmp_path / "a.txt", tmp_path / "b.txt"
        first.write_text("a")
        second.write_text("b")
        cache_file = tmp_path / "hashes.json"
        one, two = FileHashCache(cache_file), FileHashCache(cache_file)
        one.digest(first)
        two.digest(second)
        one.save()
        two.save()
        assert set(json.loads(cache_file.read_text())["files"]) == {str(first.resolve()), str(second.resolve())}

    def test_unreadable_cache_file_starts_empty(self, tmp_path: Path) -> None:
        cache_file = tmp_path / "hashes.json"
        cache_file.write_text("{not json")
        data = tmp_path / "data.csv"
        data.write_text("x")
        cache = FileHashCache(cache_file)
        assert cache.digest(data) == blake3(b"x").hexdigest()
        cache.save()
        assert json.loads(cache_file.read_text())["schema"] == 2

    def test_in_memory_cache_saves_nothing(self, tmp_path: Path) -> None:
        data = tmp_path / "data.csv"
        data.write_text("x")
        cache = FileHashCache(None)
        cache.digest(data)
        cache.save()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]

    def test_symlinks_share_an_entry(self, tmp_path: Path, read_counter: list[Path]) -> None:
        data = tmp_path / "data.csv"
        data.write_text("x")
        age(data)
        link = tmp_path / "link.csv"
        link.symlink_to(data)
        cache = FileHashCache(None)
        assert cache.digest(link) == cache.digest(data)
        assert len(read_counter) == 1


class TestResolveDeclaredFiles:
    def test_relative_and_absolute(self, tmp_path: Path) -> None:
        absolute = tmp_path / "abs.csv"
        resolved = resolve_declared_files(["data/x.csv", Path("y.csv"), str(absolute)], tmp_path / "proj")
        assert resolved == (tmp_path / "proj" / "data" / "x.csv", tmp_path / "proj" / "y.csv", absolute)

    def test_rejects_other_types(self, tmp_path: Path) -> None:
        with pytest.raises(TypeError, match="must be a str or path"):
            resolve_declared_files([3], tmp_path)  # type: ignore[list-item]


def test_public_names() -> None:
    assert sorted(fingerprint.__all__) == [
        "CodeFingerprint",
        "FileHashCache",
        "canonical",
        "clear_code_cache",
        "code_fingerprint",
        "environment_fingerprint",
        "resolve_declared_files",
        "tagged_digest",
        "value_digest",
    ]
