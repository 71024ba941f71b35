"""`serinus profile`: data formats, the feature mapping rule, and its errors, on real models."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from serinus_operator.cli import main
from serinus_serving.drift.build import BuildError, ProfileOptions, build_profile
from serinus_serving.drift.columns import ColumnError, input_columns, output_columns
from serinus_serving.drift.data import DataError, read_table
from serinus_serving.drift.profile import CategoricalReference, NumericReference, read_profile
from serinus_serving.runtime.base import TensorSpec
from unit.drift.kit import image_model, regressor

pytestmark = pytest.mark.unit


def write_csv(path: Path, header: list[str], rows: np.ndarray | list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows.tolist() if isinstance(rows, np.ndarray) else rows)
    return path


@pytest.fixture(scope="module")
def train() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(3000, 20)).astype(np.float32)


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory: pytest.TempPathFactory, train: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.csv"
    return write_csv(path, [f"f{i}" for i in range(20)], train)


# ---------------------------------------------------------------------------- columns rule
def spec(name: str, datatype: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, datatype, tuple(shape))


def test_a_single_2d_input_gives_one_feature_per_column_named_by_the_data() -> None:
    columns = input_columns([spec("X", "FP32", -1, 3)], names=["age", "income", "score"])
    assert [(c.name, c.selector.index, c.kind) for c in columns] == [
        ("age", 0, "numeric"),
        ("income", 1, "numeric"),
        ("score", 2, "numeric"),
    ]
    assert [c.name for c in input_columns([spec("X", "FP32", -1, 2)])] == ["X[0]", "X[1]"]
    assert [c.name for c in input_columns([spec("X", "FP32", -1, -1)], widths={"X": 2})] == [
        "X[0]",
        "X[1]",
    ]


def test_several_inputs_give_one_feature_per_input() -> None:
    columns = input_columns(
        [
            spec("age", "FP32", -1),
            spec("city", "BYTES", -1, 1),
            spec("member", "BOOL", -1),
            spec("visits", "INT64", -1, 1),
            spec("img", "FP32", -1, 3, 8, 8),
        ],
        categorical={"visits"},
    )
    assert [(c.name, c.kind) for c in columns] == [
        ("age", "numeric"),
        ("city", "categorical"),
        ("member", "categorical"),
        ("visits", "categorical"),
        ("img:mean", "numeric"),
    ]
    assert columns[-1].selector.reduce == "mean"


@pytest.mark.parametrize(
    ("specs", "kwargs", "message"),
    [
        ([spec("X", "FP32", -1, 3)], {"names": ["a"]}, "has 3 columns but 1 feature names"),
        ([spec("a", "FP32", -1), spec("b", "FP32", -1)], {"names": ["x"]}, "only input is 2-D"),
        ([spec("X", "FP32", -1, 2)], {"categorical": ["nope"]}, "not features of this model"),
        ([spec("X", "FP32", -1, 2)], {"names": ["a", "a"]}, "two columns are named 'a'"),
        ([spec("X", "FP32", -1, -1)], {}, "dynamic second dimension"),
        ([spec("s", "FP32")], {}, "scalar"),
        ([spec("t", "BYTES", -1, 2, 2)], {}, "BYTES tensor of rank 3"),
    ],
)
def test_column_rule_errors(
    specs: list[TensorSpec], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ColumnError, match=message):
        input_columns(specs, **kwargs)  # type: ignore[arg-type]


def test_output_columns() -> None:
    columns = output_columns(
        [
            spec("label", "INT64", -1),
            spec("probabilities", "FP32", -1, 2),
            spec("embedding", "FP32", -1, 64),
            spec("value", "FP32", -1, 1),
            spec("map", "FP32", -1, 2, 2),
        ],
        widths={},
    )
    assert [(c.name, c.kind) for c in columns] == [
        ("label", "categorical"),
        ("probabilities[0]", "numeric"),
        ("probabilities[1]", "numeric"),
        ("value", "numeric"),
    ]


# ---------------------------------------------------------------------------- building
def test_profile_from_csv(logreg_path: Path, train_csv: Path) -> None:
    profile = build_profile(str(logreg_path), train_csv, ProfileOptions())
    assert profile.model_sha256 == hashlib.sha256(logreg_path.read_bytes()).hexdigest()
    assert profile.rows == 3000
    assert profile.source == "train.csv"
    assert [f.name for f in profile.features] == [f"f{i}" for i in range(20)]
    first = profile.features[0]
    assert isinstance(first, NumericReference)
    assert first.selector.tensor == "X" and first.selector.index == 0
    assert np.allclose(first.proportions, 0.1, atol=0.002)
    assert first.cdf[-1] == 1
    assert [o.name for o in profile.outputs] == ["label", "probabilities[0]", "probabilities[1]"]
    assert profile.target is not None and profile.target.task == "classification"
    label = profile.outputs[0]
    assert isinstance(label, CategoricalReference)
    assert set(label.values) == {0, 1}


def test_features_pick_and_order_csv_columns(
    tmp_path: Path, logreg_path: Path, train: np.ndarray
) -> None:
    extra = np.column_stack([np.arange(len(train)), train, np.zeros(len(train))])
    header = ["id", *[f"f{i}" for i in range(20)], "y"]
    path = write_csv(tmp_path / "wide.csv", header, extra)
    with pytest.raises(BuildError, match="takes 20 columns, the data has 22 columns; name the"):
        build_profile(str(logreg_path), path, ProfileOptions())
    names = [f"f{i}" for i in range(20)]
    profile = build_profile(str(logreg_path), path, ProfileOptions(features=names))
    assert [f.name for f in profile.features] == names
    with pytest.raises(BuildError, match=r"no column\(s\) \['nope'\]"):
        build_profile(str(logreg_path), path, ProfileOptions(features=[*names[:19], "nope"]))


def test_profile_from_npy_and_parquet(tmp_path: Path, logreg_path: Path, train: np.ndarray) -> None:
    np.save(tmp_path / "train.npy", train)
    profile = build_profile(str(logreg_path), tmp_path / "train.npy", ProfileOptions())
    assert profile.features[3].name == "X[3]"
    named = build_profile(
        str(logreg_path),
        tmp_path / "train.npy",
        ProfileOptions(features=[f"c{i}" for i in range(20)]),
    )
    assert named.features[3].name == "c3"
    np.save(tmp_path / "narrow.npy", train[:, :5])
    with pytest.raises(BuildError, match=r"takes 20 columns, the data has 5 \.npy columns"):
        build_profile(str(logreg_path), tmp_path / "narrow.npy", ProfileOptions())

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({f"f{i}": train[:, i] for i in range(20)})
    pq.write_table(table, tmp_path / "train.parquet")
    from_parquet = build_profile(str(logreg_path), tmp_path / "train.parquet", ProfileOptions())
    assert [f.name for f in from_parquet.features] == [f"f{i}" for i in range(20)]
    assert np.allclose(from_parquet.features[0].proportions, profile.features[0].proportions)


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    real = importlib.import_module

    def no_pyarrow(name: str, *args: object) -> object:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", no_pyarrow)
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"needs pyarrow.*pip install 'serinus\[parquet\]'"):
        read_table(path)


def test_a_model_with_several_inputs(tmp_path: Path, mixed_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = 500
    header = ["x_fp64[0]", "x_fp64[1]", "x_fp64[2]", "x_i32[0]", "x_i32[1]", "x_i64", "flag"]
    data = [
        [*rng.normal(size=3).tolist(), *rng.integers(0, 9, 2).tolist(), int(rng.integers(0, 3)),
         "true" if rng.random() < 0.3 else "false"]
        for _ in range(rows)
    ]  # fmt: skip
    path = write_csv(tmp_path / "mixed.csv", header, data)
    profile = build_profile(str(mixed_path), path, ProfileOptions(categorical={"x_i64"}))
    kinds = {f.name: f.kind for f in profile.features}
    assert kinds == {
        "x_fp64[0]": "numeric",
        "x_fp64[1]": "numeric",
        "x_fp64[2]": "numeric",
        "x_i32[0]": "numeric",
        "x_i32[1]": "numeric",
        "x_i64": "categorical",
        "flag": "categorical",
    }
    flag = next(f for f in profile.features if f.name == "flag")
    assert isinstance(flag, CategoricalReference)
    assert set(flag.values) == {True, False}
    shares = dict(zip(flag.values, flag.proportions.tolist(), strict=False))
    assert shares[True] == pytest.approx(0.3, abs=0.06)

    np.save(
        tmp_path / "mixed.npy",
        np.array([[float(v == "true") if isinstance(v, str) else v for v in row] for row in data]),
    )
    from_npy = build_profile(str(mixed_path), tmp_path / "mixed.npy", ProfileOptions())
    assert [f.name for f in from_npy.features] == list(kinds)

    with pytest.raises(BuildError, match="--features applies to a model whose only input is 2-D"):
        build_profile(str(mixed_path), path, ProfileOptions(features=["a"]))


def test_strings_and_images(tmp_path: Path, strings_path: Path) -> None:
    write_csv(tmp_path / "text.csv", ["text"], [["red"], ["blue"], ["red"], ["red"]])
    profile = build_profile(str(strings_path), tmp_path / "text.csv", ProfileOptions())
    (text,) = profile.features
    assert isinstance(text, CategoricalReference)
    assert dict(zip(text.values, text.proportions.tolist(), strict=False)) == {
        "red": 0.75,
        "blue": 0.25,
    }
    assert profile.target is not None and profile.target.output == "echo"

    model = image_model(tmp_path / "image.onnx")
    np.save(tmp_path / "images.npy", np.random.default_rng(2).random((200, 3, 4, 4), np.float32))
    images = build_profile(str(model), tmp_path / "images.npy", ProfileOptions())
    assert [f.name for f in images.features] == ["img:mean"]
    assert images.features[0].selector.reduce == "mean"
    assert images.target is not None and images.target.task == "regression"


def test_npz_keyed_by_input(tmp_path: Path, mixed_path: Path) -> None:
    rng = np.random.default_rng(3)
    np.savez(
        tmp_path / "mixed.npz",
        x_fp64=rng.normal(size=(50, 3)),
        x_i32=rng.integers(0, 5, size=(50, 2)),
        x_i64=rng.integers(0, 5, size=50),
        flag=rng.random(50) < 0.5,
    )
    profile = build_profile(str(mixed_path), tmp_path / "mixed.npz", ProfileOptions())
    assert len(profile.features) == 7


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.txt", "a\n1\n", "unknown data format '.txt'"),
        ("t.csv", "", "empty CSV"),
        ("t.csv", "a,b\n", "no data rows"),
        ("t.csv", "a,a\n1,2\n", "names a column twice"),
        ("t.csv", "a,b\n1\n", "t.csv:2: 1 fields, the header has 2"),
        ("t.npy", "not numpy", "not a readable numpy file"),
    ],
)
def test_unreadable_data(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_bad_values_name_the_column(tmp_path: Path, logreg_path: Path, train: np.ndarray) -> None:
    rows = train[:10].tolist()
    rows[3][4] = "oops"
    path = write_csv(tmp_path / "bad.csv", [f"f{i}" for i in range(20)], rows)
    with pytest.raises(BuildError, match="column 'f4': 'oops' is not a number"):
        build_profile(str(logreg_path), path, ProfileOptions())


def test_missing_values_are_counted(tmp_path: Path, logreg_path: Path, train: np.ndarray) -> None:
    rows: list[list[object]] = train[:100].tolist()
    for row in rows[:10]:
        row[0] = ""
    path = write_csv(tmp_path / "gaps.csv", [f"f{i}" for i in range(20)], rows)
    profile = build_profile(str(logreg_path), path, ProfileOptions())
    assert profile.features[0].missing == 10
    assert profile.features[0].count == 90


def test_max_rows_samples(logreg_path: Path, train_csv: Path) -> None:
    profile = build_profile(str(logreg_path), train_csv, ProfileOptions(max_rows=500))
    assert profile.rows == 500


# ---------------------------------------------------------------------------- the command
def test_serinus_profile_writes_a_profile(
    tmp_path: Path, logreg_path: Path, train_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "profile.json"
    code = main(["profile", "--model", str(logreg_path), "--data", str(train_csv), "-o", str(out)])
    assert code == 0
    assert read_profile(out).rows == 3000
    assert "20 features" in capsys.readouterr().err


def test_serinus_profile_explains_bad_input(
    tmp_path: Path, logreg_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "profile.json"
    missing = tmp_path / "missing.csv"
    code = main(["profile", "--model", str(logreg_path), "--data", str(missing), "-o", str(out)])
    assert code == 2
    assert f"serinus profile: {missing}: no such file" in capsys.readouterr().err
    code = main(
        ["profile", "--model", str(tmp_path / "nope.onnx"), "--data", str(missing), "-o", str(out)]
    )
    assert code == 2
    assert "cannot load the model" in capsys.readouterr().err
    assert not out.exists()


def test_a_regressor_profile_targets_its_value(tmp_path: Path) -> None:
    model, x = regressor(tmp_path / "reg.onnx")
    np.save(tmp_path / "x.npy", x)
    profile = build_profile(str(model), tmp_path / "x.npy", ProfileOptions())
    assert profile.target is not None
    assert (profile.target.output, profile.target.task) == ("variable", "regression")
