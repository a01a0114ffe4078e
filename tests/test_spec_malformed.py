"""Over a thousand malformed specs: each refused with one line naming the field, none queued."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golfq.core.backends import open_broker
from golfq.core.spec import SpecError, check_pool, parse_spec

VALID = {"name": "ok", "pool": "cpu", "env": {"NUM_LAYERS": "2"}, "seed": 1, "budget": {"train_seconds": 30}}
FIELDS = {"name", "pool", "trainer", "env", "seed", "data", "budget", "priority", "tags", "parent", "created_by"}

not_str = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                    st.lists(st.integers(), max_size=2))
not_int = st.one_of(st.text(max_size=5),
                    st.floats(allow_nan=False).filter(lambda f: f != int(f) if abs(f) < 1e18 else True),
                    st.booleans(), st.none(), st.lists(st.integers(), max_size=2))
bad_env_key = st.text(alphabet=string.ascii_letters + string.digits + "_-. ", min_size=0, max_size=12).filter(
    lambda k: not (k[:1].isupper() and k[:1].isalpha() and all(c.isupper() or c.isdigit() or c == "_" for c in k)))
bad_name = st.text(min_size=0, max_size=12).filter(
    lambda n: not n or not (n[0].isalnum() and n.isascii())
    or any(c not in string.ascii_letters + string.digits + "_.-" for c in n))


def _set(path: str, value):
    spec = {**VALID, "budget": dict(VALID["budget"])}
    head, _, tail = path.partition(".")
    if tail:
        inner = dict(spec.get(head, {}))
        sub, _, leaf = tail.partition(".")
        if leaf:
            inner[sub] = {**inner.get(sub, {}), leaf: value}
        else:
            inner[sub] = value
        spec[head] = inner
    else:
        spec[head] = value
    return spec


# (the malformed spec, a word its error must contain)
malformed = st.one_of(
    st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=10).filter(lambda k: k not in FIELDS)
    .map(lambda k: ({**VALID, k: 1}, k)),
    st.text(max_size=10).filter(lambda p: not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", p)).map(
        lambda p: (_set("pool", p), "pool")),
    not_int.map(lambda v: (_set("seed", v), "seed")),
    st.integers(max_value=-1).map(lambda v: (_set("seed", v), "seed")),
    bad_env_key.map(lambda k: (_set("env", {k: "1"}), "env")),
    not_str.map(lambda v: (_set("env", {"NUM_LAYERS": v}), "env")),
    st.sampled_from(["SEED", "MAX_WALLCLOCK_SECONDS", "DATA_PATH", "TOKENIZER_PATH", "RANK", "WORLD_SIZE"])
    .map(lambda k: (_set("env", {k: "1"}), k)),
    st.floats(max_value=0).map(lambda v: (_set("budget.train_seconds", v), "budget.train_seconds")),
    st.floats(min_value=604801, allow_infinity=False)
    .map(lambda v: (_set("budget.train_seconds", v), "budget.train_seconds")),
    st.floats(max_value=0).map(lambda v: (_set("budget.timeout_seconds", v), "budget.timeout_seconds")),
    st.integers(max_value=-1).map(lambda v: (_set("budget.retries.infra", v), "budget.retries.infra")),
    st.integers(min_value=1001).map(lambda v: (_set("budget.retries.user", v), "budget.retries.user")),
    bad_name.map(lambda n: (_set("data.dataset", n), "data.dataset")),
    st.text(max_size=20).filter(lambda t: t != "builtin").map(lambda t: (_set("trainer", t), "trainer")),
    st.integers().filter(lambda p: abs(p) > 1000).map(lambda p: (_set("priority", p), "priority")),
    not_str.filter(lambda v: v is not None).map(lambda v: (_set("tags", [v]), "tags")),
    st.text(min_size=17, max_size=30).map(lambda p: (_set("parent", p), "parent")),
    st.text(min_size=201, max_size=260).map(lambda n: (_set("name", n), "name")),
    not_str.filter(lambda v: v is not None).map(lambda v: (_set("created_by", v), "created_by")),
    not_str.filter(lambda v: not isinstance(v, dict)).map(lambda v: (_set("budget", v), "budget")),
)

TABLE = [
    ({**VALID, "pool": "h 100"}, "pool"),
    ({**VALID, "pool": ""}, "pool"),
    ({**VALID, "seed": "1"}, "seed"),
    ({**VALID, "seed": 1.5}, "seed"),
    ({**VALID, "seed": True}, "seed"),
    ({**VALID, "env": {"num_layers": "2"}}, "env.num_layers"),
    ({**VALID, "env": {"NUM-LAYERS": "2"}}, "env.NUM-LAYERS"),
    ({**VALID, "env": {"1ABC": "2"}}, "env.1ABC"),
    ({**VALID, "env": {"NUM_LAYERS": 2}}, "env"),
    ({**VALID, "env": {"X": "y" * 5000}}, "env.X"),
    ({**VALID, "env": ["NUM_LAYERS=2"]}, "env"),
    ({**VALID, "env": {"SEED": "3"}}, "env.SEED"),
    ({**VALID, "budget": {"train_seconds": 0}}, "budget.train_seconds"),
    ({**VALID, "budget": {"train_seconds": -5}}, "budget.train_seconds"),
    ({**VALID, "budget": {"train_seconds": "600"}}, "budget.train_seconds"),
    ({**VALID, "budget": {"train_seconds": 60, "timeout_seconds": 0}}, "budget.timeout_seconds"),
    ({**VALID, "budget": {"train_seconds": 60, "hard": 1}}, "hard"),
    ({**VALID, "budget": {"retries": {"infra": -1}}}, "budget.retries.infra"),
    ({**VALID, "budget": {"retries": {"flaky": 2}}}, "flaky"),
    ({**VALID, "data": {"dataset": "../etc"}}, "data.dataset"),
    ({**VALID, "data": {"tokenizer": "a/b"}}, "data.tokenizer"),
    ({**VALID, "data": "fineweb"}, "data"),
    ({**VALID, "trainer": "train_gpt.py"}, "trainer"),
    ({**VALID, "trainer": "sha256:xyz"}, "trainer"),
    ({**VALID, "tags": "one"}, "tags"),
    ({**VALID, "tags": [""]}, "tags"),
    ({**VALID, "tags": ["t"] * 40}, "tags"),
    ({**VALID, "priority": "high"}, "priority"),
    ({**VALID, "parent": "not-an-id"}, "parent"),
    ({**VALID, "nmae": "typo"}, "nmae"),
    ({**VALID, "lr": 0.1}, "lr"),
    ("{not json", "JSON"),
    ("[1, 2]", "spec"),
    ("", "spec"),
    (b"\xff\xfe", "spec"),
    ([], "spec"),
    (42, "spec"),
    (None, "spec"),
]


def _assert_refused(bad, word: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(bad)
    message = str(caught.value)
    assert "\n" not in message and 0 < len(message) < 400, message
    assert word.lower() in message.lower(), (word, message)
    return message


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    opened = open_broker(f"sqlite:///{tmp_path_factory.mktemp('q') / 'golfq.db'}")
    yield opened
    assert opened.list() == [], "a malformed spec reached the queue"
    assert opened.stats().last_seq == 0
    opened.close()


def _submit(broker, obj) -> None:
    """The producer's path: parse at the door, and only a parsed spec reaches submit()."""
    broker.submit([parse_spec(obj)])


@pytest.mark.parametrize(("bad", "word"), TABLE, ids=[str(i) for i in range(len(TABLE))])
def test_hand_picked_malformed_specs_are_refused(broker, bad, word):
    _assert_refused(bad, word)
    with pytest.raises(SpecError):
        _submit(broker, bad)


@settings(max_examples=1100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(malformed)
def test_generated_malformed_specs_are_refused(broker, case):
    bad, word = case
    _assert_refused(bad, word)
    with pytest.raises(SpecError):
        _submit(broker, bad)


def test_an_unknown_pool_is_refused_at_submit_but_a_stored_one_always_decodes(broker):
    spec = parse_spec({**VALID, "pool": "H100"})  # well formed: a job stored from a shell that knew it must decode
    assert spec.pool == "H100"
    with pytest.raises(SpecError, match="pool: unknown pool 'H100'"):
        check_pool(spec)
    with pytest.raises(SpecError, match="unknown pool"):
        broker.submit([spec])


def test_the_valid_base_is_accepted():
    assert parse_spec(VALID).pool == "cpu"


def test_a_nul_byte_in_an_env_value_is_refused_at_the_door(broker):
    """No process environment can hold it: queued, it would crash every runner that claimed it."""
    message = _assert_refused({**VALID, "env": {"NUM_LAYERS": "2\x009"}}, "env.NUM_LAYERS")
    assert "NUL byte" in message
    with pytest.raises(SpecError):
        _submit(broker, {**VALID, "env": {"NUM_LAYERS": "2\x009"}})
