"""JSONL files read in blocks by Arrow give the learner exactly what reading them a line at
a time gives: the same events in the same batches, with the same positions, the same
unreadable lines (reason and raw bytes) and the same fields that hold no Unicode text;
a hostile line sends its block (and only its block) to the line-at-a-time path; a learner
ends with the very weights, counts and rejects either way; reading resumes at an exact
byte offset; a line being written while the file is followed is read once it is whole.

Blocks are made small (a few kilobytes) so that each file spans many of them."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import orjson
import pytest

from modelport.registry import Registry
from modelport.train.online import learn, sources
from modelport.train.online.sources import JsonlFile

BLOCK = 4096


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(sources, "_BLOCK", BLOCK)


def clean_rows(n: int, seed: int = 0) -> list[dict]:
    """Events with numbers (some written as integers), a category, a flag and a label."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a, b = rng.normal(size=2)
        rows.append({"id": f"e{i}", "a": float(a), "b": float(b), "n": int(rng.integers(0, 9)),
                     "plan": str(rng.choice(["basic", "pro", "team"])),
                     "y": int(a + 0.5 * b > 0)})
    return rows


def hostile_lines() -> list[tuple[str, bytes]]:
    """Lines that must not be read differently by Arrow, each with what it is."""
    base = {"id": "h", "a": 0.5, "b": -0.25, "n": 3, "plan": "pro", "y": 1}

    def dumps(row: dict) -> bytes:  # the standard library writes what orjson cannot
        return json.dumps(row).encode()

    return [
        ("a malformed line", b'{"id": "h1", "a": 0.5, "b": '),
        ("text where a number goes", dumps({**base, "a": "unknown"})),
        ("a list where a number goes", dumps({**base, "b": [1, 2]})),
        ("a lone surrogate", dumps({**base, "plan": "pro\ud800"})),
        ("a raw NUL byte", dumps(base)[:-1] + b', "x": "a\x00b"}'),
        ("an escaped NUL in a category", dumps({**base, "plan": "pro\x00"})),
        ("NaN, which is no JSON", dumps(base)[:-1] + b', "a2": NaN}'),
        ("Infinity, which is no JSON", dumps({**base, "a": math.inf})),
        ("an integer beyond 64 bits", dumps({**base, "n": 2**64 + 1})),
        ("an integer beyond int64", dumps({**base, "n": 2**63})),
        ("a 400-digit integer", dumps({**base, "n": 10**400})),
        ("a blank line", b"   "),
        ("an array", b"[1, 2, 3]"),
        ("a number", b"42"),
        ("a repeated key", b'{"id": "h2", "a": 1, "a": 2, "b": 0, "n": 1, "plan": "pro", "y": 0}'),
        ("a missing field", dumps({k: v for k, v in base.items() if k != "b"})),
        ("an explicit null", dumps({**base, "b": None})),
        ("a label of another type", dumps({**base, "y": "yes"})),
        ("two objects on a line", dumps(base) + dumps(base)),
        ("an object in a field", dumps({**base, "plan": {"name": "pro"}})),
        ("a date", dumps({**base, "plan": "2024-01-01"})),
        ("invalid UTF-8", dumps(base)[:-1] + b', "x": "\xff\xfe"}'),
        ("a control character", dumps(base)[:-1] + b', "x": "a\x01b"}'),
        ("a carriage return", dumps(base) + b"\r"),
        ("leading whitespace", b"  " + dumps(base)),
    ]


def write(path, rows: list[dict], extra: dict[int, bytes] | None = None) -> None:
    """One event a line, with ``extra`` lines put before the rows at those positions."""
    extra = extra or {}
    out = []
    for i, row in enumerate(rows):
        if i in extra:
            out.append(extra[i] + b"\n")
        out.append(orjson.dumps(row) + b"\n")
    path.write_bytes(b"".join(out))


def plain(values) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def described(batch) -> dict:
    """What the learner sees of a batch, as plain values."""
    names: dict[str, None] = {}
    for i in range(batch.n):
        names.update(dict.fromkeys(batch.event(i)))
    columns = {}
    for name in names:
        values = plain(batch.column(name)) if batch.has(name) else None
        has = [name in batch.event(i) for i in range(batch.n)]
        columns[name] = (values, has)
    return {"n": batch.n, "position": batch.position, "columns": columns,
            "events": [batch.event(i) for i in range(batch.n)],
            "unreadable": [(why.code, why.message, raw) for why, raw in batch.unreadable],
            "not_text": batch.not_text}


def same_values(a: dict, b: dict) -> bool:
    """Batches alike, field by field: a column of Arrow's gives a present field's value (NaN
    compares equal to itself; a missing field's entry is not looked at)."""
    if {k: v for k, v in a.items() if k != "columns"} != \
            {k: v for k, v in b.items() if k != "columns"}:
        return False
    for name, (values, has) in a["columns"].items():
        other, other_has = b["columns"][name]
        if has != other_has:
            return False
        for v, w, h in zip(values, other, has, strict=True):
            if h and not (v == w or (v != v and w != w)):
                return False
    return True


def read_all(path, arrow: bool, sizes, offset: int = 0, follow: bool = False) -> list:
    async def run():
        JsonlFile.arrow = arrow
        try:
            source = JsonlFile(path, follow)
            await source.open({"offset": offset})
            out, i = [], 0
            try:
                while True:
                    batch = await source.read(sizes[i % len(sizes)], 0.001)
                    i += 1
                    if batch is None or (follow and batch.n == 0 and not batch.unreadable):
                        return out
                    out.append(batch)
            finally:
                await source.close()
        finally:
            JsonlFile.arrow = True

    return asyncio.run(run())


def test_clean_blocks_are_read_as_columns_with_the_events_lines_give(tmp_path):
    path = tmp_path / "e.jsonl"
    write(path, clean_rows(3000))
    sizes = [1, 16, 700, 2048, 3]  # batches that start and end inside blocks and span them
    arrow, lines = read_all(path, True, sizes), read_all(path, False, sizes)
    assert all(b.columns is not None for b in arrow)
    assert all(b.rows is not None for b in lines)
    assert [b.n for b in arrow] == [b.n for b in lines] and sum(b.n for b in arrow) == 3000
    assert [b.position for b in arrow] == [b.position for b in lines]
    assert arrow[-1].position == {"offset": path.stat().st_size}
    for a, b in zip(arrow, lines, strict=True):
        assert same_values(described(a), described(b))
    # numbers stay numbers, text stays text
    first = arrow[2]
    assert first.column("a").dtype == np.float64 and first.column("n").dtype == np.int64
    assert first.column("plan").dtype == object


@pytest.mark.parametrize("what,line", hostile_lines(), ids=[w for w, _ in hostile_lines()])
def test_a_hostile_line_is_read_as_a_line_at_a_time_and_only_its_block(tmp_path, what, line):
    rows = clean_rows(600, seed=1)
    at = 300
    path = tmp_path / "e.jsonl"
    write(path, rows, {at: line})
    sizes = [16, 100, 257]
    arrow, lines = read_all(path, True, sizes), read_all(path, False, sizes)
    assert [b.n for b in arrow] == [b.n for b in lines]
    assert [b.position for b in arrow] == [b.position for b in lines]
    for a, b in zip(arrow, lines, strict=True):
        assert same_values(described(a), described(b)), what
    # the hostile line's block is read line by line; the blocks away from it as columns
    offset = sum(len(orjson.dumps(r)) + 1 for r in rows[:at])
    kinds = [(b.position["offset"], b.columns is not None) for b in arrow]
    assert any(columnar for end, columnar in kinds if end < offset - 2 * BLOCK)
    assert any(columnar for end, columnar in kinds if end > offset + 3 * BLOCK)


def test_an_unreadable_line_keeps_its_reason_and_raw_bytes(tmp_path):
    path = tmp_path / "e.jsonl"
    bad = b'{"id": "h1", "a": 0.5, "b": '
    write(path, clean_rows(200), {100: bad, 150: b"[1]"})
    batches = read_all(path, True, [64])
    found = [(why.code, raw) for b in batches for why, raw in b.unreadable]
    assert found == [("not_json", bad), ("not_a_record", b"[1]")]
    assert sum(b.n for b in batches) == 200


def test_reading_resumes_at_an_exact_byte_offset(tmp_path):
    path = tmp_path / "e.jsonl"
    write(path, clean_rows(2000, seed=2), {700: b"not json", 1500: b""})
    first = read_all(path, True, [333])
    for cut in (first[1].position["offset"], first[4].position["offset"]):
        again, lines = read_all(path, True, [100], cut), read_all(path, False, [100], cut)
        assert [b.position for b in again] == [b.position for b in lines]
        for a, b in zip(again, lines, strict=True):
            assert same_values(described(a), described(b))
        whole = [e for b in first for e in described(b)["events"]]
        rest = [e for b in again for e in described(b)["events"]]
        assert rest == whole[len(whole) - len(rest):]
        assert len(rest) == sum(1 for b in first if b.position["offset"] > cut
                                for _ in range(b.n))


def test_a_line_being_written_is_read_once_whole_while_following(tmp_path):
    path = tmp_path / "e.jsonl"
    rows = clean_rows(50, seed=3)
    whole = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    cut = len(whole) - 20  # the last line half written

    async def run():
        path.write_bytes(whole[:cut])
        source = JsonlFile(path, follow=True, poll_ms=1)
        await source.open(None)
        try:
            seen, positions = 0, []
            for _ in range(5):
                batch = await source.read(1000, 0.001)
                seen += batch.n
                positions.append(batch.position["offset"])
            assert seen == 49 and positions[-1] == whole.rindex(b"\n", 0, cut) + 1
            with open(path, "ab") as fh:
                fh.write(whole[cut:] + b'{"id": "late", "a": 1, "b"\n')
            got = await source.read(1000, 0.001)
            assert got.n == 1 and got.event(0) == rows[-1]
            assert [why.code for why, _ in got.unreadable] == ["not_json"]
            assert got.position == {"offset": path.stat().st_size}
        finally:
            await source.close()

    asyncio.run(run())


def spec(name: str, path, rejects) -> dict:
    return {"name": name, "source": str(path), "target": "y", "id": "id",
            "features": ["a", "b", "n", "plan"], "classes": [0, 1],
            "learner": {"estimator": "sklearn.linear_model.SGDClassifier",
                        "params": {"loss": "log_loss"}},
            "batch": {"size": 256}, "rejects": str(rejects),
            "checkpoint": {"every_events": 10**9, "formats": ["joblib"]}, "promotion": False}


def test_a_learner_learns_the_same_from_arrow_blocks_as_from_lines(tmp_path, monkeypatch):
    rows = clean_rows(4000, seed=4)
    extra = {400 + 150 * i: line for i, (_, line) in enumerate(hostile_lines())}
    path = tmp_path / "e.jsonl"
    write(path, rows, extra)
    results, rejects, states = {}, {}, {}
    for arrow in (True, False):
        monkeypatch.setattr(JsonlFile, "arrow", arrow)
        out = tmp_path / f"rejects-{arrow}.jsonl"
        name = f"arrow-{str(arrow).lower()}"
        results[arrow] = learn(spec(name, path, out))
        rejects[arrow] = [{k: v for k, v in json.loads(x).items() if k != "model"}
                          for x in out.read_bytes().splitlines()]
        pipe = Registry().load(name, format="joblib").model
        model = pipe.named_steps["model"]
        states[arrow] = np.concatenate([model.coef_.ravel(), model.intercept_])
    a, b = results[True], results[False]
    assert (a.events, a.learned, a.rejected, a.position) == \
        (b.events, b.learned, b.rejected, b.position)
    assert a.rejected_by_reason == b.rejected_by_reason and a.rejected >= 10
    assert a.prequential == b.prequential
    assert np.array_equal(states[True], states[False])
    assert rejects[True] == rejects[False]


# -- CSV ---------------------------------------------------------------------------------

def write_csv(path, rows: list[dict], extra: dict[int, bytes] | None = None) -> None:
    extra = extra or {}
    names = list(rows[0])
    out = [",".join(names).encode() + b"\n"]
    for i, row in enumerate(rows):
        if i in extra:
            out.append(extra[i] + b"\n")
        out.append(",".join(str(row[k]) for k in names).encode() + b"\n")
    path.write_bytes(b"".join(out))


def read_csv_all(path, arrow: bool, sizes, offset: int = 0) -> list:
    async def run():
        source = sources.CsvFile(path)
        source.arrow = arrow
        await source.open({"offset": offset})
        out, i = [], 0
        try:
            while (batch := await source.read(sizes[i % len(sizes)], 0.001)) is not None:
                out.append(batch)
                i += 1
        finally:
            await source.close()
        return out

    return asyncio.run(run())


def csv_values(batch) -> dict:
    return {"n": batch.n, "position": batch.position,
            "columns": {k: plain(batch.column(k)) for k in batch.columns},
            "unreadable": [(why.code, raw) for why, raw in batch.unreadable]}


def test_csv_blocks_give_the_batches_a_batch_at_a_time_reading_gives(tmp_path):
    path = tmp_path / "e.csv"
    write_csv(path, clean_rows(2500, seed=5))
    sizes = [1, 16, 700, 2048, 3]
    arrow, batches = read_csv_all(path, True, sizes), read_csv_all(path, False, sizes)
    assert [b.position for b in arrow] == [b.position for b in batches]
    assert arrow[-1].position == {"offset": path.stat().st_size}
    assert [csv_values(a) for a in arrow] == [csv_values(b) for b in batches]
    assert arrow[3].column("a").dtype == np.float64 and arrow[3].column("plan").dtype == object


@pytest.mark.parametrize("line,code", [(b"e-bad,0.5,1.5", "not_csv"),
                                       (b"e-bad,0.5,1.5,3,pro,1,extra", "not_csv"),
                                       (b"", None), (b"  ", None)])
def test_a_bad_csv_line_is_rejected_with_its_bytes_and_the_rest_is_read(tmp_path, line, code):
    rows = clean_rows(600, seed=6)
    path = tmp_path / "e.csv"
    write_csv(path, rows, {300: line})
    sizes = [16, 100, 257]
    arrow, batches = read_csv_all(path, True, sizes), read_csv_all(path, False, sizes)
    assert [csv_values(a) for a in arrow] == [csv_values(b) for b in batches]
    found = [(why.code, raw) for b in arrow for why, raw in b.unreadable]
    assert found == ([] if code is None else [(code, line)])
    ids = [v for b in arrow for v in plain(b.column("id"))]
    assert ids == [r["id"] for r in rows]  # every other event, once, in order
    # the blocks away from the bad line are read as columns in one piece
    offset = path.read_bytes().index(b"e299,")
    assert any(len(b.columns["id"]) for b in arrow if b.position["offset"] < offset - BLOCK)


def test_csv_reading_resumes_at_an_exact_byte_offset(tmp_path):
    path = tmp_path / "e.csv"
    write_csv(path, clean_rows(2000, seed=7), {900: b"x,y"})
    first = read_csv_all(path, True, [333])
    cut = first[3].position["offset"]
    again = read_csv_all(path, True, [100], cut)
    whole = [v for b in first for v in plain(b.column("id"))]
    rest = [v for b in again for v in plain(b.column("id"))]
    assert rest == whole[sum(b.n for b in first[:4]):]
    assert [why.code for b in again for why, _ in b.unreadable] == []
