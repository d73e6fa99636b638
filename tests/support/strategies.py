"""Hypothesis strategies the fuzz tests share: any JSON value, and what a WebSocket client
might send."""

import orjson
from hypothesis import strategies as st

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

# Messages near the real ones, so the fuzz reaches past the first checks; and anything else.
_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "unsubscribe", "ping", "other"]) | json_values},
    optional={
        "scraperSource": json_values | st.sampled_from(["cnbc", "*"]),
        "scraperSources": json_values,
        "since": json_values,
    },
)
client_messages = st.one_of(
    _messages.map(lambda m: orjson.dumps(m).decode()),
    st.text(max_size=200),
    json_values.map(lambda v: orjson.dumps(v).decode()),
)
